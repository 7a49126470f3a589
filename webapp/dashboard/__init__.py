"""The dashboard: server-rendered pages (routes register on import of their modules)."""
from . import auth, backfills, envgroups, pages, settings, sso, team  # noqa: F401
from .blueprint import bp  # noqa: F401
