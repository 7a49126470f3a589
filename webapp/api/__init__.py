"""The JSON API blueprint: /api/..."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from . import channels, openapi, projects, registry, runs, workflows  # noqa: E402,F401  (routes register on import)
from .. import live  # noqa: E402,F401  (the websocket route lives on this blueprint)
