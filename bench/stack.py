"""Start the product as `make run` does (web, worker, scheduler) on a private port, database and
Redis db, and talk to it over HTTP. Used by the benchmarks only."""
from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "workflows.local/busybox:1"
sys.path.insert(0, str(ROOT))
from webapp.config import local_redis_password, local_redis_url  # noqa: E402


def psql(sql: str, database: str = "postgres") -> str:
    """`sql` run by PostgreSQL's superuser (this machine's cluster), its rows as text."""
    return subprocess.run(["su", "postgres", "-c", f"psql -qAt -d {database} -c \"{sql}\""], check=True,
                          capture_output=True, text=True).stdout


def fresh_database(name: str) -> str:
    """An empty PostgreSQL database `name` owned by the product's role, with pg_stat_statements; its URL."""
    for sql in (f"drop database if exists {name}", f"create database {name} owner workflows"):
        psql(sql)
    psql("create extension if not exists pg_stat_statements", name)
    return f"postgresql://workflows:workflows@127.0.0.1:5432/{name}"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process `pid` has used so far; 0 once it is gone."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree(pids: list[int]) -> list[int]:
    """`pids` and all their descendants."""
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                text=True).stdout.split()]
    return found


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def spread(name: str, values: list[float]) -> None:
    """Print the median, p95 and max of `values` (milliseconds)."""
    values = sorted(values)
    print(f"    {name}: median {statistics.median(values):.1f} ms, p95 {values[int(len(values) * 0.95) - 1]:.1f} ms, "
          f"max {values[-1]:.1f} ms")


def sweep_passes(app, samples: int = 20) -> list[float]:
    """Milliseconds of `samples` sweep passes (jobs/sweeper.sweep, as the scheduler runs it), here."""
    from jobs.sweeper import sweep
    from webapp.extensions import db
    took = []
    for _ in range(samples):
        with app.app_context():
            started = time.perf_counter()
            sweep()
            took.append((time.perf_counter() - started) * 1000)
            db.session.remove()
    return took


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, slots: int = 4, redis_db: int = 11, extra_env: dict | None = None,
                 database_url: str | None = None):
        self.tmp = tempfile.mkdtemp(prefix="bench-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, PORT=str(self.port), DATABASE_URL=database_url or f"sqlite:///{self.tmp}/db.sqlite",
                        REDIS_URL=local_redis_url(redis_db), BASE_URL=self.base,
                        SECRET_KEY="bench-secret-0123456789abcdef", WORKER_SLOTS=str(slots),
                        LOG_LEVEL="WARNING", **(extra_env or {}))
        self.procs: list[subprocess.Popen] = []

    def flask(self, *args: str) -> str:
        return subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                              check=True, capture_output=True, text=True).stdout

    def start(self, processes=("web", "worker", "scheduler")) -> "Stack":
        subprocess.run(["redis-cli", "-n", self.env["REDIS_URL"].rsplit("/", 1)[1], "flushdb"],
                       check=True, capture_output=True, env=dict(os.environ, REDISCLI_AUTH=local_redis_password()))
        self.flask("db", "upgrade")
        self.team, self.project, self.key = self.add_team("bench")
        commands = {
            "web": [".venv/bin/gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}", "wsgi:app"],
            "worker": [".venv/bin/flask", "--app", "wsgi", "worker"],
            "scheduler": [".venv/bin/flask", "--app", "wsgi", "scheduler"],
        }
        for name in processes:
            self.procs.append(subprocess.Popen(commands[name], cwd=ROOT, env=self.env, start_new_session=True,
                                               stdout=open(f"{self.tmp}/{name}.log", "w"), stderr=subprocess.STDOUT))
        if "web" in processes:
            for _ in range(100):
                try:
                    if self.call("GET", "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
        time.sleep(1.5)
        return self

    def add_team(self, name: str) -> tuple[int, int, str]:
        """A team `name` with a member and a full-scope API key: (team id, project id, key)."""
        info = json.loads(self.flask("users", "create", f"{name}@example.test", "--password", "bench-password",
                                     "--team", name).strip().splitlines()[-1])
        key = self.flask("keys", "create", "--team", str(info["teamId"]), "--scope", "full").strip().splitlines()[-1]
        return info["teamId"], info["projectId"], key

    def worker(self, slots: int, host: str | None = None) -> subprocess.Popen:
        """One more `flask worker` of `slots` slots (as the host `host`), once its slots wait for runs."""
        env = dict(self.env, WORKER_SLOTS=str(slots), **({"WORKER_HOST": host} if host else {}))
        p = subprocess.Popen([".venv/bin/flask", "--app", "wsgi", "worker"], cwd=ROOT, env=env, start_new_session=True,
                             stdout=open(f"{self.tmp}/worker-{host or 'default'}-{len(self.procs)}.log", "w"),
                             stderr=subprocess.STDOUT)
        self.procs.append(p)
        from redis import Redis
        from rq import Worker
        connection = Redis.from_url(self.env["REDIS_URL"])
        for _ in range(600):
            kids = set(map(int, subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()))
            if sum("runs" in w.queue_names() for w in Worker.all(connection=connection) if w.pid in kids) >= slots:
                return p
            time.sleep(0.1)
        raise TimeoutError("the worker's slots did not start")

    def stop_process(self, p: subprocess.Popen) -> None:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(15)
        self.procs.remove(p)

    def stop(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def call(self, method: str, path: str, body=None, headers: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {getattr(self, 'key', '')}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def create_workflow(self, **fields) -> str:
        body = {"projectId": self.project, "name": "bench", "image": IMAGE, "timeoutSec": 600, **fields}
        status, wf = self.call("POST", f"/api/projects/{self.team}/{self.project}/workflows", body)
        assert status == 201, wf
        return wf["id"]

    def trigger(self, wf_id: str) -> dict:
        status, run = self.call("POST", f"/api/workflows/{self.team}/workflows/{wf_id}/trigger")
        assert status == 202, run
        return run

    def run(self, run_id: str) -> dict:
        return self.call("GET", f"/api/workflows/{self.team}/workflows/runs/{run_id}")[1]

    def wait_terminal(self, run_id: str, every: float = 0.01, limit: float = 600) -> dict:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            run = self.run(run_id)
            if run["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
                return run
            time.sleep(every)
        raise TimeoutError(run_id)
