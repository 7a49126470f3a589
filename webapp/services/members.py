"""A team's members and their roles: list, change a role, remove; the last owner stays.

A member's API keys follow them: when their role is lowered, their keys above the new role are
lowered to it; when they leave the team, their keys are revoked (in the same transaction)."""
from __future__ import annotations

from sqlalchemy import update

from ..extensions import db
from ..models import ApiKey, Membership, User
from ..models.base import utcnow
from ..vocabulary import Role
from . import audit, roles
from .access import Principal
from .errors import Conflict, NotFound


def list_members(principal: Principal, team_id: int) -> list[Membership]:
    roles.require(principal, team_id, "member.read")
    return (db.session.query(Membership).join(User).filter(Membership.team_id == team_id)
            .order_by(User.email).all())


def _membership(team_id: int, user_id: int) -> Membership:
    member = db.session.get(Membership, (user_id, team_id))
    if member is None:
        raise NotFound("no such member")
    return member


def _owners_left(team_id: int, without: int) -> int:
    return (db.session.query(Membership)
            .filter(Membership.team_id == team_id, Membership.role == Role.OWNER, Membership.user_id != without)
            .count())


def change_role(principal: Principal, team_id: int, user_id: int, role: str) -> Membership:
    roles.require(principal, team_id, "member.role_change")
    new = roles.parse(role)
    member = db.session.query(Membership).filter_by(team_id=team_id, user_id=user_id).with_for_update().first()
    if member is None:
        raise NotFound("no such member")
    old = Role(member.role)
    if old == Role.OWNER and new != Role.OWNER and _owners_left(team_id, user_id) == 0:
        raise Conflict("the team's last owner cannot be given another role; make another member owner first")
    member.role = new
    lowered = [k for k in _keys_of(team_id, user_id) if not roles.at_least(new, Role(k.role))]
    for key in lowered:
        key.role = new
    audit.record(principal, team_id, "member.role_change", "member", member.user.email,
                 {"role": [old, new], **({"keysLowered": [k.prefix for k in lowered]} if lowered else {})})
    db.session.commit()
    return member


def remove(principal: Principal, team_id: int, user_id: int) -> None:
    """An owner removes a member, or a member leaves (removes themselves, whatever their role)."""
    if principal.user_id != user_id:
        roles.require(principal, team_id, "member.remove")
    else:
        roles.require(principal, team_id, "member.read")
    member = _membership(team_id, user_id)
    if member.role == Role.OWNER and _owners_left(team_id, user_id) == 0:
        raise Conflict("the team's last owner cannot leave; make another member owner first")
    revoked = [k.prefix for k in _keys_of(team_id, user_id)]
    db.session.execute(update(ApiKey).where(ApiKey.team_id == team_id, ApiKey.created_by_id == user_id,
                                            ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow()))
    email = member.user.email
    db.session.delete(member)
    audit.record(principal, team_id, "member.remove", "member", email,
                 {"role": [member.role, None], **({"keysRevoked": revoked} if revoked else {})})
    db.session.commit()


def _keys_of(team_id: int, user_id: int) -> list[ApiKey]:
    return (db.session.query(ApiKey)
            .filter_by(team_id=team_id, created_by_id=user_id, revoked_at=None).all())


def add(team_id: int, user: User, role: Role) -> Membership:
    """The user joins the team with `role` (an invitation's acceptance; the caller commits)."""
    member = db.session.get(Membership, (user.id, team_id))
    if member is not None:
        raise Conflict("you are a member of this team already")
    member = Membership(user=user, team_id=team_id, role=role)
    db.session.add(member)
    return member


def account_exists(email: str) -> bool:
    return db.session.query(User.id).filter_by(email=email).first() is not None
