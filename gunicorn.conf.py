"""gunicorn settings of the `web` process, from the same settings as the rest (webapp/config.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webapp.config import ConfigError, settings  # noqa: E402
from webapp.process_log import gunicorn_logconfig  # noqa: E402

try:
    chosen = settings()
except ConfigError as e:
    raise SystemExit(str(e)) from None
bind = f"{chosen.HOST}:{chosen.PORT}"
# gthread: each open live-log websocket holds a thread, so threads bound the live viewers.
worker_class = "gthread"
workers = chosen.WEB_WORKERS
threads = chosen.WEB_THREADS
graceful_timeout = 5
accesslog = "-"

logconfig_dict = gunicorn_logconfig() or {}


def post_worker_init(worker):
    from webapp.heap import settle_heap
    settle_heap()
