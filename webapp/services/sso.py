"""Single sign-on: who an OpenID Connect provider's verified claims make signed in, and the teams
its groups give them. The flow itself (discovery, PKCE, state, nonce, the ID token's signature,
iss, aud and exp) is Authlib's, in webapp/dashboard/sso.py; this module decides what the claims
it verified allow.

- The email must be verified by the provider (`email_verified` true) and, when
  OIDC_ALLOWED_DOMAINS is set, of one of those domains.
- The first sign-in makes the user (with a random password hash nobody knows), or links the
  account that has the email; after that the provider's subject names the user.
- `flask sso map GROUP --team T --role R`: the groups claim (OIDC_GROUPS_CLAIM) gives memberships;
  those follow the groups at every sign-in (role changed, or removed when no group maps any more),
  except that a team's last owner stays. Memberships from invitations or the CLI are not touched.
Every sign-in and every refusal is in the audit log (`sso.login`, `login.failed`)."""
from __future__ import annotations

import secrets

from flask import current_app
from werkzeug.security import generate_password_hash

from ..extensions import db
from ..models import Membership, SsoGroupMap, Team, User
from ..vocabulary import Role
from . import audit, roles, signin
from .access import Principal
from .errors import Forbidden, Invalid, NotFound

MAX_GROUPS = 200


class Refused(Forbidden):
    code = "sso_refused"


def configured() -> bool:
    cfg = current_app.config
    return bool(cfg.get("OIDC_ISSUER") and cfg.get("OIDC_CLIENT_ID"))


def refuse(email: str, reason: str, source: dict) -> Refused:
    """The refusal, recorded (its own transaction: nothing else of the attempt is kept)."""
    db.session.rollback()
    user = db.session.query(User).filter_by(email=email).first() if email else None
    signin.record(user, email or "(no email)", "login.failed", source, {"method": "sso", "reason": reason})
    db.session.commit()
    return Refused(reason)


def sign_in(claims: dict, source: dict) -> User:
    """The user the verified `claims` name, made or linked, with their mapped teams; or Refused."""
    cfg = current_app.config
    email = str(claims.get("email") or "").strip().lower()[:254]
    if not email:
        raise refuse("", "the provider sent no email address", source)
    if claims.get("email_verified") is not True:
        raise refuse(email, f"the provider has not verified {email}: verify it there, then sign in again", source)
    domains = cfg["OIDC_ALLOWED_DOMAINS"]
    if domains and email.rpartition("@")[2] not in domains:
        raise refuse(email, f"{email} is not of a domain allowed to sign in here ({', '.join(sorted(domains))})",
                     source)
    subject = f"{cfg['OIDC_ISSUER']} {claims['sub']}"[:400]
    user = db.session.query(User).filter_by(sso_subject=subject).first()
    if user is None:
        user = db.session.query(User).filter_by(email=email).first()
        if user is not None and user.sso_subject is not None:
            raise refuse(email, f"{email} belongs to another account of the provider", source)
        if user is None:
            user = User(email=email, password_hash=generate_password_hash(secrets.token_urlsafe(32)))
            db.session.add(user)
        user.sso_subject = subject
    groups = _groups(claims.get(cfg["OIDC_GROUPS_CLAIM"]))
    db.session.flush()
    changed = _apply_groups(user, groups)
    db.session.flush()
    db.session.expire(user, ["memberships"])
    signin.record(user, user.email, "sso.login", source, {"groups": groups, **({"teams": changed} if changed else {})})
    db.session.commit()
    return user


def _groups(value) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return sorted({str(g)[:200] for g in value[:MAX_GROUPS]})


def _apply_groups(user: User, groups: list[str]) -> dict[str, str | None]:
    """The memberships the group maps give, by team id: the highest role of the user's groups."""
    wanted: dict[int, Role] = {}
    maps = db.session.query(SsoGroupMap).filter(SsoGroupMap.group.in_(groups or [""])).all()
    for m in maps:
        if m.team_id not in wanted or roles.at_least(m.role, wanted[m.team_id]):
            wanted[m.team_id] = Role(m.role)
    changed: dict[str, str | None] = {}
    for member in list(user.memberships):
        if not member.via_sso or wanted.get(member.team_id) == member.role:
            wanted.pop(member.team_id, None)
            continue
        if member.role == Role.OWNER and _sole_owner(member):
            wanted.pop(member.team_id, None)
            continue
        new = wanted.pop(member.team_id, None)
        changed[str(member.team_id)] = new
        if new is None:
            db.session.delete(member)
        else:
            member.role = new
    for team_id, role in wanted.items():
        db.session.add(Membership(user=user, team_id=team_id, role=role, via_sso=True))
        changed[str(team_id)] = role
    return changed


def _sole_owner(member: Membership) -> bool:
    return db.session.query(Membership).filter(Membership.team_id == member.team_id, Membership.role == Role.OWNER,
                                               Membership.user_id != member.user_id).count() == 0


def set_map(group: str, team_id: int, role: str) -> SsoGroupMap:
    """The operator's `flask sso map`."""
    group = group.strip()
    if not group or len(group) > 200:
        raise Invalid("a group is 1 to 200 characters", {"group": "1 to 200 characters"})
    role = roles.parse(role)
    if db.session.get(Team, team_id) is None:
        raise NotFound(f"no team {team_id}")
    m = db.session.query(SsoGroupMap).filter_by(group=group, team_id=team_id).first() or \
        SsoGroupMap(group=group, team_id=team_id)
    audit.record(Principal.operator({team_id}), team_id, "sso.map", "sso_group", group, {"role": [m.role, role]})
    m.role = role
    db.session.add(m)
    db.session.commit()
    return m


def remove_map(group: str, team_id: int) -> bool:
    removed = db.session.query(SsoGroupMap).filter_by(group=group.strip(), team_id=team_id).delete()
    if removed:
        audit.record(Principal.operator({team_id}), team_id, "sso.map", "sso_group", group.strip(), {"removed": True})
    db.session.commit()
    return bool(removed)


def maps() -> list[SsoGroupMap]:
    return db.session.query(SsoGroupMap).order_by(SsoGroupMap.group, SsoGroupMap.team_id).all()
