"""Exactly once across a fleet, against the faults of one: a worker host partitioned from the
database and Redis mid-run, workers whose clocks are 30 s behind and ahead of the database's, and
the database restarted (and its connections killed) while runs write output. The engines' own
events are the witness that no two attempts of a run ever had a running container at once.

These need a database server: on SQLite the database runs inside each process, on one host, and
its clock is that process's own (the SQLite pass has no fleet to partition or skew)."""
from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime

import pytest
from sqlalchemy.engine import make_url

from conftest import ROOT, TEST_PASS, create_wf, grant_pool, wait_for, wait_status
from engine_events import intervals
from partition import Partition
from runs_api import base, fire, get, lines, retried_elsewhere, trigger
from runs_api import containers as on

pytestmark = [
    pytest.mark.skipif(TEST_PASS != "postgres",
                       reason="a fleet needs a database server: SQLite serves one host, whose clock it is"),
    pytest.mark.serial,  # restarts the PostgreSQL cluster every worker of the pass uses
]

FAST = {"RUN_LEASE_TTL_SEC": "3"}
LOST = {"HOST_LOST_SEC": "10"}  # hosts fence at 5 s, with a 2 s grace


@pytest.fixture(autouse=True)
def _pool_granted(app, alice):
    """Pool 'b' is set aside for alice's team (only default is everyone's)."""
    grant_pool(app, alice, "b")


@pytest.fixture(scope="module")
def clockshift() -> str:
    """tests/clockshift.c built: an LD_PRELOAD library that moves a process's wall clock only."""
    built = ROOT / "var" / "clockshift.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(built), str(ROOT / "tests" / "clockshift.c"), "-ldl"],
                   check=True)
    return str(built)


def skewed(library: str, seconds: int) -> dict:
    """The environment of a process whose wall clock is `seconds` off the machine's (and so off the
    database's, on this machine); its monotonic clock is not."""
    return {"LD_PRELOAD": library, "WORKFLOWS_CLOCK_SHIFT_SEC": str(seconds)}


def runs_of(client, m, wf_id: str) -> list[dict]:
    return client.get(f"{base(m)}/{wf_id}/runs?limit=100", headers=m.h()).get_json()["runs"]


def at(iso: str) -> float:
    return datetime.fromisoformat(iso.rstrip("Z") + "+00:00").timestamp()


def test_a_host_cut_off_from_the_database_and_redis_stops_its_run_before_the_retry_runs_elsewhere(
        app, client, alice, procs, docker_api, engine_b, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "HOST_LOST_SEC", 10)
    partition = Partition(engine_b.name, 1).open()
    try:
        since = time.time()
        procs.scheduler(env={**FAST, **LOST, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
        procs.worker(1, env={**FAST, **LOST, "DOCKER_HOST": engine_b.url}, args=("--pool", "b"),
                     prefix=partition.prefix)
        wf = create_wf(client, alice, command=["sh", "-c", "echo up; sleep 45; echo down"], workerPool="b",
                       maxRetries=1, retryBackoffSec=0, timeoutSec=120)
        run = trigger(client, alice, wf["id"])
        wait_for(lambda: lines(client, alice, run["id"]), 30)
        host_b = get(client, alice, run["id"])["workerHost"]
        procs.worker(1, env={**FAST, **LOST}, args=("--pool", "b"))  # engine A joins pool b
        partition.cut()
        done = wait_status(client, alice, run["id"], timeout=60)
        assert (done["status"], done["error"]) == ("failed", "worker host lost")
        retry = retried_elsewhere(client, alice, wf["id"], run["id"], host_b, since, [engine_b.api, docker_api])

        partition.heal()  # B answers again: it never takes the run back, and says in its log why it stopped
        wait_for(lambda: any("stopped by its own host" in l["text"] for l in client.get(
            f"{base(alice)}/runs/{run['id']}/logs", headers=alice.h()).get_json()["lines"]), 60)
        wait_for(lambda: not on(engine_b.api, run["id"]), 30)
        after = get(client, alice, run["id"])
        assert (after["status"], after["error"], after["finishedAt"]) == ("failed", "worker host lost",
                                                                         done["finishedAt"])
        assert get(client, alice, retry["id"])["status"] == "running"
        client.post(f"{base(alice)}/runs/{retry['id']}/cancel", headers=alice.h())
        assert wait_status(client, alice, retry["id"], timeout=30)["status"] == "cancelled"
    finally:
        partition.close()


def test_workers_30_s_behind_and_ahead_of_the_database_stay_alive_start_on_the_instant_and_say_so(
        app, client, alice, procs, docker_api, monkeypatch, clockshift):
    monkeypatch.setitem(app.config, "HOST_LOST_SEC", 10)
    since = time.time()
    procs.scheduler(env=LOST)
    procs.worker(1, env={**LOST, **skewed(clockshift, -30), "WORKER_HOST": "behind"})
    procs.worker(1, env={**LOST, **skewed(clockshift, 30), "WORKER_HOST": "ahead"})
    wf = create_wf(client, alice, schedule="*/2 * * * * *", command=["sh", "-c", "echo tick"], timeoutSec=30)
    wait_for(lambda: sum(r["status"] == "succeeded" for r in runs_of(client, alice, wf["id"])) >= 8, 60)
    client.patch(f"{base(alice)}/{wf['id']}", json={"schedule": None}, headers=alice.h())
    wait_for(lambda: all(r["status"] not in ("queued", "running") for r in runs_of(client, alice, wf["id"])), 30)
    runs = runs_of(client, alice, wf["id"])  # 16 s and more: past HOST_LOST_SEC, neither host was lost
    assert {r["status"] for r in runs} == {"succeeded"}, [(r["status"], r["error"]) for r in runs]
    assert {r["workerHost"] for r in runs} == {"behind", "ahead"}
    started = {run_id: began for run_id, began, _ in intervals(docker_api, since, {r["id"] for r in runs})}
    early = [(r["scheduledFor"], started[r["id"]] - at(r["scheduledFor"])) for r in runs
             if started[r["id"]] < at(r["scheduledFor"])]
    assert early == []  # no container started before its instant, whichever clock its worker has

    client.post("/login", data={"email": alice.email, "password": alice.password})
    html = client.get("/workers").get_data(as_text=True)
    assert "clock off by -30" in html and "clock off by +30" in html
    assert html.count('data-state="alive"') == 2


def _restart_postgres() -> None:
    """Down for three seconds (a restart with a slow start, a short failover), then back."""
    version, name = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                                   check=True).stdout.split()[:2]
    subprocess.run(["pg_ctlcluster", version, name, "stop"], check=True)
    time.sleep(3)  # the outage's length is what is tested
    subprocess.run(["pg_ctlcluster", version, name, "start"], check=True)


def _kill_connections() -> None:
    name = make_url(os.environ["DATABASE_URL"]).database  # this worker's own database
    subprocess.run(["su", "postgres", "-c", "psql -qAt -c \"select count(pg_terminate_backend(pid)) from "
                    f"pg_stat_activity where datname = '{name}' and pid <> pg_backend_pid()\""],
                   check=True, capture_output=True)


COUNT = "for i in $(seq 1 40); do echo line-$i; sleep 0.2; done; exit {code}"


@pytest.mark.parametrize("fault", [_restart_postgres, _kill_connections], ids=["restart", "kill-connections"])
def test_the_database_restarted_mid_run_leaves_every_run_as_its_container_ended(client, alice, procs, fault):
    procs.worker(2)
    procs.scheduler()
    runs = [fire(client, alice, command=["sh", "-c", COUNT.format(code=code)], timeoutSec=120) for code in (0, 3)]
    wait_for(lambda: all(len(lines(client, alice, r["id"])) >= 5 for r in runs), 30)
    fault()
    for run, code in zip(runs, (0, 3)):
        done = wait_status(client, alice, run["id"], timeout=90)
        assert (done["status"], done["exitCode"], done["error"]) == (
            "succeeded" if code == 0 else "failed", code, None)
        assert lines(client, alice, run["id"]) == [f"line-{i}" for i in range(1, 41)]
