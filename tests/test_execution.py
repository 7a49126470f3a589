"""Runs on the real Docker engine, through real worker and scheduler processes."""
from __future__ import annotations

import time
import uuid
from datetime import datetime

import pytest

from conftest import TEST_IMAGE, TEST_SLOT, wait_for, wait_status
from runs_api import base, launch

pytestmark = pytest.mark.usefixtures("worker")


def logs(client, m, run_id):
    return client.get(f"{base(m)}/runs/{run_id}/logs", headers=m.h()).get_json()


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z"))


def test_success_with_stdout_and_stderr_apart(client, alice):
    _, run = launch(client, alice, command=["sh", "-c", "echo out-1; echo err-1 >&2; echo out-2"])
    done = wait_status(client, alice, run["id"])
    assert done["status"] == "succeeded" and done["exitCode"] == 0 and done["error"] is None
    assert done["startedAt"] and done["finishedAt"] and done["durationMs"] >= 0
    assert done["imageDigest"].startswith("sha256:")
    lines = logs(client, alice, run["id"])["lines"]
    assert [(l["stream"], l["text"]) for l in lines if l["stream"] == "stdout"] == [("stdout", "out-1"), ("stdout", "out-2")]
    assert [(l["stream"], l["text"]) for l in lines if l["stream"] == "stderr"] == [("stderr", "err-1")]
    assert all(l["ts"].endswith("Z") for l in lines)
    text = client.get(f"{base(alice)}/runs/{run['id']}/logs?format=text", headers=alice.h()).get_data(as_text=True)
    assert "out-1\n" in text and "err-1\n" in text


@pytest.mark.parametrize("code", [1, 3, 42])
def test_exit_codes_fail_the_run(client, alice, code):
    _, run = launch(client, alice, command=["sh", "-c", f"echo bye; exit {code}"])
    done = wait_status(client, alice, run["id"])
    assert (done["status"], done["exitCode"], done["error"]) == ("failed", code, None)


def test_env_is_merged_and_reaches_the_container(client, alice):
    _, run = launch(client, alice, env={"A": "stored", "B": "stored"}, trigger_env={"B": "given", "C": "x y"},
                  command=["sh", "-c", 'echo "A=$A B=$B C=$C"'])
    done = wait_status(client, alice, run["id"])
    assert done["env"] == {"A": "stored", "B": "given", "C": "x y"}
    assert logs(client, alice, run["id"])["lines"][0]["text"] == "A=stored B=given C=x y"


def test_null_command_runs_the_image_cmd(client, alice):
    _, run = launch(client, alice, command=None)
    assert wait_status(client, alice, run["id"])["status"] == "succeeded"
    assert [l["text"] for l in logs(client, alice, run["id"])["lines"]] == ["hello from the image CMD"]


def test_a_missing_image_fails_with_a_sentence(client, alice):
    _, run = launch(client, alice, image="127.0.0.1:5001/nothing/here:1")
    done = wait_status(client, alice, run["id"])
    assert done["status"] == "failed" and done["exitCode"] is None
    assert done["error"].startswith("could not pull the image 127.0.0.1:5001/nothing/here:1")
    assert "Traceback" not in done["error"]


def test_an_engine_that_is_down_fails_the_run_with_a_sentence(client, alice, procs, tmp_path):
    from jobs.runner import ENGINE_DOWN
    procs.stop_all()  # the module's worker talks to the real engine: this one does not reach any
    procs.worker(1, env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    _, run = launch(client, alice)
    done = wait_status(client, alice, run["id"], timeout=30)
    assert (done["status"], done["error"], done["startedAt"]) == ("failed", ENGINE_DOWN, None)


def test_a_bad_command_fails_with_a_sentence(client, alice):
    _, run = launch(client, alice, command=["/no/such/binary"])
    done = wait_status(client, alice, run["id"])
    assert (done["status"], done["exitCode"]) == ("failed", None)
    assert done["error"].startswith('could not start the container: exec: "/no/such/binary"'), done["error"]
    assert "http" not in done["error"]


def test_an_out_of_memory_kill_says_so(client, alice):
    _, run = launch(client, alice, command=["sh", "-c", "x=$(yes | head -c 200000000); echo survived"], memoryMb=16)
    done = wait_status(client, alice, run["id"])
    assert (done["status"], done["exitCode"]) == ("failed", 137)
    assert done["error"] == "the container ran out of memory (its limit is 16 MB) and was killed"


def test_timeout_kills_the_container(client, alice):
    _, run = launch(client, alice, command=["sh", "-c", "echo start; sleep 60"], timeoutSec=2)
    done = wait_status(client, alice, run["id"], timeout=30)
    assert done["status"] == "timed_out"
    took = (ts(done["finishedAt"]) - ts(done["startedAt"])).total_seconds()
    assert 2 <= took <= 4, took
    assert "timeout" in done["error"]


def test_retry_chain_on_the_engine(client, alice):
    wf, run = launch(client, alice, command=["sh", "-c", "echo attempt; exit 7"], maxRetries=2, retryBackoffSec=0)

    def chain():
        runs = client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]
        return runs if len(runs) == 3 and all(r["status"] == "failed" for r in runs) else None
    runs = wait_for(chain, 60)[::-1]
    assert [r["attempt"] for r in runs] == [1, 2, 3]
    assert [r["trigger"] for r in runs] == ["manual", "retry", "retry"]
    assert [r["retryOf"] for r in runs] == [None, runs[0]["id"], runs[1]["id"]]
    assert all(r["exitCode"] == 7 for r in runs)
    time.sleep(1)
    assert len(client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]) == 3


@pytest.mark.serial  # a start within 6 s of the end is the promise: measured without the other workers' load
def test_retry_waits_out_its_backoff(client, alice):
    wf, run = launch(client, alice, command=["sh", "-c", "exit 1"], maxRetries=1, retryBackoffSec=2)
    wait_status(client, alice, run["id"])
    runs = wait_for(lambda: (client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]
                             if len(client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]) == 2
                             else None), 20)
    retry = wait_status(client, alice, runs[0]["id"])
    first = client.get(f"{base(alice)}/runs/{run['id']}", headers=alice.h()).get_json()
    waited = (ts(retry["startedAt"]) - ts(first["finishedAt"])).total_seconds()
    assert 1.5 <= waited <= 6, waited


def test_cancel_a_running_run(client, alice):
    _, run = launch(client, alice, command=["sh", "-c", "trap 'echo got TERM; exit 143' TERM; echo up; sleep 60 & wait"],
                  maxRetries=3)
    wait_for(lambda: logs(client, alice, run["id"])["lines"], 30)
    r = client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h())
    assert r.status_code == 202 and r.get_json()["cancelRequested"] is True
    done = wait_status(client, alice, run["id"], timeout=20)
    assert done["status"] == "cancelled"
    assert "got TERM" in [l["text"] for l in logs(client, alice, run["id"])["lines"]]
    time.sleep(1)
    runs = client.get(f"{base(alice)}/{done['workflowId']}/runs", headers=alice.h()).get_json()["runs"]
    assert len(runs) == 1  # never retried


def test_cancel_kills_a_container_that_ignores_sigterm_after_the_grace(client, alice):
    _, run = launch(client, alice, command=["sh", "-c", "trap '' TERM; echo up; while true; do sleep 1; done"])
    wait_for(lambda: logs(client, alice, run["id"])["lines"], 30)
    asked = time.monotonic()
    client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h())
    done = wait_status(client, alice, run["id"], timeout=30)
    assert done["status"] == "cancelled"
    assert 9 <= time.monotonic() - asked <= 16


def test_container_settings_are_safe(client, alice, docker_api):
    _, run = launch(client, alice, command=["sh", "-c", "sleep 3"], memoryMb=64, cpus=0.5)

    def container():
        found = docker_api.containers(filters={"label": f"workflows.run={run['id']}"})
        return found[0] if found else None
    c = wait_for(container, 20)
    info = docker_api.inspect_container(c["Id"])
    hc = info["HostConfig"]
    assert hc["Privileged"] is False and not info["Mounts"]
    assert "no-new-privileges" in hc["SecurityOpt"]
    assert hc["PidsLimit"] and hc["PidsLimit"] > 0
    assert hc["Memory"] == 64 * 1024 * 1024 and hc["NanoCpus"] == 500_000_000
    wait_status(client, alice, run["id"])
    wait_for(lambda: not docker_api.containers(all=True, filters={"label": f"workflows.run={run['id']}"}), 10)


def test_a_workflow_deleted_mid_run_finishes_its_run(client, alice):
    wf, run = launch(client, alice, command=["sh", "-c", "sleep 2; echo finished"], maxRetries=2)
    wait_status(client, alice, run["id"], statuses=("running",), timeout=20)
    assert client.delete(f"{base(alice)}/{wf['id']}", headers=alice.h()).status_code == 204
    done = wait_status(client, alice, run["id"])
    assert done["status"] == "succeeded"
    assert logs(client, alice, run["id"])["lines"][-1]["text"] == "finished"


def test_a_tag_moved_to_another_image_between_runs_runs_the_new_image(client, alice, docker_api, procs):
    """A worker slot keeps what the engine said about an image between runs; a re-tag on the
    engine must reach the slot's next run all the same. One slot, so that both runs are its."""
    procs.stop_all()
    procs.worker(1)
    procs.scheduler()
    ref = f"workflows.local/moved-{uuid.uuid4().hex[:8]}"
    docker_api.tag(TEST_IMAGE, ref, "1")
    made = docker_api.create_container(TEST_IMAGE, ["true"])["Id"]
    try:
        wf, run = launch(client, alice, image=f"{ref}:1", command=["sh", "-c", "echo mark=$MARK"])
        first = docker_api.inspect_image(f"{ref}:1")["Id"]
        for _ in range(2):  # the second finds the slot following the engine's events
            done = wait_status(client, alice, run["id"])
            assert (done["status"], done["imageDigest"]) == ("succeeded", first)
            assert logs(client, alice, run["id"])["lines"][-1]["text"] == "mark="
            run = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()
        wait_status(client, alice, run["id"])
        moved = docker_api.commit(made, repository=ref, tag="1", changes=["ENV MARK=moved"])["Id"]
        again = client.post(f"{base(alice)}/{wf['id']}/trigger", headers=alice.h()).get_json()
        done = wait_status(client, alice, again["id"])
        assert (done["status"], done["imageDigest"]) == ("succeeded", moved)  # what ran, not what the slot saw before
        assert logs(client, alice, again["id"])["lines"][-1]["text"] == "mark=moved"
    finally:
        docker_api.remove_container(made, force=True)
        docker_api.remove_image(f"{ref}:1", force=True)


def test_image_tag_policy_uses_the_local_copy_when_the_pull_fails(client, alice, docker_api):
    local = f"127.0.0.1:5001/nowhere/busybox-{TEST_SLOT}"
    docker_api.tag(TEST_IMAGE, local, "latest")
    try:
        _, run = launch(client, alice, image=f"{local}:latest", command=["sh", "-c", "echo ran"])
        done = wait_status(client, alice, run["id"])
        assert done["status"] == "succeeded"
        lines = logs(client, alice, run["id"])["lines"]
        assert lines[0]["stream"] == "system" and "running the local copy" in lines[0]["text"]
    finally:
        docker_api.remove_image(f"{local}:latest")


def test_the_exit_event_carries_the_code_and_a_closed_watch_says_it_is_broken(docker_api):
    from jobs.engine import ExitWatch
    label = f"exit-watch-{uuid.uuid4().hex[:8]}"
    watch = ExitWatch(docker_api, label)  # before the container exists: subscribed by the run's label
    watch.subscribed()
    cid = docker_api.create_container(TEST_IMAGE, ["sh", "-c", "exit 3"], labels={"workflows.run": label})["Id"]
    idle = docker_api.create_container(TEST_IMAGE, ["sleep", "30"], labels={"workflows.run": label + "-idle"})["Id"]
    try:
        docker_api.start(cid)
        assert watch.ended.wait(10) and (watch.code, watch.broken) == (3, False)
        closed = ExitWatch(docker_api, label + "-idle")  # a stream that ends without the event: the caller falls back
        closed.subscribed()
        docker_api.start(idle)
        closed.close()
        assert closed.ended.wait(10) and (closed.code, closed.broken) == (None, True)
    finally:
        for c in (cid, idle):
            docker_api.remove_container(c, force=True)


def test_a_second_submit_of_a_run_finds_its_container_instead_of_making_another(app, docker_api, monkeypatch):
    from types import SimpleNamespace

    from jobs import engine
    from jobs.executor import DockerExecutor
    # an installation of its own: this run has no row, so a reaper of another test's worker on this
    # database would remove its container as unknown under this test's feet
    instance = f"submit-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(engine, "instance_id", lambda: instance)
    run = SimpleNamespace(public_id=f"run_submit{uuid.uuid4().hex[:10]}", image=TEST_IMAGE, command=["true"],
                          env={}, env_groups=None, payload=None, memory_mb=None, cpus=None, network="none",
                          # a host of its own: a worker of another test fencing "host-a" on this engine
                          # would remove the created container under this test's feet
                          worker_host=f"host-submit-{uuid.uuid4().hex[:8]}",
                          workflow=SimpleNamespace(on_host_lost="retry", read_only_rootfs=False))
    with app.app_context():
        executor = DockerExecutor(docker_api)
        first = executor.submit(run)
        try:
            assert executor.submit(run) == first  # a worker that retries its submit gets the same container
            assert [c["Id"] for c in docker_api.containers(
                all=True, filters={"label": f"workflows.run={run.public_id}"})] == [first]
        finally:
            docker_api.remove_container(first, force=True)
