"""The dashboard blueprint: what every page module adds its routes to."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__)
