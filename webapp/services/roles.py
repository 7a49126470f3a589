"""Who may do what: the one table of the least role each action needs in a team.

Viewers read everything of their team's (env values that look secret stay masked; credentials are
never shown to anyone); members also trigger, retry and cancel runs and see env values; admins
also create, change and delete workflows, channels, registry credentials, env groups, projects and
API keys, and read the audit log; owners also manage the team's members and invitations. Every
route names its action (webapp/gate.py) and every service that changes state checks it here; the
audit log records each change under the same action names (services/audit.py)."""
from __future__ import annotations

from ..vocabulary import ROLES, Role
from .access import Principal, require_team
from .errors import Forbidden, Invalid

RULES: dict[str, Role] = {
    "team.read": Role.VIEWER,
    "member.read": Role.VIEWER,
    "env.reveal": Role.MEMBER,
    "run.trigger": Role.MEMBER,
    "run.retry": Role.MEMBER,
    "run.cancel": Role.MEMBER,
    "backfill.create": Role.MEMBER,
    "backfill.cancel": Role.MEMBER,
    "workflow.create": Role.ADMIN,
    "workflow.update": Role.ADMIN,
    "workflow.delete": Role.ADMIN,
    "webhook.create": Role.ADMIN,
    "webhook.revoke": Role.ADMIN,
    "channel.create": Role.ADMIN,
    "channel.update": Role.ADMIN,
    "channel.delete": Role.ADMIN,
    "channel.test": Role.ADMIN,
    "registry.create": Role.ADMIN,
    "registry.delete": Role.ADMIN,
    "envgroup.create": Role.ADMIN,
    "envgroup.update": Role.ADMIN,
    "envgroup.delete": Role.ADMIN,
    "project.create": Role.ADMIN,
    "project.update": Role.ADMIN,
    "environment.create": Role.ADMIN,
    "key.read": Role.ADMIN,
    "key.create": Role.ADMIN,
    "key.revoke": Role.ADMIN,
    "host.forget": Role.ADMIN,
    "audit.read": Role.ADMIN,
    "member.invite": Role.OWNER,
    "member.role_change": Role.OWNER,
    "member.remove": Role.OWNER,
}

RANK = {role: i for i, role in enumerate(ROLES)}
WORDS = {
    Role.VIEWER: "reads everything but secret values",
    Role.MEMBER: "also triggers, retries and cancels runs",
    Role.ADMIN: "also changes workflows, channels, credentials, env groups and keys",
    Role.OWNER: "also manages members",
}


def up_to(role: Role | str) -> tuple[Role, ...]:
    """The roles `role` may give (to a key, or in an invitation): its own and those below."""
    return ROLES[:RANK[Role(role)] + 1]


def parse(role: str) -> Role:
    """A role named in a request, a form or the CLI; Invalid naming the field otherwise."""
    if role not in ROLES:
        raise Invalid("role is viewer, member, admin or owner", {"role": "viewer, member, admin or owner"})
    return Role(role)


def at_least(role: Role | str | None, least: Role) -> bool:
    return role is not None and RANK[Role(role)] >= RANK[least]


def may(principal: Principal, team_id: int, action: str) -> bool:
    return at_least(principal.roles.get(team_id), RULES[action])


def require(principal: Principal, team_id: int, action: str) -> None:
    """NotFound outside the principal's teams (existence is not leaked), Forbidden below the
    action's role, naming both."""
    require_team(principal, team_id)
    if not may(principal, team_id, action):
        least, role = RULES[action], principal.roles[team_id]
        who = "this API key" if principal.key_id else "you"
        raise Forbidden(f"{action} needs the {least} role or higher; {who} {'is' if principal.key_id else 'are'} "
                        f"{role} in this team")


def teams_where(principal: Principal, action: str) -> set[int]:
    return {t for t in principal.roles if may(principal, t, action)}
