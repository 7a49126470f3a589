"""Work bound to an engine host is done on that host (re-attach, completion from the exit,
removal of containers); a host away for HOST_LOST_SEC loses its runs; the scheduler never calls
an engine. Two worker hosts here share one engine under two WORKER_HOST names; the tests with a
second real engine are in test_two_engines.py."""
from __future__ import annotations

import pytest

import os
import signal
import subprocess
import threading
import time

from conftest import ROOT, create_wf, grant_pool, wait_for, wait_status
from runs_api import base, containers, fire, get, lines

FAST = {"RUN_LEASE_TTL_SEC": "3"}
HOST_A = {**FAST, "WORKER_HOST": "host-a"}
HOST_B = {**FAST, "WORKER_HOST": "host-b"}
COUNT_TO_12 = "for i in $(seq 1 12); do echo line-$i; sleep 0.5; done; exit 4"
EXPECTED = [f"line-{i}" for i in range(1, 13)]


@pytest.fixture(autouse=True)
def _pool_granted(app, alice):
    """Pool 'gpu' is set aside for alice's team (only default is everyone's)."""
    grant_pool(app, alice, "gpu")


def test_a_run_records_its_host_and_is_reattached_there_by_a_scheduler_without_an_engine(
        client, alice, procs, tmp_path):
    procs.scheduler(env={**FAST, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    worker = procs.worker(1, env=HOST_A)
    run = fire(client, alice, command=["sh", "-c", COUNT_TO_12], timeoutSec=120)
    wait_for(lambda: len(lines(client, alice, run["id"])) >= 2, 30)
    assert get(client, alice, run["id"])["workerHost"] == "host-a"
    procs.kill(worker)  # kill -9 mid-run
    procs.worker(1, env=HOST_A)
    done = wait_status(client, alice, run["id"], timeout=60)
    assert (done["status"], done["exitCode"], done["workerHost"]) == ("failed", 4, "host-a")
    assert lines(client, alice, run["id"]) == EXPECTED


def test_a_run_is_taken_over_only_by_a_worker_on_its_own_host(client, alice, procs, docker_api):
    # host-a is away from its kill until its next worker is up: on a loaded machine that took
    # longer than the default HOST_FENCE_SEC (30 s), and its guard rightly stopped the container
    patient = {"HOST_LOST_SEC": "600"}
    procs.scheduler(env={**FAST, **patient})
    worker_a = procs.worker(1, env={**HOST_A, **patient})
    # it runs until told to end (a file the test makes), however slowly this machine goes
    run = fire(client, alice, command=["sh", "-c", "echo up; until [ -e /tmp/go ]; do sleep 0.2; done; echo down"],
               timeoutSec=120)
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    procs.kill(worker_a)
    procs.worker(1, env={**HOST_B, **patient})  # alive, but another engine as far as the run knows
    time.sleep(6)  # the lease lapses (1.5 s) and the sweep runs several times meanwhile
    assert get(client, alice, run["id"])["status"] == "running"
    assert [c["State"] for c in containers(docker_api, run["id"])] == ["running"]  # untouched by host-b
    procs.worker(1, env={**HOST_A, **patient})
    [container] = containers(docker_api, run["id"])
    docker_api.exec_start(docker_api.exec_create(container["Id"], ["touch", "/tmp/go"]))
    done = wait_status(client, alice, run["id"], timeout=60)
    assert (done["status"], done["exitCode"]) == ("succeeded", 0)
    assert lines(client, alice, run["id"]) == ["up", "down"]


def test_a_host_lost_for_host_lost_sec_fails_its_runs_and_removes_their_containers_when_back(
        client, alice, procs, docker_api):
    # the host fences at 6 s, with a 2 s grace: 6 s before it is lost, however loaded the machine
    lost = {"HOST_LOST_SEC": "12"}
    procs.scheduler(env={**FAST, **lost})
    worker = procs.worker(1, env={**HOST_A, **lost})
    run = fire(client, alice, command=["sh", "-c", "echo up; sleep 120"], timeoutSec=300, maxRetries=1)
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    procs.kill(worker)
    done = wait_status(client, alice, run["id"], timeout=40)
    assert (done["status"], done["error"]) == ("failed", "worker host lost")
    finished = time.monotonic()
    retries = client.get(f"{base(alice)}/{run['workflowId']}/runs", headers=alice.h()).get_json()["runs"]
    assert [r["retryOf"] for r in retries if r["trigger"] == "retry"] == [run["id"]]  # retried by its budget
    assert [c["State"] for c in containers(docker_api, run["id"])] == ["exited"]  # the host stopped it first
    procs.worker(1, env={**HOST_A, **lost})  # the host comes back: what ended meanwhile is removed, never resumed
    wait_for(lambda: not containers(docker_api, run["id"]), 30)
    after = get(client, alice, run["id"])
    assert (after["status"], after["error"], after["finishedAt"]) == ("failed", "worker host lost", done["finishedAt"])
    assert time.monotonic() - finished < 30


def test_a_process_forked_while_another_thread_makes_a_client_can_make_its_own(app):
    """The keeper forks the host guard while its threads run: a client being made at that instant
    must not leave the guard's first get_docker waiting forever on a lock no thread of it holds."""
    from webapp import connections
    making, release = threading.Event(), threading.Event()

    def slow():
        making.set()
        release.wait(10)
        return object()
    maker = threading.Thread(target=connections.per_process, args=("test", "slow", slow))
    maker.start()
    making.wait(10)
    beside = threading.Thread(target=connections.per_process, args=("test", "beside", object))
    beside.start()
    beside.join(5)
    assert not beside.is_alive()  # a slow make holds back only those asking for the same client
    pid = os.fork()
    if pid == 0:  # the child: its own client, at once, or killed by the alarm
        signal.alarm(5)
        os._exit(0 if connections.per_process("test", "child", object) is not None else 1)
    release.set()
    maker.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.serial  # a clean stop recorded within the pool's grace is the promise: measured without other load
def test_a_host_stopped_cleanly_and_back_within_host_lost_sec_reattaches_its_runs(
        app, client, alice, procs, docker_api, monkeypatch):
    procs.scheduler(env={**FAST, "HOST_LOST_SEC": "60"})
    worker = procs.worker(1, env=HOST_A)
    # 12 s: past the pool's 5 s stop grace after the first stored lines (a slot still supervising
    # its run in that grace may otherwise see it end)
    run = fire(client, alice, command=["sh", "-c", COUNT_TO_12.replace("sleep 0.5", "sleep 1")], timeoutSec=120)
    wait_for(lambda: len(lines(client, alice, run["id"])) >= 2, 30)
    procs.kill(worker, signal.SIGTERM)  # a clean stop leaves the container running
    assert [c["State"] for c in containers(docker_api, run["id"])] == ["running"]
    with app.app_context():
        from webapp.extensions import db
        from webapp.models import WorkerProcess
        rows = db.session.query(WorkerProcess).filter_by(host="host-a").all()
        assert [r.stopped_at is not None for r in rows] == [True]
        db.session.remove()
    monkeypatch.setitem(app.config, "RUN_LEASE_TTL_SEC", 3)  # the processes' setting, for the sweeps below

    def away_and_lapsed():
        from webapp.connections import get_redis
        from webapp.keys import run_lease
        from webapp.services import hosts
        with app.app_context():
            return (hosts.host_states({"host-a"})["host-a"] == hosts.AWAY
                    and not get_redis().exists(run_lease(run["id"])))
    wait_for(away_and_lapsed, 30)
    from jobs.sweeper import lease_absent_sec, recover_lost
    with app.app_context():  # the sweep itself, twice, the lease absent past its renewals in between
        recover_lost()
        time.sleep(lease_absent_sec() + 0.1)
        recover_lost()
    assert get(client, alice, run["id"])["status"] == "running"  # away, not lost: the run waits for its host
    procs.worker(1, env=HOST_A)
    done = wait_status(client, alice, run["id"], timeout=60)
    assert (done["status"], done["exitCode"]) == ("failed", 4)
    assert lines(client, alice, run["id"]) == EXPECTED


def test_a_pool_runs_only_on_its_workers_and_a_pool_without_one_says_so(client, alice, charlie, procs, docker_api):
    procs.scheduler(env=FAST)
    procs.worker(1, env=HOST_A)  # the default pool only
    wf = create_wf(client, alice, command=["sh", "-c", "echo on gpu"], workerPool="gpu")
    assert wf["workerPool"] == "gpu"
    run = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()
    assert (run["workerPool"], run["status"]) == ("gpu", "queued")
    waiting = wait_for(lambda: get(client, alice, run["id"])["waiting"], 10)
    assert waiting == "no live worker in pool gpu"
    time.sleep(2)  # the default pool's worker is idle and does not take it
    assert get(client, alice, run["id"])["status"] == "queued"
    procs.worker(1, env=HOST_B, args=("--pool", "gpu"))
    done = wait_status(client, alice, run["id"], timeout=30)
    assert (done["status"], done["workerHost"], done["waiting"]) == ("succeeded", "host-b", None)
    default = create_wf(client, alice, command=["true"])  # the default pool is unchanged
    assert default["workerPool"] == "default"
    other = client.post(f"{base(alice)}/{default['id']}/trigger", headers=alice.h()).get_json()
    assert wait_status(client, alice, other["id"], timeout=30)["workerHost"] == "host-a"

    client.post("/login", data={"email": charlie.email, "password": charlie.password})  # another team's member
    page = client.get("/workers")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # the default pool's host is everyone's; host-b serves only gpu, set aside for alice's team
    assert 'data-host="host-a"' in html and 'data-host="host-b"' not in html and "<code>gpu</code>" not in html
    assert run["id"] not in html and other["id"] not in html  # hosts are shared, runs are not
    client.post("/login", data={"email": alice.email, "password": alice.password})
    html = client.get("/workers").get_data(as_text=True)
    assert 'data-host="host-b"' in html and "<code>gpu</code>" in html


def test_a_worker_refuses_a_pool_name_it_could_not_serve(procs):
    p = procs.start("worker", "--pool", "GPU!")
    assert p.wait(60) == 2


def test_a_run_cancelled_while_its_host_is_frozen_ends_cancelled_when_the_host_is_lost_and_is_never_retried(
        client, alice, procs, docker_api):
    lost = {"HOST_LOST_SEC": "8"}
    procs.scheduler(env={**FAST, **lost})
    worker = procs.worker(1, env={**HOST_A, **lost})
    wf = create_wf(client, alice, command=["sh", "-c", "echo up; sleep 60"], timeoutSec=300, maxRetries=2,
                   retryBackoffSec=0)
    run = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    os.killpg(worker.pid, signal.SIGSTOP)  # the supervisor, its slot and its host keeper, frozen whole
    try:
        r = client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h())
        assert r.status_code == 202 and r.get_json()["cancelRequested"]
        done = wait_status(client, alice, run["id"], timeout=40)
        assert (done["status"], done["error"]) == ("cancelled", "worker host lost")
        runs = client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]
        assert [r["id"] for r in runs] == [run["id"]]  # a retry is made with the terminal status
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        for c in containers(docker_api, run["id"]):
            docker_api.remove_container(c["Id"], force=True)


def flask_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def test_a_run_that_waits_for_its_host_keeps_its_container_until_the_host_is_forgotten(
        app, client, alice, charlie, procs, docker_api, monkeypatch):
    lost = {"HOST_LOST_SEC": "8"}
    monkeypatch.setitem(app.config, "HOST_LOST_SEC", 8)  # the web's setting too (settings that must match)
    procs.scheduler(env={**FAST, **lost})
    worker = procs.worker(1, env={**HOST_A, **lost})
    wf = create_wf(client, alice, command=["sh", "-c", "echo up; sleep 120"], timeoutSec=300, maxRetries=1,
                   retryBackoffSec=0, onHostLost="wait")
    assert wf["onHostLost"] == "wait"
    run = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    # Not lost (forget refuses every state but lost): not to be forgotten. Asked before the kill, so
    # that a CLI starting slowly on a loaded machine cannot ask after HOST_LOST_SEC has passed.
    refused = flask_cli("hosts", "forget", "host-a", env=lost)
    assert refused.returncode == 1 and "forget it once it is lost" in refused.stderr
    procs.kill(worker)
    why = wait_for(lambda: get(client, alice, run["id"])["waiting"], 30)
    assert why.startswith("its worker host host-a is lost: waiting for it")
    assert get(client, alice, run["id"])["status"] == "running"
    assert [c["State"] for c in containers(docker_api, run["id"])] == ["running"]  # never fenced, never retried

    client.post("/login", data={"email": charlie.email, "password": charlie.password})  # another team
    html = client.get("/workers").get_data(as_text=True)
    assert "data-forget" not in html and "flask hosts forget host-a" in html
    assert client.post("/workers/host-a/forget").status_code == 302
    assert get(client, alice, run["id"])["status"] == "running"  # not charlie's to forget
    client.post("/logout")
    client.post("/login", data={"email": alice.email, "password": alice.password})
    assert "data-forget" in client.get("/workers").get_data(as_text=True)
    assert client.post("/workers/host-a/forget").status_code == 302
    done = get(client, alice, run["id"])
    assert (done["status"], done["error"]) == ("failed", "worker host lost (forgotten by an operator)")
    runs = client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]
    assert [r["retryOf"] for r in runs if r["trigger"] == "retry"] == [run["id"]]
    assert flask_cli("hosts", "forget", "no-such-host", env=lost).returncode == 1
    procs.worker(1, env={**HOST_A, **lost})  # back: the container of the forgotten run goes
    wait_for(lambda: not containers(docker_api, run["id"]), 30)
