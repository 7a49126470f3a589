"""One fixture world on real services: a real database (SQLite file or PostgreSQL), a real Redis
(a db of its own), the real Docker engine. alice owns team A, bob is in team A too, charlie owns team B."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "workflows.local/busybox:1"
# scripts/test.sh runs the SQLite and the PostgreSQL pass side by side, each split over pytest-xdist
# workers (gw0, gw1…). Every worker has its own Redis db and database; names it makes on the engine,
# the registry and the machine's network carry TEST_SLOT (pass and worker), so none meets another's.
TEST_PASS = "postgres" if os.environ.get("TEST_DATABASE_URL", "sqlite").startswith("postgres") else "sqlite"
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
MAX_WORKERS = 4  # per pass: Redis has 16 dbs, the two passes take 15..12 and 11..8
SLOT_INDEX = (0 if TEST_PASS == "sqlite" else MAX_WORKERS) + int(WORKER[2:])
assert int(WORKER[2:]) < MAX_WORKERS, f"at most {MAX_WORKERS} xdist workers per pass"
TEST_SLOT = f"{TEST_PASS}-{WORKER}"
# The tests' private registry (Debian's docker-registry, htpasswd auth), and an image pushed to it.
REGISTRY = "127.0.0.1:5001"
PRIVATE = f"{REGISTRY}/private/busybox-{TEST_SLOT}"
AUTH = {"username": "tester", "password": "tester-pw"}

sys.path.insert(0, str(ROOT))
from webapp.config import local_redis_url  # noqa: E402


def _own_database(url: str) -> str:
    """The worker's database: a new SQLite file, or on PostgreSQL `<name>_<worker>` made afresh
    (the role may create databases: scripts/setup.sh) when the suite runs split over workers."""
    if url == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='workflows-test-')}/test.sqlite"
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return url
    import psycopg
    base, name = url.rsplit("/", 1)
    own = f"{name}_{WORKER}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{own}"')
    return f"{base}/{own}"


_db = _own_database(os.environ.get("TEST_DATABASE_URL", "sqlite"))
os.environ.update(
    DATABASE_URL=_db,
    REDIS_URL=os.environ.get("TEST_REDIS_URL") or local_redis_url(15 - SLOT_INDEX),
    SECRET_KEY="test-secret-key-0123456789abcdef",
    BASE_URL="http://127.0.0.1:5999",
    WORKER_SLOTS="2",
    NOTIFY_SLOTS="1",  # the notification tests that need more ask for them
    LOG_LEVEL="WARNING",
    # Every test worker of both passes installs the same egress rules (they are the machine's):
    # this range is the one opened on purpose (tests/test_isolation.py reaches into it).
    RUNS_EGRESS_ALLOW="10.214.9.0/24",
    REGISTRY_ALLOWED_HOSTS="127.0.0.1:5001",  # the tests' registry (tests/test_registry.py)
)

from webapp import create_app  # noqa: E402
from webapp.connections import get_docker, get_redis  # noqa: E402
from webapp.extensions import db as _db_ext  # noqa: E402


def _upgrade(app) -> None:
    from flask_migrate import upgrade
    with app.app_context():
        upgrade()


@pytest.fixture(scope="session")
def app():
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    _upgrade(app)
    yield app


def _clean(app) -> None:
    with app.app_context():
        _db_ext.session.remove()
        tables = [t.name for t in reversed(_db_ext.metadata.sorted_tables)] + ["alembic_version"]
        engine = _db_ext.engine
        with engine.begin() as conn:
            for t in tables:
                if t != "alembic_version":
                    conn.exec_driver_sql(f"DELETE FROM {t}")
            if engine.dialect.name == "postgresql":
                # ids from 1 again; not TRUNCATE … RESTART IDENTITY: that makes every table's files
                # anew, each test (4x slower, and tens of thousands of files for each checkpoint to sync)
                for (sequence,) in conn.exec_driver_sql("SELECT sequencename FROM pg_sequences "
                                                        "WHERE schemaname = current_schema()").all():
                    conn.exec_driver_sql(f"SELECT setval('{sequence}', 1, false)")
        get_redis().flushdb()


@pytest.fixture(autouse=True)
def _fresh_state(app):
    _clean(app)
    yield
    with app.app_context():
        _db_ext.session.remove()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield
        _db_ext.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class Member:
    email: str
    password: str
    user_id: int
    team_id: int
    project_id: int
    environment_id: int
    full: str
    read: str
    test: str

    def h(self, which: str = "full") -> dict:
        return {"Authorization": f"Bearer {getattr(self, which)}"}


def make_member(app, email: str, team: str) -> Member:
    from webapp.services.access import Principal
    from webapp.services.keys import create_key
    from webapp.services.teams import create_user
    with app.app_context():
        user, t, project = create_user(email, "password-" + email, team)
        full = create_key(Principal.operator({t.id}), t.id, "admin", "live")[1]
        read = create_key(Principal.operator({t.id}), t.id, "viewer", "live")[1]
        test = create_key(Principal.operator({t.id}), t.id, "admin", "test")[1]
        m = Member(email, "password-" + email, user.id, t.id, project.id, project.production.id, full, read, test)
        _db_ext.session.remove()
        return m


@pytest.fixture
def alice(app):
    return make_member(app, "alice@example.test", "team-a")


@pytest.fixture
def bob(app, alice):
    return make_member(app, "bob@example.test", "team-a")


@pytest.fixture
def charlie(app):
    return make_member(app, "charlie@example.test", "team-b")


def wf_body(member: Member, **over) -> dict:
    body = {"projectId": member.project_id, "name": "job", "image": TEST_IMAGE,
            "command": ["sh", "-c", "echo hi"], "timeoutSec": 60}
    body.update(over)
    return body


def grant_pool(app, member: Member, pool: str) -> None:
    """An operator sets `pool` aside for the member's team (pools other than default are granted)."""
    result = app.test_cli_runner().invoke(args=["pools", "allow", pool, "--team", str(member.team_id)])
    assert result.exit_code == 0, result.output


def create_wf(client, member: Member, **over) -> dict:
    r = client.post(f"/api/projects/{member.team_id}/{member.project_id}/workflows",
                    json=wf_body(member, **over), headers=member.h())
    assert r.status_code == 201, r.get_json()
    return r.get_json()


@pytest.fixture
def docker_api(app):
    with app.app_context():
        return get_docker().api


@pytest.fixture
def private_image(docker_api):
    """The test image, pushed to the private registry only (the worker has to pull it)."""
    docker_api.tag(TEST_IMAGE, PRIVATE, "1")
    for item in docker_api.push(PRIVATE, tag="1", auth_config=AUTH, stream=True, decode=True):
        assert "error" not in item, item
    docker_api.remove_image(f"{PRIVATE}:1")
    yield f"{PRIVATE}:1"
    try:
        docker_api.remove_image(f"{PRIVATE}:1")
    except Exception:
        pass


# -- servers: the app on a real port, a browser, and receivers for what the product sends ----
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app, port: int | None = None):
    """`app` served by werkzeug on `port` (a free one by default) of 127.0.0.1, threaded; yields the port."""
    from werkzeug.serving import make_server
    port = port or free_port()
    srv = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield port
    finally:
        srv.shutdown()


@pytest.fixture(scope="module")
def server():
    """The dashboard's server: an app of its own with CSRF on, as in production."""
    with serving(create_app({"TESTING": True})) as port:
        yield f"http://127.0.0.1:{port}"


@contextmanager
def gunicorn(**env: str):
    """The production web server (gunicorn.conf.py, separate worker processes) on a free port,
    with `env` (WEB_WORKERS, WEB_CONNECTIONS ...); yields (its process, its base URL) once /healthz
    answers."""
    import requests
    port = free_port()
    web = subprocess.Popen([str(ROOT / ".venv/bin/gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                           env=dict(os.environ, PORT=str(port), **env), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answers():
        try:
            return requests.get(f"{url}/healthz", timeout=5).status_code in (200, 503)
        except requests.RequestException:
            return False
    try:
        wait_for(answers, 60)
        yield web, url
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(20)


@pytest.fixture
def ws_server(app):
    """The test app served for websocket clients (the live log)."""
    with serving(app) as port:
        yield f"ws://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    from browsing import CHROMIUM, FLAGS
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    context.close()


@pytest.fixture
def receiver():
    from receivers import Receiver
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd): (its mailbox, its port)."""
    from aiosmtpd.controller import Controller
    from receivers import Mailbox
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


# -- real processes: workers and schedulers, as `make run` starts them ------------------------
def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


class Processes:
    """Real worker and scheduler processes. `worker()` and `scheduler()` return once the process
    is ready (its slots registered with RQ in Redis, the scheduler's first tick done), never
    after a guessed sleep: a cold machine starts them slower than a warm one."""

    def __init__(self, app):
        self.app = app
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict | None = None, prefix: tuple = ()) -> subprocess.Popen:
        """`flask ARGS`; `prefix` runs it under another command (nsenter into a network namespace)."""
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.Popen([*prefix, str(ROOT / ".venv/bin/flask"), "--app", "wsgi", *args], cwd=ROOT, env=e,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def worker(self, slots: int = 2, env: dict | None = None, wait: bool = True, args: tuple = (),
               prefix: tuple = ()) -> subprocess.Popen:
        p = self.start("worker", "--slots", str(slots), *args, env=env, prefix=prefix)
        if wait:
            self.wait_worker(p, slots, int((env or {}).get("NOTIFY_SLOTS", os.environ.get("NOTIFY_SLOTS", 2))))
        return p

    def scheduler(self, env: dict | None = None, wait: bool = True) -> subprocess.Popen:
        p = self.start("scheduler", env=env)
        if wait:
            self.wait_scheduler(p)
        return p

    def wait_worker(self, p: subprocess.Popen, slots: int, notify_slots: int = 0, timeout: float = 90) -> None:
        """Until every run slot and every notification slot of the pool is registered with RQ."""
        from rq import Worker
        with self.app.app_context():
            redis = get_redis()

            def ready():
                assert p.poll() is None, f"the worker exited with {p.returncode}"
                kids = _children(p.pid)
                queues = [w.queue_names() for w in Worker.all(connection=redis) if w.pid in kids]
                return (sum(any(n == "runs" or n.startswith("runs:") for n in q) for q in queues) >= slots
                        and sum("notify" in q for q in queues) >= notify_slots)
            wait_for(ready, timeout)

    def wait_scheduler(self, p: subprocess.Popen, timeout: float = 90) -> None:
        import socket
        key = f"workflows:heartbeat:scheduler:{socket.gethostname()}:{p.pid}"
        with self.app.app_context():
            redis = get_redis()

            def ready():
                assert p.poll() is None, f"the scheduler exited with {p.returncode}"
                return redis.exists(key)
            wait_for(ready, timeout)

    def kill(self, p: subprocess.Popen, sig=signal.SIGKILL) -> None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        p.wait(10)

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                self.kill(p, signal.SIGTERM)
        _stop_host_guards()


def _stop_host_guards() -> None:
    """The host guards this test's workers started: they outlive their workers by design, and a
    guard left by one test keeps its host (one guard per host) with that test's HOST_LOST_SEC, so
    it would fence the next test's runs on its own schedule. Only this test worker's (its
    database), not another xdist worker's. A guard writes its pid beside its lock (jobs/fence.py)."""
    mine = f"DATABASE_URL={_db}".encode()
    for pid_file in (ROOT / "var" / "hosts").glob("*/guard.pid"):
        try:
            pid = int(pid_file.read_text())
            if mine in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass


@pytest.fixture
def procs(app):
    ps = Processes(app)
    yield ps
    ps.stop_all()


@pytest.fixture(scope="module")
def engine_b():
    """A second real Docker engine in a network namespace of its own (tests/second_engine.py), for
    the tests of a module; each worker of each pass has its own."""
    from second_engine import SecondEngine
    engine = SecondEngine(f"wf-engine-b-{TEST_SLOT}")
    started = time.monotonic()
    engine.start(fresh=True)
    print(f"second engine up in {time.monotonic() - started:.1f} s")
    yield engine
    engine.close()


@pytest.fixture
def worker(procs):
    """A worker pool (2 run slots) and a scheduler, like `make run` has, once both are ready
    (started together: each loads the app on its own)."""
    pool, scheduler = procs.worker(2, wait=False), procs.scheduler(wait=False)
    procs.wait_worker(pool, 2, int(os.environ["NOTIFY_SLOTS"]))
    procs.wait_scheduler(scheduler)
    return procs


def all_logs(client, member: Member, run_id: str) -> dict:
    """Every page of a run's logs (the API answers at most 10,000 lines a page), as one body."""
    url = f"/api/workflows/{member.team_id}/workflows/runs/{run_id}/logs"
    body = client.get(url, headers=member.h()).get_json()
    lines = list(body["lines"])
    while body["nextAfterSeq"] is not None:
        body = client.get(f"{url}?afterSeq={body['nextAfterSeq']}", headers=member.h()).get_json()
        lines += body["lines"]
    return {**body, "lines": lines}


def wait_for(predicate, timeout: float = 30, every: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def wait_status(client, member: Member, run_id: str, statuses=("succeeded", "failed", "cancelled", "timed_out"),
                timeout: float = 60) -> dict:
    def check():
        r = client.get(f"/api/workflows/{member.team_id}/workflows/runs/{run_id}", headers=member.h())
        body = r.get_json()
        return body if body["status"] in statuses else None
    return wait_for(check, timeout)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """pytest-xdist hands tests out by node id: of items that share one, a worker runs only one,
    silently. Such tests must be marked serial (scripts/test.sh runs those without xdist)."""
    shared = sorted(nodeid for nodeid, n in Counter(ids).items() if n > 1)
    if shared:
        raise pytest.UsageError(f"items share node ids, so pytest-xdist would run one of each: {shared}; "
                                "mark them serial")


def pytest_sessionfinish(session, exitstatus):
    """No container of the suite may outlive it (each xdist worker checks its own; the controller
    that hands out the tests has none)."""
    if getattr(session.config.option, "numprocesses", None) and not hasattr(session.config, "workerinput"):
        return
    try:
        app = create_app()
        with app.app_context():
            api = get_docker().api
            from jobs.engine import LABEL_INSTANCE, instance_id
            left = api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={instance_id()}"})
        if left:
            print(f"\n{len(left)} containers left behind by the suite")
            session.exitstatus = 1
            for c in left:
                api.remove_container(c["Id"], force=True)
    except Exception as e:  # the engine is part of the suite: not reaching it is a failure
        print(f"\ncould not check for leftover containers: {e}")
        session.exitstatus = 1
