"""Who acts, in words: what a run, a pause, a backfill or an env group version says of its maker."""
from __future__ import annotations

from ..extensions import db
from ..models import ApiKey, User
from .access import Principal


def who(principal: Principal) -> str:
    """The member or the API key that acts, in words."""
    if principal.key_id is not None:
        key = db.session.get(ApiKey, principal.key_id)
        return f"API key {key.name or key.prefix} ({key.prefix}…)" if key else "an API key"
    if principal.user_id is None:
        return "operator (CLI)"  # webapp/cli.py acts with neither a member nor a key
    user = db.session.get(User, principal.user_id)
    return user.email if user else "a member"
