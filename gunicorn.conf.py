"""gunicorn settings of the `web` process, from the same settings as the rest (webapp/config.py)."""
from gevent import monkey

monkey.patch_all()  # before anything imports ssl or socket (the worker class below patches too late)

import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webapp.config import ConfigError, settings  # noqa: E402
from webapp.process_log import gunicorn_logconfig  # noqa: E402

try:
    chosen = settings()
except ConfigError as e:
    raise SystemExit(str(e)) from None
bind = f"{chosen.HOST}:{chosen.PORT}"
# gevent: a request or an open live-log websocket is a greenlet, not a thread, so one process
# holds a thousand viewers (each waiting on Redis) and still answers API calls; psycopg 3 and
# redis-py wait cooperatively once gevent has patched the socket module.
worker_class = "gevent"
workers = chosen.WEB_WORKERS
worker_connections = chosen.WEB_CONNECTIONS
# gevent times the read of a keep-alive connection's next request from when its greenlet starts
# waiting: a process busy for 2 s (gunicorn's default) closed connections whose request had
# already arrived, and the client lost it. An idle connection costs a greenlet, not a thread.
keepalive = 15
graceful_timeout = 5
accesslog = "-"

logconfig_dict = gunicorn_logconfig() or {}


def post_worker_init(worker):
    from webapp.admission import admitted
    from webapp.heap import settle_heap
    settle_heap()
    worker.wsgi = admitted(worker.wsgi)  # requests past the database pool's size wait their turn
