"""Two real Docker engines, each a host of its own (the second in its own network namespace), one
`flask worker` on each, and a scheduler on a machine with no engine at all (its DOCKER_HOST points
nowhere): what issue "workers on many hosts" promises, against the engines themselves."""
from __future__ import annotations

import pytest

import signal
import time


from conftest import create_wf, grant_pool, wait_for, wait_status
from runs_api import base, get, lines, retried_elsewhere, trigger
from runs_api import containers as on
from engine_events import intervals

FAST = {"RUN_LEASE_TTL_SEC": "3"}
COUNT_TO_12 = "for i in $(seq 1 12); do echo line-$i; sleep 0.5; done; exit 4"
EXPECTED = [f"line-{i}" for i in range(1, 13)]


@pytest.fixture(autouse=True)
def _pool_granted(app, alice):
    """Pool 'b' is set aside for alice's team (only default is everyone's)."""
    grant_pool(app, alice, "b")


def no_engine(tmp_path) -> dict:
    return {**FAST, "DOCKER_HOST": f"unix://{tmp_path}/no-engine-here.sock"}


def test_a_pools_runs_run_only_on_the_engine_of_its_workers(client, alice, procs, docker_api, engine_b, tmp_path):
    since = time.time()
    procs.scheduler(env=no_engine(tmp_path))
    procs.worker(2, env=FAST)  # engine A, the default pool
    procs.worker(2, env={**FAST, "DOCKER_HOST": engine_b.url}, args=("--pool", "b"))
    wf_b = create_wf(client, alice, command=["sh", "-c", "echo on b; sleep 2"], workerPool="b")
    wf_a = create_wf(client, alice, command=["sh", "-c", "echo on a; sleep 2"])
    runs_b = [trigger(client, alice, wf_b["id"]) for _ in range(3)]
    run_a = trigger(client, alice, wf_a["id"])
    for run in runs_b:
        # its container started; the first on a new engine makes the runs network there (slow on a
        # loaded machine): on a timeout, say where each run stands
        try:
            wait_for(lambda: lines(client, alice, run["id"]), 90)
        except AssertionError:
            raise AssertionError([get(client, alice, r["id"]) for r in runs_b]) from None
    done_a = wait_status(client, alice, run_a["id"], timeout=30)
    ids = {r["id"] for r in runs_b} | {run_a["id"]}
    assert sorted(s[0] for s in intervals(engine_b.api, since, ids)) == sorted(r["id"] for r in runs_b)  # once each
    assert [s[0] for s in intervals(docker_api, since, ids)] == [run_a["id"]]  # and none of them on A
    done_b = [wait_status(client, alice, r["id"], timeout=30) for r in runs_b]
    assert done_a["status"] == "succeeded" and all(d["status"] == "succeeded" for d in done_b)
    hosts_b = {d["workerHost"] for d in done_b}
    assert len(hosts_b) == 1 and done_a["workerHost"] not in hosts_b
    assert all(lines(client, alice, d["id"]) == ["on b"] for d in done_b)


def test_a_killed_worker_of_engine_b_is_reattached_on_b_and_engine_a_is_not_touched(
        client, alice, procs, docker_api, engine_b, tmp_path):
    procs.scheduler(env=no_engine(tmp_path))
    procs.worker(1, env=FAST)
    worker_b = procs.worker(1, env={**FAST, "DOCKER_HOST": engine_b.url}, args=("--pool", "b"))
    run_b = trigger(client, alice, create_wf(client, alice, command=["sh", "-c", COUNT_TO_12], workerPool="b")["id"])
    run_a = trigger(client, alice, create_wf(client, alice, command=["sh", "-c", COUNT_TO_12])["id"])
    wait_for(lambda: len(lines(client, alice, run_b["id"])) >= 2 and len(lines(client, alice, run_a["id"])) >= 2, 30)
    container_a = on(docker_api, run_a["id"])[0]["Id"]
    procs.kill(worker_b)  # kill -9 of B's worker and its slots, mid-run
    procs.worker(1, env={**FAST, "DOCKER_HOST": engine_b.url}, args=("--pool", "b"))
    done_b = wait_status(client, alice, run_b["id"], timeout=60)
    done_a = wait_status(client, alice, run_a["id"], timeout=60)
    assert (done_b["status"], done_b["exitCode"]) == ("failed", 4)
    assert lines(client, alice, run_b["id"]) == EXPECTED  # every line once, in order
    assert (done_a["status"], done_a["exitCode"]) == ("failed", 4)
    assert lines(client, alice, run_a["id"]) == EXPECTED
    assert not any("re-attached" in l["text"] for l in client.get(
        f"{base(alice)}/runs/{run_a['id']}/logs", headers=alice.h()).get_json()["lines"])  # A's run kept its worker
    assert container_a not in {c["Id"] for c in engine_b.api.containers(all=True)}


def test_a_worker_host_killed_and_not_restarted_stops_its_containers_before_the_retry_runs_elsewhere(
        client, alice, procs, docker_api, engine_b, tmp_path):
    """kill -9 of B's whole worker (its host guard lives on, in a session of its own): B's engine
    keeps running, B stops the run's container itself (HOST_FENCE_SEC), and only then, once B is
    lost (HOST_LOST_SEC), is the run retried on A. The engines' own events show the two attempts'
    containers never running at once. When B's worker is back, the run's log says why."""
    since = time.time()
    lost = {"HOST_LOST_SEC": "10"}  # fence at 5 s, with a 2 s grace
    procs.scheduler(env={**no_engine(tmp_path), **lost})
    on_b = {**FAST, **lost, "DOCKER_HOST": engine_b.url}
    worker_b = procs.worker(1, env=on_b, args=("--pool", "b"))
    wf = create_wf(client, alice, command=["sh", "-c", "echo up; sleep 60; echo down"], workerPool="b",
                   maxRetries=1, retryBackoffSec=0, timeoutSec=120)
    run = trigger(client, alice, wf["id"])
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    host_b = get(client, alice, run["id"])["workerHost"]
    procs.worker(1, env={**FAST, **lost}, args=("--pool", "b"))  # engine A joins pool b
    procs.kill(worker_b, signal.SIGKILL)
    done = wait_status(client, alice, run["id"], timeout=60)
    assert (done["status"], done["error"]) == ("failed", "worker host lost")
    retry = retried_elsewhere(client, alice, wf["id"], run["id"], host_b, since, [engine_b.api, docker_api])
    assert [c["State"] for c in on(engine_b.api, run["id"])] == ["exited"]  # stopped by B itself

    procs.worker(1, env=on_b, args=("--pool", "b"))  # B is back: its note reaches the log
    wait_for(lambda: any("stopped by its own host" in l["text"] for l in client.get(
        f"{base(alice)}/runs/{run['id']}/logs", headers=alice.h()).get_json()["lines"]), 30)
    wait_for(lambda: not on(engine_b.api, run["id"]), 30)  # and the container of the ended run goes
    after = get(client, alice, run["id"])
    assert (after["status"], after["finishedAt"]) == ("failed", done["finishedAt"])  # never resumed
    client.post(f"{base(alice)}/runs/{retry['id']}/cancel", headers=alice.h())
    assert wait_status(client, alice, retry["id"], timeout=30)["status"] == "cancelled"
