"""The team's Members page (roles, invitations), its Audit page, and an invitation's link."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user

from ..gate import OPEN, needs, source
from ..schemas import InvitationCreate, SchemaError, parse
from ..services import audit, invitations, members, roles
from ..services.errors import ServiceError
from ..vocabulary import ROLES
from .blueprint import bp
from .pages import principal
from .settings import team_page

AUDIT_PAGE = 50


@bp.route("/teams/<int:team_id>/members", methods=["GET", "POST"])
@login_required
@needs("member.read", post="member.invite")
def team_members(team_id: int):
    team = team_page(team_id)
    errors, values, sent = {}, {}, None
    if request.method == "POST":
        values = {"email": request.form.get("email", "").strip(), "role": request.form.get("role", "member")}
        try:
            body = parse(InvitationCreate, values)
            invitation, token, mail_error = invitations.invite(principal(), team_id, body.email, body.role)
            sent = {"email": invitation.email, "link": invitations.link(token), "mail_error": mail_error}
            values = {}
        except (SchemaError, ServiceError) as e:
            errors = e.fields or {"form": e.message}
    return render_template("dashboard/members.html", team=team, members=members.list_members(principal(), team_id),
                           pending=invitations.pending(principal(), team_id), roles=ROLES, role_words=roles.WORDS,
                           owner=roles.may(principal(), team_id, "member.role_change"), errors=errors,
                           values=values, sent=sent), 400 if errors else 200


@bp.post("/teams/<int:team_id>/members/<int:user_id>/role")
@login_required
@needs("member.role_change")
def change_member_role(team_id: int, user_id: int):
    try:
        member = members.change_role(principal(), team_id, user_id, request.form.get("role", ""))
        flash(f"{member.user.email} is {member.role} now.")
    except ServiceError as e:
        flash(e.message)
    return redirect(url_for("dashboard.team_members", team_id=team_id))


@bp.post("/teams/<int:team_id>/members/<int:user_id>/remove")
@login_required
@needs("member.remove")
def remove_member(team_id: int, user_id: int):
    try:
        members.remove(principal(), team_id, user_id)
        flash("Removed the member; the API keys they made for the team are revoked.")
    except ServiceError as e:
        flash(e.message)
    return redirect(url_for("dashboard.team_members", team_id=team_id))


@bp.post("/teams/<int:team_id>/leave")
@login_required
@needs("member.read")
def leave_team(team_id: int):
    try:
        members.remove(principal(), team_id, current_user.id)
    except ServiceError as e:
        flash(e.message)
        return redirect(url_for("dashboard.team_members", team_id=team_id))
    flash("You left the team.")
    return redirect(url_for("dashboard.index"))


@bp.post("/teams/<int:team_id>/invitations/<int:invitation_id>/revoke")
@login_required
@needs("member.invite")
def revoke_invitation(team_id: int, invitation_id: int):
    invitations.revoke(principal(), team_id, invitation_id)
    flash("Revoked the invitation: its link no longer works.")
    return redirect(url_for("dashboard.team_members", team_id=team_id))


@bp.route("/invitations/<token>", methods=["GET", "POST"])
@needs(OPEN)
def accept_invitation(token: str):
    """Signed in as the invited address: join. Not signed in: sign in first, or make the account."""
    error = None
    try:
        invitation = invitations.find(token)
    except ServiceError as e:
        return render_template("dashboard/invitation.html", invitation=None, error=e.message), e.status
    user = current_user if current_user.is_authenticated else None
    if request.method == "POST":
        try:
            joined = invitations.accept(token, user, request.form.get("password"), source())
        except ServiceError as e:
            error = e.message
        else:
            if user is None:
                login_user(joined)
            flash(f"You joined {invitation.team.name} as {invitation.role}.")
            return redirect(url_for("dashboard.index"))
    has_account = user is None and members.account_exists(invitation.email)
    return render_template("dashboard/invitation.html", invitation=invitation, user=user, error=error,
                           has_account=has_account), 400 if error else 200


@bp.get("/teams/<int:team_id>/audit")
@login_required
@needs("audit.read")
def audit_page(team_id: int):
    team = team_page(team_id)
    filters = audit.AuditFilter.from_args(request.args)
    rows, cursor = audit.entries(principal(), team_id, filters, AUDIT_PAGE, request.args.get("cursor"))
    return render_template("dashboard/audit.html", team=team, rows=rows, cursor=cursor, filters=filters)

