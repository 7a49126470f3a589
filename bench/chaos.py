"""Chaos soak: exactly once while processes die, services restart and a host is cut off, audited
from outside.

A fleet on PostgreSQL: worker host A (this machine's engine), worker host B (a second engine in a
network namespace of its own, reaching the database and Redis over a veth that can be cut), and a
third worker host on engine A whose wall clock is 30 s ahead of the database's. For --minutes N
(default 10): 20 workflows fire every 2 s (`*/2 * * * * *`, `forbid`, some failing with a retry,
all printing a known sequence) and 2 every 10 s (`allow`: made ahead of the instant and started
on it), manual triggers, manual retries and cancels arrive over the API, and every ~5 s one of a
worker slot, a worker supervisor, a scheduler (two run) or the web process is killed with SIGKILL
and brought back. Host B is cut off from the database and Redis three times for 25 s (longer than
HOST_LOST_SEC, 20 s here: it fences its runs, the fleet retries them elsewhere), PostgreSQL is
stopped for 3 s once, Redis is restarted twice and dockerd (engine A) once. Then the faults stop,
the schedules are removed, everything settles, and the audit checks:

  - every due instant of every schedule has exactly one run, but those below;
  - every run is terminal once things settle (nothing stuck);
  - no run ran twice: the engines' own event streams show at most one container created per run;
  - no run and any of its retries (automatic or manual, at any depth) ever had a running
    container at the same time, on either engine (start and die events); two retries of one run
    may, as two triggers may: each is a run the caller asked for;
  - instants missing only while PostgreSQL was stopped, or while both schedulers were down (each
    killed within a second after the instant, or not beating again yet): no scheduler can fire
    then; each told by a workflow.missed event (the contract: the latest missed instant runs, the
    others do not);
  - every succeeded run's stored log is contiguous (seq 0..n-1) and its output byte-exact;
  - every final failure emitted exactly one workflow.failed event, delivered once (one delivery
    id) to a real webhook receiver;
  - no container of the installation is left;
  - chains: each run of an upstream that ended in its edge's state (ahead0 succeeded, sched00
    failed for good) fired exactly one run of its downstream, and no chain run has another cause;
  - idempotency: triggers and webhook calls sent with an Idempotency-Key (about half of them a key
    sent before, and every key sent again until it is answered, as a client does) made one run per
    key, and every answer of a key named that run;
  - backfill: two overlapping backfills of an hourly workflow (the second asked for halfway
    through, while the first is still firing) made exactly one run per instant of their ranges
    together, each fired or skipped every instant of its own range, and each fired as many runs
    as it counts.

It exits non-zero on any violation and prints its counts as its last line.
Usage: .venv/bin/python bench/chaos.py [--minutes N] [--seed S] [--faults a,b] [--runs-per-process K]
(needs root: it restarts redis-server, PostgreSQL and dockerd, so run it alone, not beside the test
suite)
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from stack import ROOT, Stack

sys.path.insert(0, str(ROOT / "tests"))
from partition import Partition  # noqa: E402  (the tests' own: a namespace joined by a cuttable veth)
from second_engine import SecondEngine  # noqa: E402

from webapp.config import local_redis_password  # noqa: E402

VAR = ROOT / "var"
REDIS_CLI_ENV = dict(os.environ, REDISCLI_AUTH=local_redis_password())
LINES = 20
SCHEDULED = 20
AHEAD = 2  # `allow` workflows, fired SCHEDULE_LEAD_SEC ahead of their instants, every AHEAD_EVERY s
AHEAD_EVERY = 10
FAILING = 5  # of the scheduled workflows, these exit 3 after their output (maxRetries 1)
SETTLE_SEC = 240
DATABASE = "workflows_chaos"
HOST_LOST_SEC = 20
CUT_SEC = 25  # a partition of host B: past HOST_LOST_SEC
SKEW_SEC = 30
FAULTS = [(0.15, "cut_host_b"), (0.25, "restart_redis"), (0.35, "restart_postgres"), (0.45, "cut_host_b"),
          (0.55, "restart_dockerd"), (0.65, "restart_redis"), (0.8, "cut_host_b")]  # (share of the time, what)
KINDS = ("cut_host_b", "restart_redis", "restart_postgres", "restart_dockerd", "kills")


def sequence(tag: str, fail: bool = False, pause: str = "0") -> list[str]:
    script = f'i=1; while [ $i -le {LINES} ]; do echo "{tag} line $i"; i=$((i+1)); done; sleep {pause}'
    return ["sh", "-c", script + ("; exit 3" if fail else "")]


def expected(tag: str) -> list[str]:
    return [f"{tag} line {i}" for i in range(1, LINES + 1)]


class Receiver:
    """The webhook receiver: every POST, by delivery id."""

    def __init__(self):
        self.posts: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                receiver.posts.append({"delivery": self.headers.get("X-Workflows-Delivery"),
                                       "event": body["event"], "run": body["run"]["id"]})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class EngineEvents:
    """Container create, start and die events of this installation from one engine, kept across a
    restart of the engine (reconnect with `since` the last event seen)."""

    def __init__(self, label: str, base_url: str | None = None, name: str = "a"):
        self.label, self.base_url, self.name = label, base_url, name
        self.created: Counter = Counter()
        self.spans: dict[str, list] = {}  # container id -> [run id, started, died]
        self.hosts: dict[str, str] = {}  # container id -> the worker host it was claimed on
        self.since = time.time()
        self.stop = threading.Event()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self):
        import docker
        while not self.stop.is_set():
            try:
                api = docker.APIClient(base_url=self.base_url, timeout=None) if self.base_url else \
                    docker.APIClient(timeout=None)
                for ev in api.events(since=self.since, decode=True,
                                     filters={"type": "container", "event": ["create", "start", "die"],
                                              "label": self.label}):
                    self._record(ev)
                    self.since = ev["timeNano"] / 1e9 + 1e-6
                    if self.stop.is_set():
                        return
            except Exception:
                time.sleep(0.5)

    def _record(self, ev: dict) -> None:
        run = (ev.get("Actor", {}).get("Attributes") or {}).get("workflows.run")
        cid, at = ev["Actor"]["ID"], ev["timeNano"] / 1e9
        if ev["Action"] == "create":
            self.created[run] += 1
        elif ev["Action"] == "start":
            self.spans[cid] = [run, at, None]
            self.hosts[cid] = (ev["Actor"].get("Attributes") or {}).get("workflows.host", "?")
        elif ev["Action"] == "die" and cid in self.spans:
            self.spans[cid][2] = at


def overlapping(parents: dict[str, str | None], engines: list[EngineEvents]) -> list[str]:
    """Pairs of runs, one an ancestor of the other by retryOf (`parents`: run id -> the run it
    retries, or None), whose containers ran at the same time, on any engine: a run was retried
    (automatically or by hand: either needs it terminal) while a container of it still ran.
    Two retries of one run are not such a pair: each is a run the caller asked for."""
    def lineage(run: str) -> list[str]:
        chain = [run]
        while parents.get(chain[-1]) is not None and len(chain) < 100:
            chain.append(parents[chain[-1]])
        return chain
    now = time.time()
    spans = defaultdict(list)
    for engine in engines:
        for run, began, died in engine.spans.values():
            if run in parents:
                spans[lineage(run)[-1]].append((began, died or now, run, engine.name))
    found = []
    for items in spans.values():
        items.sort()
        for k, (began, died, run, where) in enumerate(items):
            for began2, _, run2, where2 in items[k + 1:]:
                if began2 < died and run2 != run and (run in lineage(run2) or run2 in lineage(run)):
                    found.append(f"attempts overlapping: {run} on {where} and {run2} on {where2} "
                                 f"({died - began2:.1f} s)")
    return found


class Chaos:
    def __init__(self, minutes: float, seed: int, kinds: tuple[str, ...] = KINDS, runs_per_process: int = 1):
        self.minutes, self.kinds = minutes, kinds
        self.timeline: list[tuple[datetime, str]] = []
        self.rng = random.Random(seed)
        self.stack = Stack(slots=4, redis_db=12, extra_env={
            "TRIGGER_RATE_LIMIT": "100000 per minute", "RUN_LEASE_TTL_SEC": "6", "HOST_LOST_SEC": str(HOST_LOST_SEC),
            "RUNS_PER_PROCESS": str(runs_per_process)})
        self.stack.env["DATABASE_URL"] = f"postgresql://workflows:workflows@127.0.0.1:5432/{DATABASE}"
        self.engine_b = SecondEngine("wf-engine-b-chaos")
        self.partition = Partition(self.engine_b.name, 3)
        self.procs: dict[str, subprocess.Popen] = {}
        self.counts: Counter = Counter()
        self.refused = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        # Per scheduler: (killed at, first heartbeat of the one spawned after it) on the database's
        # clock (this machine's): while every scheduler is in such a window, no instant can fire.
        self.scheduler_down: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)

    # -- processes ---------------------------------------------------------------------------
    def spawn(self, name: str) -> None:
        s = self.stack
        flask = [".venv/bin/flask", "--app", "wsgi"]
        cmd = {
            "web": [".venv/bin/gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{s.port}",
                    "--threads", "16", "wsgi:app"],
            "worker": flask + ["worker"],
            "worker-b": [*self.partition.prefix, *flask, "worker", "--slots", "2"],
            "worker-skewed": flask + ["worker", "--slots", "2"],
            "scheduler-a": flask + ["scheduler"],
            "scheduler-b": flask + ["scheduler"],
        }[name]
        env = dict(s.env)
        if name == "worker-b":
            env["DOCKER_HOST"] = self.engine_b.url
            env["NOTIFY_SLOTS"] = "0"  # the audit's webhook receiver is on this machine's loopback
        if name == "worker-skewed":
            env.update(WORKER_HOST="chaos-skewed", LD_PRELOAD=self.clockshift, WORKFLOWS_CLOCK_SHIFT_SEC=str(SKEW_SEC))
        log = open(f"{s.tmp}/{name}.log", "a")
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=log,
                                            stderr=subprocess.STDOUT)

    def kill(self, name: str, group: bool = True) -> None:
        p = self.procs[name]
        try:
            if group:
                os.killpg(p.pid, signal.SIGKILL)
            else:
                os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(15)

    def start(self) -> None:
        s = self.stack
        subprocess.run(["redis-cli", "-n", "12", "flushdb"], check=True, capture_output=True, env=REDIS_CLI_ENV)
        for sql in (f"drop database if exists {DATABASE}", f"create database {DATABASE} owner workflows"):
            subprocess.run(["su", "postgres", "-c", f"psql -qc '{sql}'"], check=True, capture_output=True)
        self.engine_b.start(fresh=True)
        self.partition.open()
        self.clockshift = str(VAR / "clockshift.so")
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", self.clockshift, str(ROOT / "tests" / "clockshift.c"),
                        "-ldl"], check=True)
        s.flask("db", "upgrade")
        info = json.loads(s.flask("users", "create", "chaos@example.test", "--password", "chaos-password",
                                  "--team", "chaos").strip().splitlines()[-1])
        s.team, s.project = info["teamId"], info["projectId"]
        s.key = s.flask("keys", "create", "--team", str(s.team), "--scope", "full").strip().splitlines()[-1]
        for name in ("web", "worker", "worker-b", "worker-skewed", "scheduler-a", "scheduler-b"):
            self.spawn(name)
        self.wait_web()

    def wait_web(self, limit: float = 60) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                if self.stack.call("GET", "/healthz")[0] in (200, 503):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the web process did not come up")

    def stop_all(self) -> None:
        for name, p in self.procs.items():
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.partition.close()
        self.engine_b.close()

    # -- the API, tolerant of a web process that is being killed -----------------------------
    def api(self, method: str, path: str, body=None, headers: dict | None = None):
        try:
            status, data = self.stack.call(method, path, body, headers)
        except (OSError, http.client.HTTPException, ValueError):  # killed mid-answer: cut short
            with self.lock:
                self.refused += 1
            return None, None
        if status >= 500:
            with self.lock:
                self.refused += 1
        return status, data

    # -- set-up -------------------------------------------------------------------------------
    def create_workflows(self) -> None:
        s = self.stack
        status, _ = self.api("POST", f"/api/teams/{s.team}/notification-channels",
                             {"kind": "webhook", "name": "audit", "target": self.receiver.url})
        assert status == 201, status
        self.tags: dict[str, str] = {}
        self.scheduled: list[str] = []
        self.period: dict[str, int] = {}  # seconds between a scheduled workflow's instants
        for i in range(SCHEDULED):
            tag = f"sched{i:02d}"
            fail = i < FAILING
            wf = s.create_workflow(name=tag, command=sequence(tag, fail, pause=self.rng.choice(["0", "0.5", "1"])),
                                   schedule="*/2 * * * * *", concurrencyPolicy="forbid", timeoutSec=60,
                                   maxRetries=1 if fail else 0, retryBackoffSec=1)
            self.tags[wf] = tag
            self.scheduled.append(wf)
            self.period[wf] = 2
        for i in range(AHEAD):
            tag = f"ahead{i}"
            wf = s.create_workflow(name=tag, command=sequence(tag, False, pause="0.5"), timeoutSec=60,
                                   schedule=f"*/{AHEAD_EVERY} * * * * *")
            self.tags[wf] = tag
            self.scheduled.append(wf)
            self.period[wf] = AHEAD_EVERY
        self.manual = []
        for i in range(3):
            tag = f"manual{i}"
            wf = s.create_workflow(name=tag, command=sequence(tag, fail=i == 2, pause="1"), timeoutSec=60,
                                   maxRetries=1 if i == 2 else 0, retryBackoffSec=1)
            self.tags[wf] = tag
            self.manual.append(wf)
        self.long = s.create_workflow(name="long", command=["sh", "-c", "trap 'exit 143' TERM; sleep 30 & wait"],
                                      timeoutSec=120)
        # chains: after each success of ahead0, after each final failure of sched00
        self.chains = {}  # downstream -> (upstream, on)
        edges = (("chain0", self.scheduled[SCHEDULED], "succeeded"), ("chain1", self.scheduled[0], "failed"))
        for tag, upstream, on in edges:
            wf = s.create_workflow(name=tag, command=sequence(tag), timeoutSec=60,
                                   after=[{"workflow": upstream, "on": on}])
            self.tags[wf] = tag
            self.chains[wf] = (upstream, on)
        self.idem = s.create_workflow(name="idem", command=sequence("idem"), timeoutSec=60)
        self.tags[self.idem] = "idem"
        status, hook = self.api("POST", f"/api/workflows/{s.team}/workflows/{self.idem}/webhook")
        assert status == 201, status
        self.hook_path = hook["url"][hook["url"].index("/hooks/"):]
        self.idem_answers: dict[str, set] = defaultdict(set)  # key -> the run ids its answers named
        self.backfilled = s.create_workflow(name="backfill", command=sequence("backfill", pause="0.5"),
                                            timeoutSec=60, schedule="0 * * * *")
        self.tags[self.backfilled] = "backfill"

    def backfill(self, first: int, last: int) -> None:
        """A backfill of the hourly workflow's instants from `first` to `last` hours ago, three at
        once, asked again until it is answered (each unanswered ask may have made one: the audit
        counts every backfill the database has)."""
        hour = datetime.utcnow().replace(minute=0, second=0, microsecond=0)
        body = {"from": (hour - timedelta(hours=first)).isoformat() + "Z",
                "to": (hour - timedelta(hours=last)).isoformat() + "Z", "maxConcurrent": 3}
        for _ in range(120):
            status, _ = self.api("POST", f"/api/workflows/{self.stack.team}/workflows/{self.backfilled}/backfill", body)
            if status == 201:
                self.counts["backfills"] += 1
                return
            time.sleep(0.5)

    # -- load ---------------------------------------------------------------------------------
    def traffic(self) -> None:
        s = self.stack
        cancels: list[tuple[float, str]] = []
        while not self.stopping.is_set():
            roll = self.rng.random()
            if roll < 0.5:
                status, _ = self.api("POST", f"/api/workflows/{s.team}/workflows/{self.rng.choice(self.manual)}/trigger")
                self.counts["manual_triggers"] += status == 202
            elif roll < 0.6:
                self.keyed_trigger()
            elif roll < 0.7:
                status, run = self.api("POST", f"/api/workflows/{s.team}/workflows/{self.long}/trigger")
                if status == 202:
                    self.counts["long_triggers"] += 1
                    cancels.append((time.monotonic() + self.rng.uniform(1, 8), run["id"]))
            else:
                wf = self.rng.choice(self.manual + self.scheduled[:FAILING])
                status, body = self.api("GET", f"/api/workflows/{s.team}/workflows/{wf}/runs?limit=5")
                done = [r for r in (body or {}).get("runs", []) if r["status"] in ("failed", "succeeded")]
                if status == 200 and done:
                    status, _ = self.api("POST", f"/api/workflows/{s.team}/workflows/runs/{done[0]['id']}/retry")
                    self.counts["manual_retries"] += status == 202
            now = time.monotonic()
            for when, run_id in [c for c in cancels if c[0] <= now]:
                cancels.remove((when, run_id))
                status, _ = self.api("POST", f"/api/workflows/{s.team}/workflows/runs/{run_id}/cancel")
                self.counts["cancels"] += status == 202
            self.stopping.wait(self.rng.uniform(0.5, 1.2))

    def keyed_trigger(self) -> None:
        """A trigger or a webhook call with an Idempotency-Key: a key sent before about half the
        time, and sent again until it is answered (a web process killed mid-request answers
        nothing). Webhook keys and trigger keys are apart: one key is one request."""
        known = list(self.idem_answers)
        if known and self.rng.random() < 0.5:
            key = self.rng.choice(known)
        else:
            key = f"{self.rng.choice(['trigger', 'hook'])}-{len(known)}"
        path = self.hook_path if key.startswith("hook") else \
            f"/api/workflows/{self.stack.team}/workflows/{self.idem}/trigger"
        for _ in range(60):
            status, run = self.api("POST", path, {"n": 1} if key.startswith("hook") else None,
                                   headers={"Idempotency-Key": key})
            if status == 202:
                self.idem_answers[key].add(run.get("runId") or run["id"])
                self.counts["keyed_triggers"] += 1
                return
            time.sleep(0.5)
        self.idem_answers.setdefault(key, set())

    # -- faults -------------------------------------------------------------------------------
    def restart_redis(self) -> None:
        subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, env=REDIS_CLI_ENV)
        time.sleep(self.rng.uniform(0.5, 2))
        subprocess.run(["redis-server", "--daemonize", "yes", "--port", "6379", "--bind", "127.0.0.1",
                        "--dir", str(VAR), "--save", "", "--appendonly", "no", "--logfile", str(VAR / "redis.log"),
                        *(["--requirepass", local_redis_password()] if local_redis_password() else [])],
                       check=True, capture_output=True)
        _wait(lambda: b"PONG" in subprocess.run(["redis-cli", "ping"], capture_output=True, env=REDIS_CLI_ENV).stdout, 30)
        self.counts["redis_restarts"] += 1

    def restart_dockerd(self) -> None:
        pid = int(Path("/var/run/docker.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        _wait(lambda: not Path(f"/proc/{pid}").exists(), 60)
        subprocess.Popen(["dockerd"], stdout=open(VAR / "dockerd.log", "a"), stderr=subprocess.STDOUT,
                         start_new_session=True)
        _wait(lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0, 60)
        self.counts["dockerd_restarts"] += 1

    def restart_postgres(self) -> None:
        version, name = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                                       check=True).stdout.split()[:2]
        subprocess.run(["pg_ctlcluster", version, name, "stop"], check=True)
        time.sleep(3)
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True)
        self.counts["postgres_restarts"] += 1

    def cut_host_b(self) -> None:
        """Host B off the database and Redis past HOST_LOST_SEC: it fences its runs, they are retried."""
        self.partition.cut()
        time.sleep(CUT_SEC)
        self.partition.heal()
        self.counts["partitions"] += 1

    def kill_one(self) -> None:
        what = self.rng.choice(["slot", "supervisor", "scheduler", "web"])
        worker = self.rng.choice(["worker", "worker", "worker-b", "worker-skewed"])
        name = None
        if what == "slot":
            out = subprocess.run(["pgrep", "-P", str(self.procs[worker].pid)], capture_output=True, text=True).stdout
            pids = [int(p) for p in out.split()]
            if not pids:
                return
            os.kill(self.rng.choice(pids), signal.SIGKILL)  # its supervisor starts a new one
        elif what == "supervisor":
            self.kill(worker, group=False)  # its slots die with it; their containers do not
            time.sleep(self.rng.uniform(0.3, 2))
            self.spawn(worker)
        elif what == "scheduler":
            name = self.rng.choice(["scheduler-a", "scheduler-b"])
            killed = datetime.utcnow()
            self.kill(name)
            time.sleep(self.rng.uniform(0.3, 2))
            self.spawn(name)
            self._watch_first_beat(name, killed)
        else:
            self.kill("web")
            time.sleep(self.rng.uniform(0.3, 2))
            self.spawn("web")
        self.counts[f"kill_{what}"] += 1
        self.timeline.append((datetime.utcnow(), f"kill {what} {worker if what in ('slot', 'supervisor') else ''}"
                                                 f"{name if what == 'scheduler' else ''}"))

    def _watch_first_beat(self, name: str, killed: datetime) -> None:
        """Record when the scheduler spawned as `name` first beats (its first tick is done)."""
        window = [killed, None]
        self.scheduler_down[name].append(window)
        key = f"workflows:heartbeat:scheduler:{socket.gethostname()}:{self.procs[name].pid}"

        def watch():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not self.stopping.is_set():
                out = subprocess.run(["redis-cli", "-n", "12", "exists", key], capture_output=True, text=True,
                                     env=REDIS_CLI_ENV).stdout.strip()
                if out == "1":
                    window[1] = datetime.utcnow()
                    return
                time.sleep(0.1)
        threading.Thread(target=watch, daemon=True).start()

    def faults(self, seconds: float) -> None:
        start = time.monotonic()
        plan = [(at, fault) for at, fault in FAULTS if fault in self.kinds]
        plan = [(at, getattr(self, fault)) for at, fault in plan]
        while time.monotonic() - start < seconds:
            elapsed = (time.monotonic() - start) / seconds
            if plan and elapsed >= plan[0][0]:
                fault = plan.pop(0)[1]
                self.timeline.append((datetime.utcnow(), fault.__name__))
                fault()
                self.timeline.append((datetime.utcnow(), f"{fault.__name__} over"))
            elif "kills" in self.kinds:
                self.kill_one()
            time.sleep(self.rng.uniform(4, 6))

    # -- the soak -----------------------------------------------------------------------------
    def run(self) -> int:
        self.receiver = Receiver()
        self.start()
        self.events = [EngineEvents(instance_label(self.stack.env)),
                       EngineEvents(instance_label(self.stack.env), self.engine_b.url, "b")]
        self.create_workflows()
        self.created_at = datetime.utcnow()
        self.backfill(30, 1)
        later = threading.Timer(self.minutes * 30, self.backfill, (40, 20))
        later.start()
        load = threading.Thread(target=self.traffic, daemon=True)
        load.start()
        try:
            self.faults(self.minutes * 60)
        finally:
            self.stopping.set()
            load.join(30)
            later.join(90)
        for name, p in self.procs.items():  # everything up again for the settling
            if p.poll() is not None:
                self.spawn(name)
        self.wait_web()
        time.sleep(4)
        self.unscheduled_at = {}
        for wf in self.scheduled:
            status, body = None, None
            while status != 200:
                status, body = self.api("PATCH", f"/api/workflows/{self.stack.team}/workflows/{wf}", {"schedule": None})
                time.sleep(0.2 if status != 200 else 0)
            self.unscheduled_at[wf] = datetime.fromisoformat(body["updatedAt"][:-1])
        violations = self.audit()
        self.stop_all()
        for events in self.events:
            events.stop.set()
        return violations

    # -- the audit ----------------------------------------------------------------------------
    def audit(self) -> int:
        os.environ.update(self.stack.env)
        sys.path.insert(0, str(ROOT))
        from sqlalchemy import func

        from webapp import create_app
        from webapp.extensions import db
        from webapp.models import Backfill, Event, Notification, Run, RunLogBlock, Workflow
        app = create_app()
        problems: list[str] = []
        with app.app_context():
            def count(query) -> int:
                n = query.count()
                db.session.commit()
                return n
            _wait(lambda: count(db.session.query(Backfill).filter(Backfill.next_at.is_not(None))) == 0, SETTLE_SEC)
            _wait(lambda: count(db.session.query(Run).filter(Run.status.in_(("queued", "running")))) == 0, SETTLE_SEC)
            _wait(lambda: count(db.session.query(Notification).filter(
                Notification.state.in_(("pending", "sending")))) == 0, 120)
            runs = db.session.query(Run).all()
            problems += [f"stuck: {r.public_id} {r.status}" for r in runs if r.status in ("queued", "running")]
            wfs = {wf.public_id: wf for wf in db.session.query(Workflow).all()}
            events = db.session.query(Event).all()
            figures = self._audit_instants(problems, wfs, runs, events)
            # at most one container per run, from the engines' own events
            created = sum((e.created for e in self.events), Counter())
            problems += [f"{n} containers created for {run}" for run, n in created.items() if n > 1]
            # no run and its retry (automatic or manual) at once, from the engines' own events
            by_id = {r.id: r for r in runs}
            parents = {r.public_id: getattr(by_id.get(r.retry_of_id), "public_id", None) for r in runs}
            overlaps = overlapping(parents, self.events)
            problems += overlaps
            try:
                self.report(problems, runs, by_id, events, wfs)
            except Exception:  # the counts below still matter
                import traceback
                traceback.print_exc()
            figures.update(self._audit_chains(problems, runs, wfs))
            figures.update(self._audit_keys(problems, runs, wfs))
            figures.update(self._audit_backfills(problems, runs, wfs, db.session.query(Backfill).all()))
            figures["logs_checked"] = self._audit_logs(problems, runs, wfs)
            figures.update(self._audit_failures(problems, runs, events))
            # nothing left on the engine
            left = _wait_value(lambda: leftover_containers(self.stack.env) + leftover_containers(
                self.stack.env, self.engine_b.url), 60)
            problems += [f"container left: {c}" for c in (left or [])]
            figures["log_lines"] = db.session.query(func.sum(RunLogBlock.last_seq - RunLogBlock.first_seq + 1)).scalar()
        for p in problems[:50]:
            print("VIOLATION", p)
        self._summary(runs, figures, len(overlaps), len(problems))
        return len(problems)

    def _audit_instants(self, problems: list, wfs: dict, runs: list, events: list) -> dict:
        """Every due instant exactly once, but while the database was stopped: no scheduler could
        fire, and the contract's rule holds (the latest missed instant runs, the others are told by
        one workflow.missed)."""
        by_wf = defaultdict(list)
        for r in runs:
            by_wf[r.workflow_id].append(r)
        instants = 0
        missed = Counter()
        for public_id in self.scheduled:
            wf = wfs[public_id]
            fired = Counter(r.scheduled_for for r in by_wf[wf.id] if r.trigger == "schedule")
            problems += [f"instant fired {n} times: {public_id} {t}" for t, n in fired.items() if n > 1]
            period = self.period[public_id]
            t = _next_multiple(self.created_at + timedelta(seconds=1), period)
            # instants past this may or may not have fired (an allow workflow's up to
            # SCHEDULE_LEAD_SEC ahead of the unschedule): at most once is checked above
            end = self.unscheduled_at[public_id] - timedelta(seconds=1)
            while t <= end:
                instants += 1
                why = self._missed_while_none_could_fire(wf, t, events) if fired.get(t, 0) != 1 else None
                if why:
                    missed[why] += 1
                elif fired.get(t, 0) != 1:
                    problems.append(f"instant missing: {public_id} {t.isoformat()}")
                t += timedelta(seconds=period)
        return {"instants": instants, "missed_while_database_stopped": missed["database"],
                "missed_while_no_scheduler_up": missed["no_scheduler"]}

    def _audit_chains(self, problems: list, runs: list, wfs: dict) -> dict:
        """One chain run per upstream run that reached the edge's state, none for any other."""
        by_id = {r.id: r for r in runs}
        retried = {r.retry_of_id for r in runs if r.trigger == "retry" and r.attempt > 1}
        fired = 0
        for down, (up, on) in self.chains.items():
            def qualifies(r) -> bool:
                if on == "succeeded":
                    return r.status == "succeeded"
                return r.status in ("failed", "timed_out") and r.id not in retried
            due = {r.id for r in runs if r.workflow_id == wfs[up].id and qualifies(r)}
            made = Counter(r.triggered_by_id for r in runs if r.workflow_id == wfs[down].id)
            problems += [f"{made[u]} chain runs of {down} for {by_id[u].public_id}" for u in due if made[u] != 1]
            problems += [f"a chain run of {down} for {getattr(by_id.get(u), 'public_id', u)}, which did not end {on}"
                         for u in made if u not in due]
            fired += sum(made.values())
        return {"chain_runs": fired}

    def _audit_keys(self, problems: list, runs: list, wfs: dict) -> dict:
        """One run per Idempotency-Key, named by every answer the key got."""
        made = [r.public_id for r in runs if r.workflow_id == wfs[self.idem].id]
        answered = {key: ids for key, ids in self.idem_answers.items() if ids}
        problems += [f"key {key} answered {len(ids)} runs" for key, ids in answered.items() if len(ids) > 1]
        unanswered = len(self.idem_answers) - len(answered)  # sent, never answered: made at most one run
        if not len(answered) <= len(made) <= len(answered) + unanswered:
            problems.append(f"{len(made)} runs for {len(answered)} answered keys ({unanswered} never answered)")
        named = {i for ids in answered.values() for i in ids}
        problems += [f"an answered run that does not exist: {i}" for i in named - set(made)]
        return {"keys": len(self.idem_answers), "keyed_runs": len(made)}

    def _audit_backfills(self, problems: list, runs: list, wfs: dict, backfills: list) -> dict:
        """One run per instant of the backfills' ranges together; each backfill fired or skipped
        its every instant, and made the runs it counts."""
        from webapp import cron
        wf = wfs[self.backfilled]
        made = Counter(r.scheduled_for for r in runs if r.workflow_id == wf.id and r.trigger == "backfill")
        due: set = set()
        for bf in backfills:
            due |= set(cron.next_instants(bf.schedule, bf.timezone, bf.from_at - timedelta(microseconds=1), 1001,
                                          before=bf.to_at + timedelta(microseconds=1)))
            own = sum(1 for r in runs if r.backfill_id == bf.id and r.trigger == "backfill")
            if (bf.next_at, bf.cancelled_at) != (None, None) or bf.made + bf.skipped != bf.total or own != bf.made:
                problems.append(f"backfill {bf.public_id}: next {bf.next_at}, fired {bf.made} + skipped "
                                f"{bf.skipped} of {bf.total}, {own} runs")
        problems += [f"backfill instant {t} has {made[t]} runs" for t in due if made[t] != 1]
        problems += [f"a backfill run outside every range: {t}" for t in made if t not in due]
        if len(backfills) < 2:
            problems.append(f"{len(backfills)} backfills made, 2 asked for")
        return {"backfills": len(backfills), "backfill_runs": sum(made.values())}

    def _audit_logs(self, problems: list, runs: list, wfs: dict) -> int:
        """Logs of succeeded runs: contiguous and byte-exact. Returns how many were checked."""
        from webapp.runoutput.read import log_lines
        wf_by_id = {wf.id: wf for wf in wfs.values()}
        checked = 0
        for r in runs:
            if r.status != "succeeded":
                continue
            checked += 1
            lines = log_lines(r, limit=10**9)
            if [c.seq for c in lines] != list(range(len(lines))):
                problems.append(f"log of {r.public_id} has holes: {[c.seq for c in lines][:40]}")
            tag = self.tags.get(wf_by_id[r.workflow_id].public_id)
            if tag and [c.text for c in lines if c.stream == "stdout"] != expected(tag):
                problems.append(f"log of {r.public_id} is not exact")
        return checked

    def _audit_failures(self, problems: list, runs: list, events: list) -> dict:
        """Final failures: one event, one delivery; retried runs none; each forbid skip one
        workflow.missed."""
        retried = {r.retry_of_id for r in runs if r.trigger == "retry" and r.attempt > 1}
        kinds = Counter((e.run_id, e.kind) for e in events)
        delivered = defaultdict(set)
        for post in self.receiver.posts:
            delivered[(post["run"], post["event"])].add(post["delivery"])
        finals = [r for r in runs if r.status in ("failed", "timed_out") and r.id not in retried]
        for r in finals:
            if kinds[(r.id, "workflow.failed")] != 1:
                problems.append(f"{kinds[(r.id, 'workflow.failed')]} failure events for {r.public_id}")
            if len(delivered[(r.public_id, "workflow.failed")]) != 1:
                problems.append(f"{len(delivered[(r.public_id, 'workflow.failed')])} deliveries for {r.public_id}")
        extra = [r for r in runs if r.status in ("failed", "timed_out") and r.id in retried
                 and kinds[(r.id, "workflow.failed")]]
        problems += [f"a retried run emitted workflow.failed: {r.public_id}" for r in extra]
        skipped = [r for r in runs if r.status == "cancelled" and (r.error or "").startswith("skipped:")]
        problems += [f"{kinds[(r.id, 'workflow.missed')]} missed events for {r.public_id}"
                     for r in skipped if kinds[(r.id, "workflow.missed")] != 1]
        repeats = sum(len(v) for v in delivered.values()) - len(delivered)
        raw = len(self.receiver.posts) - sum(len(v) for v in delivered.values())
        return {"final_failures": len(finals), "forbid_skips": len(skipped), "repeated_posts": raw + repeats}

    def _summary(self, runs: list, figures: dict, overlaps: int, violations: int) -> None:
        c, f = self.counts, figures
        statuses = Counter(r.status for r in runs)
        print(f"chaos: minutes={self.minutes:g} kills={sum(v for k, v in c.items() if k.startswith('kill_'))} "
              f"(slot={c['kill_slot']} supervisor={c['kill_supervisor']} scheduler={c['kill_scheduler']} "
              f"web={c['kill_web']}) partitions={c['partitions']} postgres_restarts={c['postgres_restarts']} "
              f"redis_restarts={c['redis_restarts']} dockerd_restarts={c['dockerd_restarts']} "
              f"attempts_overlapping={overlaps} hosts={sorted({r.worker_host for r in runs if r.worker_host})} "
              f"runs={len(runs)} succeeded={statuses['succeeded']} failed={statuses['failed']} "
              f"cancelled={statuses['cancelled']} timed_out={statuses['timed_out']} instants={f['instants']} "
              f"logs_checked={f['logs_checked']} log_lines={f['log_lines']} final_failures={f['final_failures']} "
              f"forbid_skips={f['forbid_skips']} missed_while_database_stopped={f['missed_while_database_stopped']} "
              f"missed_while_no_scheduler_up={f['missed_while_no_scheduler_up']} "
              f"deliveries={len(self.receiver.posts)} repeated_posts={f['repeated_posts']} "
              f"chain_runs={f['chain_runs']} keys={f['keys']} keyed_runs={f['keyed_runs']} "
              f"backfills={f['backfills']} backfill_runs={f['backfill_runs']} "
              f"keyed_triggers={c['keyed_triggers']} "
              f"manual={c['manual_triggers']} retries={c['manual_retries']} cancels={c['cancels']} "
              f"api_refused={self.refused} violations={violations}")

    def _missed_while_none_could_fire(self, wf, instant: datetime, events: list) -> str | None:
        """Why `instant` could not fire: PostgreSQL was stopped within a second after the instant
        (before a claim, a tick every 0.2 s, could commit) until 5 s after its start, or no
        scheduler was up (each killed within a second after the instant, or not yet beating
        again); None if one could, or if the workflow's next claim did not tell it with a
        workflow.missed event soon after."""
        told = any(e.kind == "workflow.missed" and e.run_id is None and e.workflow_id == wf.id
                   and timedelta(0) <= e.created_at - instant <= timedelta(seconds=30) for e in events)
        if not told:
            return None
        away = [(at, what) for at, what in self.timeline if what.startswith("restart_postgres")]
        slack, never = timedelta(seconds=1), datetime.max
        windows = [(away[k][0] - slack, away[k + 1][0] + timedelta(seconds=5)) for k in range(0, len(away) - 1, 2)]
        if any(start <= instant <= end for start, end in windows):
            return "database"
        if all(any(killed - slack <= instant <= (up or never) for killed, up in self.scheduler_down[name])
               for name in ("scheduler-a", "scheduler-b")):
            return "no_scheduler"
        return None

    def report(self, problems: list[str], runs: list, by_id: dict, events: list, wfs: dict) -> None:
        """Every violation, each with what the database and the engines say of it, and the faults'
        timeline, to var/chaos-report.txt (the console shows the first 50)."""
        by_public = {r.public_id: r for r in runs}
        lines = [f"{at:%H:%M:%S.%f} fault {what}" for at, what in self.timeline]
        lines += [f"{name} down {killed:%H:%M:%S.%f} to {f'{up:%H:%M:%S.%f}' if up else 'never'}"
                  for name, windows in sorted(self.scheduler_down.items()) for killed, up in windows]

        def describe(r) -> str:
            spans = [f"{e.name}/{e.hosts.get(cid, '?')} {datetime.utcfromtimestamp(b):%H:%M:%S.%f}-"
                     f"{datetime.utcfromtimestamp(d):%H:%M:%S.%f}" if d else f"{e.name} {b} -"
                     for e in self.events for cid, (run, b, d) in e.spans.items() if run == r.public_id]
            return (f"    {r.public_id} {r.trigger} attempt={r.attempt} retry_of={getattr(by_id.get(r.retry_of_id), 'public_id', None)} "
                    f"{r.status} host={r.worker_host} queued={r.queued_at} due={r.due_at} started={r.started_at} "
                    f"finished={r.finished_at} cancel_requested={r.cancel_requested_at} error={(r.error or '')[:160]!r} containers={spans}")
        for p in problems:
            lines.append(p)
            if p.startswith("attempts overlapping"):
                for word in p.split():
                    if word in by_public:
                        lines.append(describe(by_public[word]))
            if p.startswith("instant missing"):
                public_id, at = p.split()[2], datetime.fromisoformat(p.split()[3])
                wf = wfs[public_id]
                near = sorted((r for r in runs if r.workflow_id == wf.id and r.scheduled_for
                               and abs((r.scheduled_for - at).total_seconds()) <= 6), key=lambda r: r.scheduled_for)
                lines += [f"    near: {r.scheduled_for:%H:%M:%S} {r.status} {(r.error or '')[:60]!r}" for r in near]
                lines += [f"    missed event at {e.created_at}" for e in events
                          if e.kind == "workflow.missed" and e.run_id is None and e.workflow_id == wf.id
                          and abs((e.created_at - at).total_seconds()) <= 30]
        (VAR / "chaos-report.txt").write_text("\n".join(lines) + "\n")
        print(f"chaos: every violation and the faults' timeline in {VAR / 'chaos-report.txt'}")


def _next_multiple(t: datetime, period: int) -> datetime:
    """The first instant of a `*/period` seconds schedule after `t`."""
    t = t.replace(microsecond=0) + timedelta(seconds=1)
    return t + timedelta(seconds=-t.second % period)


def _wait(predicate, limit: float) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def instance_label(env: dict) -> str:
    """The label of this installation's containers (jobs.engine.instance_id, from the database URL)."""
    import hashlib
    return f"workflows.instance={hashlib.sha1(env['DATABASE_URL'].encode()).hexdigest()[:12]}"


def leftover_containers(env: dict, base_url: str | None = None) -> list[str]:
    import docker
    api = docker.APIClient(base_url=base_url) if base_url else docker.APIClient()
    return [c["Id"][:12] for c in api.containers(all=True, filters={"label": instance_label(env)})]


def _wait_value(fn, limit: float):
    end = time.monotonic() + limit
    value = fn()
    while value and time.monotonic() < end:
        time.sleep(1)
        value = fn()
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--faults", default=",".join(KINDS),
                        help=f"which faults, comma-separated, of {','.join(KINDS)} (all by default)")
    parser.add_argument("--runs-per-process", type=int, default=1,
                        help="the workers' RUNS_PER_PROCESS: a slot kill then takes that many runs at once")
    args = parser.parse_args()
    kinds = tuple(args.faults.split(","))
    if set(kinds) - set(KINDS):
        parser.error(f"--faults: unknown {sorted(set(kinds) - set(KINDS))}")
    print(f"chaos soak: {args.minutes:g} minutes, seed {args.seed}, faults {','.join(kinds)}, "
          f"RUNS_PER_PROCESS {args.runs_per_process}", flush=True)
    chaos = Chaos(args.minutes, args.seed, kinds, args.runs_per_process)
    try:
        violations = chaos.run()
    finally:
        chaos.stop_all()
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
