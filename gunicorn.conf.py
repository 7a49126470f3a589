"""gunicorn settings of the `web` process, from the same environment variables as the rest."""
import os
import sys


def _count(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"{name} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


bind = f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '5000'}"
# gthread: each open live-log websocket holds a thread, so threads bound the live viewers.
worker_class = "gthread"
workers = _count("WEB_WORKERS", 2)
threads = _count("WEB_THREADS", 32)
graceful_timeout = 5
accesslog = "-"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webapp.logs import gunicorn_logconfig  # noqa: E402

logconfig_dict = gunicorn_logconfig() or {}


def post_worker_init(worker):
    from webapp.heap import settle_heap
    settle_heap()
