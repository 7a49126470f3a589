"""Two real Docker engines, each a host of its own (the second in its own network namespace), one
`flask worker` on each, and a scheduler on a machine with no engine at all (its DOCKER_HOST points
nowhere): what issue "workers on many hosts" promises, against the engines themselves."""
from __future__ import annotations

import signal
import time

import pytest

from conftest import TEST_PASS, create_wf, wait_for, wait_status
from runs_api import base, get, lines, trigger
from runs_api import containers as on
from second_engine import SecondEngine

FAST = {"RUN_LEASE_TTL_SEC": "3"}
COUNT_TO_12 = "for i in $(seq 1 12); do echo line-$i; sleep 0.5; done; exit 4"
EXPECTED = [f"line-{i}" for i in range(1, 13)]


@pytest.fixture(scope="module")
def engine_b():
    engine = SecondEngine(f"wf-engine-b-{TEST_PASS}")  # each pass of the suite has its own
    started = time.monotonic()
    engine.start()
    print(f"second engine up in {time.monotonic() - started:.1f} s")
    yield engine
    engine.close()


def no_engine(tmp_path) -> dict:
    return {**FAST, "DOCKER_HOST": f"unix://{tmp_path}/no-engine-here.sock"}


def test_a_pools_runs_run_only_on_the_engine_of_its_workers(client, alice, procs, docker_api, engine_b, tmp_path):
    procs.scheduler(env=no_engine(tmp_path))
    procs.worker(2, env=FAST)  # engine A, the default pool
    procs.worker(2, env={**FAST, "DOCKER_HOST": engine_b.url}, args=("--pool", "b"))
    wf_b = create_wf(client, alice, command=["sh", "-c", "echo on b; sleep 2"], workerPool="b")
    wf_a = create_wf(client, alice, command=["sh", "-c", "echo on a; sleep 2"])
    runs_b = [trigger(client, alice, wf_b["id"]) for _ in range(3)]
    run_a = trigger(client, alice, wf_a["id"])
    for run in runs_b:
        wait_for(lambda: lines(client, alice, run["id"]), 30)  # its container started: it is on B
        assert on(engine_b.api, run["id"]) or get(client, alice, run["id"])["status"] == "succeeded"
        assert not on(docker_api, run["id"])
    done_a = wait_status(client, alice, run_a["id"], timeout=30)
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


def test_a_host_gone_past_host_lost_sec_loses_its_runs_which_retry_on_another_host_of_the_pool(
        client, alice, procs, docker_api, engine_b, tmp_path):
    procs.scheduler(env={**no_engine(tmp_path), "HOST_LOST_SEC": "8"})
    worker_b = procs.worker(1, env={**FAST, "DOCKER_HOST": engine_b.url}, args=("--pool", "b"))
    wf = create_wf(client, alice, command=["sh", "-c", "echo up; sleep 15; echo down"], workerPool="b",
                   maxRetries=1, retryBackoffSec=1)
    run = trigger(client, alice, wf["id"])
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    host_b = get(client, alice, run["id"])["workerHost"]
    procs.worker(1, env=FAST, args=("--pool", "b"))  # engine A joins pool b
    procs.kill(worker_b, signal.SIGKILL)
    engine_b.stop()  # the whole host goes away
    done = wait_status(client, alice, run["id"], timeout=60)
    assert (done["status"], done["error"]) == ("failed", "worker host lost")
    runs = client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]
    retry = next(r for r in runs if r["retryOf"] == run["id"])
    retried = wait_status(client, alice, retry["id"], timeout=60)
    assert retried["status"] == "succeeded" and retried["workerHost"] not in (None, host_b)
    assert lines(client, alice, retry["id"]) == ["up", "down"]
    engine_b.start()  # the host comes back: the container of the run that ended meanwhile is removed
    assert on(engine_b.api, run["id"])  # still there (stopped with the engine)
    procs.worker(1, env={**FAST, "DOCKER_HOST": engine_b.url}, args=("--pool", "b"))
    wait_for(lambda: not on(engine_b.api, run["id"]), 30)
    after = get(client, alice, run["id"])
    assert (after["status"], after["finishedAt"]) == ("failed", done["finishedAt"])  # never resumed
