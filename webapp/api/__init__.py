"""The JSON API: /api/... (routes register on import of their modules)."""
from . import backfills, channels, envgroups, hooks, keys, live, openapi, projects, registry, runs, team, workflows  # noqa: F401
from .blueprint import bp  # noqa: F401
