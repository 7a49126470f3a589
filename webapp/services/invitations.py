"""Invitations: an owner invites an email address with a role; the link, mailed over SMTP and shown
to the owner once, is valid INVITATION_DAYS (7), once. Accepting it, signed in as that address (or
making the account, when the address has none), makes the membership with the role."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from email.message import EmailMessage

from email_validator import EmailNotValidError, validate_email
from flask import current_app, render_template
from sqlalchemy import update

from ..extensions import db
from ..models import Invitation, User
from ..models.base import utcnow
from ..notify.base import TransportError
from ..notify.email import send
from ..vocabulary import Role
from . import actors, audit, members, roles
from .access import Principal
from .errors import Conflict, Gone, Invalid, NotFound

PENDING_MAX = 100  # pending invitations per team


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link(token: str) -> str:
    return f"{current_app.config['BASE_URL']}/invitations/{token}"


def _address(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False, test_environment=True,
                              globally_deliverable=False).normalized.lower()
    except EmailNotValidError:
        raise Invalid("not an email address", {"email": "an email address"}) from None


def invite(principal: Principal, team_id: int, email: str, role: str) -> tuple[Invitation, str, str | None]:
    """The invitation, its token (shown this once) and why the mail was not sent (None: sent)."""
    roles.require(principal, team_id, "member.invite")
    email = _address(email or "")
    role = roles.parse(role)
    user = db.session.query(User).filter_by(email=email).first()
    if user is not None and team_id in user.team_ids:
        raise Conflict(f"{email} is a member of this team already", {"email": "a member already"})
    if len(pending(principal, team_id)) >= PENDING_MAX:
        raise Conflict(f"the team has {PENDING_MAX} pending invitations; revoke some first")
    token = "inv_" + secrets.token_urlsafe(32)
    now = utcnow()
    invitation = Invitation(team_id=team_id, email=email, role=role, token_hash=_hash(token),
                            created_by=actors.who(principal), created_at=now,
                            expires_at=now + timedelta(days=current_app.config["INVITATION_DAYS"]))
    db.session.add(invitation)
    db.session.flush()
    audit.record(principal, team_id, "member.invite", "invitation", email, {"role": [None, role]})
    db.session.commit()
    return invitation, token, _mail(invitation, token)


def _mail(invitation: Invitation, token: str) -> str | None:
    mail = EmailMessage()
    mail["Subject"] = f"You are invited to {invitation.team.name} on Workflows"
    mail["To"] = invitation.email
    mail.set_content(render_template("emails/invitation.txt", invitation=invitation, link=link(token)))
    try:
        send(current_app.config, mail)
    except TransportError as e:
        return str(e)
    return None


def pending(principal: Principal, team_id: int) -> list[Invitation]:
    roles.require(principal, team_id, "member.read")
    return (db.session.query(Invitation)
            .filter(Invitation.team_id == team_id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None),
                    Invitation.expires_at > utcnow()).order_by(Invitation.id.desc()).all())


def revoke(principal: Principal, team_id: int, invitation_id: int) -> None:
    roles.require(principal, team_id, "member.invite")
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None or invitation.team_id != team_id:
        raise NotFound("no such invitation")
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = utcnow()
        audit.record(principal, team_id, "member.invite", "invitation", invitation.email, {"revoked": [False, True]})
        db.session.commit()


def find(token: str) -> Invitation:
    """The invitation a link names, if it can still be accepted; else NotFound or Gone saying why."""
    invitation = db.session.query(Invitation).filter_by(token_hash=_hash(token or "")).first()
    if invitation is None:
        raise NotFound("this invitation link is not one of ours")
    if invitation.accepted_at is not None:
        raise Gone("this invitation was accepted already: a link works once")
    if invitation.revoked_at is not None:
        raise Gone("this invitation was revoked by the team's owner")
    if invitation.expires_at <= utcnow():
        raise Gone("this invitation has expired: ask the team's owner for a new one")
    return invitation


def accept(token: str, user: User | None, password: str | None, source: dict) -> User:
    """Joins the invited address's account to the team (making the account with `password` when
    it has none). Once: the first acceptance's compare-and-set wins, any other is Gone."""
    invitation = find(token)
    if user is None:
        if members.account_exists(invitation.email):
            raise Conflict(f"{invitation.email} has an account: sign in to accept")
        if not password or not 8 <= len(password) <= 1024:
            raise Invalid("a password is 8 to 1024 characters", {"password": "8 to 1024 characters"})
        user = User(email=invitation.email)
        user.set_password(password)
        db.session.add(user)
        db.session.flush()
    elif user.email != invitation.email:
        raise Conflict(f"this invitation is for {invitation.email}; you are signed in as {user.email}")
    table = Invitation.__table__
    won = db.session.execute(update(table).where(table.c.id == invitation.id, table.c.accepted_at.is_(None),
                                                 table.c.revoked_at.is_(None))
                             .values(accepted_at=utcnow(), accepted_by_id=user.id)).rowcount == 1
    if not won:
        db.session.rollback()
        raise Gone("this invitation was accepted already: a link works once")
    members.add(invitation.team_id, user, Role(invitation.role))
    audit.record(None, invitation.team_id, "member.join", "member", user.email,
                 {"role": [None, invitation.role], "invitedBy": invitation.created_by}, actor=user.email,
                 source=source)
    db.session.commit()
    return user

