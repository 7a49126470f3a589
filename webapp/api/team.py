"""A team's members, invitations and audit log (services/members.py, invitations.py, audit.py)."""
from __future__ import annotations

import json

from flask import Response, g, request, stream_with_context

from ..gate import needs
from ..schemas import InvitationCreate, RoleChange, parse
from ..services import audit, invitations, members
from ..services.errors import Invalid
from .blueprint import bp
from .body import json_body
from .serialize import answer, audit_shape, invitation_shape, member_shape
from .shapes import AuditList, InvitationList, MemberList


@bp.get("/teams/<int:team_id>/members")
@needs("member.read")
def list_members(team_id: int):
    return answer(MemberList(members=[member_shape(m) for m in members.list_members(g.principal, team_id)]))


@bp.patch("/teams/<int:team_id>/members/<int:user_id>")
@needs("member.role_change")
def change_member_role(team_id: int, user_id: int):
    body = parse(RoleChange, json_body())
    return answer(member_shape(members.change_role(g.principal, team_id, user_id, body.role)))


@bp.delete("/teams/<int:team_id>/members/<int:user_id>")
@needs("member.remove")
def remove_member(team_id: int, user_id: int):
    members.remove(g.principal, team_id, user_id)
    return "", 204


@bp.post("/teams/<int:team_id>/leave")
@needs("member.read")
def leave_team(team_id: int):
    if g.principal.user_id is None:
        raise Invalid("an API key cannot leave a team; revoke it instead")
    members.remove(g.principal, team_id, g.principal.user_id)
    return "", 204


@bp.get("/teams/<int:team_id>/invitations")
@needs("member.read")
def list_invitations(team_id: int):
    pending = invitations.pending(g.principal, team_id)
    return answer(InvitationList(invitations=[invitation_shape(i) for i in pending]))


@bp.post("/teams/<int:team_id>/invitations")
@needs("member.invite")
def create_invitation(team_id: int):
    body = parse(InvitationCreate, json_body())
    invitation, token, mail_error = invitations.invite(g.principal, team_id, body.email, body.role)
    return answer(invitation_shape(invitation, invitations.link(token), mail_error), 201)


@bp.delete("/teams/<int:team_id>/invitations/<int:invitation_id>")
@needs("member.invite")
def revoke_invitation(team_id: int, invitation_id: int):
    invitations.revoke(g.principal, team_id, invitation_id)
    return "", 204


def _limit() -> int:
    text = request.args.get("limit", "50")
    if not text.isdigit():
        raise Invalid("limit is a number", {"limit": f"1 to {audit.PAGE_MAX}"})
    return int(text)


@bp.get("/teams/<int:team_id>/audit")
@needs("audit.read")
def list_audit(team_id: int):
    rows, cursor = audit.entries(g.principal, team_id, audit.AuditFilter.from_args(request.args), _limit(),
                                 request.args.get("cursor"))
    return answer(AuditList(entries=[audit_shape(e) for e in rows], nextCursor=cursor))


@bp.get("/teams/<int:team_id>/audit/export")
@needs("audit.read")
def export_audit(team_id: int):
    """Every matching row as JSON lines, newest first."""
    rows = audit.export(g.principal, team_id, audit.AuditFilter.from_args(request.args))
    lines = (json.dumps(audit_shape(e).out(), ensure_ascii=False) + "\n" for e in rows)
    return Response(stream_with_context(lines), mimetype="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="audit-team-{team_id}.jsonl"'})
