"""Who is calling, and what they may touch. Other teams' things are NotFound, never Forbidden."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from ..vocabulary import Role
from .errors import Forbidden, NotFound


@dataclass(frozen=True)
class Principal:
    """Who acts: a member's session, an API key, or the operator's CLI (neither), with the role
    they have in each of their teams, and where the request came from (for the audit log)."""
    roles: Mapping[int, Role] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    mode: str | None = None  # live | test for API keys, None for a member's session
    user_id: int | None = None
    key_id: int | None = None
    session_version: int | None = None  # of a member's session: a logout or a password change ends it
    ip: str | None = None
    user_agent: str | None = None

    @property
    def team_ids(self) -> frozenset[int]:
        return frozenset(self.roles)

    @property
    def label(self) -> str:
        return f"key:{self.key_id}" if self.key_id else f"user:{self.user_id}"

    @classmethod
    def operator(cls, team_ids) -> "Principal":
        """The operator at the CLI: an owner of the teams it names."""
        return cls(roles=MappingProxyType({t: Role.OWNER for t in team_ids}))


PUBLIC_ID = re.compile(r"(wf|run|bf)_[a-z0-9]{1,40}")


def require_public_id(public_id: str) -> None:
    """Ids that cannot be ours are not found, before they reach a query."""
    if not PUBLIC_ID.fullmatch(public_id or ""):
        raise NotFound("not found")


def require_team(principal: Principal, team_id: int) -> None:
    if team_id not in principal.team_ids:
        raise NotFound("not found")


def require_not_test_key(principal: Principal, what: str) -> None:
    """What applies to Production too (a team's channels, a project's registry credentials) is not
    an hs_test_ key's to add."""
    if principal.mode == "test":
        raise Forbidden(f"hs_test_ keys may not add {what}: Production workflows would use it")


def require_environment_access(principal: Principal, is_production: bool) -> None:
    if principal.mode == "test" and is_production:
        raise Forbidden("hs_test_ keys may not act on Production workflows")
