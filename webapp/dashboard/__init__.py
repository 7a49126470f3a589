"""The dashboard blueprint: server-rendered pages."""
from flask import Blueprint

bp = Blueprint("dashboard", __name__)

from . import auth, pages, settings  # noqa: E402,F401
