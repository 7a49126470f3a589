"""No run is lost or stuck: workers killed with -9 mid-run, stale queued runs, leftover containers."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from conftest import all_logs, create_wf, wait_for, wait_status
from runs_api import base, fire

# Short leases so that a dead worker is noticed in seconds rather than the production 15 s.
FAST = {"RUN_LEASE_TTL_SEC": "3"}


def lines(client, m, run_id):
    return [l["text"] for l in client.get(f"{base(m)}/runs/{run_id}/logs", headers=m.h()).get_json()["lines"]
            if l["stream"] != "system"]


COUNT_TO_12 = "for i in $(seq 1 12); do echo line-$i; sleep 0.5; done; exit 4"
EXPECTED = [f"line-{i}" for i in range(1, 13)]


def test_a_killed_worker_is_reattached_to_its_running_container(client, alice, procs):
    worker = procs.worker(1, env=FAST)
    procs.scheduler(env=FAST)
    run = fire(client, alice, command=["sh", "-c", COUNT_TO_12], timeoutSec=120)
    wait_for(lambda: len(lines(client, alice, run["id"])) >= 2, 30)
    procs.kill(worker)  # kill -9 of the pool and its slots, mid-run
    procs.worker(1, env=FAST)
    done = wait_status(client, alice, run["id"], timeout=60)
    assert (done["status"], done["exitCode"]) == ("failed", 4)
    assert lines(client, alice, run["id"]) == EXPECTED  # every line, exactly once, in order


def test_runs_sharing_a_slot_process_are_all_reattached_when_it_is_killed(app, client, alice, procs):
    """RUNS_PER_PROCESS: three slots in one process run three runs at once; a kill -9 of that
    process alone takes the three, and each is re-attached and completed once, every line kept."""
    import os
    import signal

    from webapp.extensions import db
    from webapp.models import Run
    procs.worker(3, env=dict(FAST, RUNS_PER_PROCESS="3"))
    procs.scheduler(env=FAST)
    runs = [fire(client, alice, command=["sh", "-c", COUNT_TO_12], timeoutSec=120) for _ in range(3)]
    wait_for(lambda: all(len(lines(client, alice, run["id"])) >= 2 for run in runs), 30)
    with app.app_context():
        names = set(db.session.scalars(db.select(Run.worker_name).where(Run.public_id.in_([r["id"] for r in runs]))))
    assert len(names) == 1, names  # one process, three runs at once
    os.kill(int(names.pop().rsplit(":", 1)[1]), signal.SIGKILL)
    for run in runs:
        done = wait_status(client, alice, run["id"], timeout=60)
        assert (done["status"], done["exitCode"]) == ("failed", 4)
        assert lines(client, alice, run["id"]) == EXPECTED  # every line, exactly once, in order


def test_a_run_whose_container_exited_meanwhile_is_completed_from_its_exit_code(client, alice, procs):
    worker = procs.worker(1, env=FAST)
    scheduler = procs.scheduler(env=FAST)
    run = fire(client, alice, command=["sh", "-c", "echo before; sleep 2; echo after; exit 0"], timeoutSec=120)
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    procs.kill(worker)
    procs.kill(scheduler)
    time.sleep(4)  # the container exits while nobody watches
    procs.scheduler(env=FAST)
    procs.worker(1, env=FAST)  # a worker on the container's host completes it: the scheduler never asks an engine
    done = wait_status(client, alice, run["id"], timeout=30)
    assert (done["status"], done["exitCode"]) == ("succeeded", 0)
    assert lines(client, alice, run["id"]) == ["before", "after"]


def test_a_run_whose_container_is_gone_fails_with_worker_lost(client, alice, procs, docker_api):
    worker = procs.worker(1, env=FAST)
    scheduler = procs.scheduler(env=FAST)
    run = fire(client, alice, command=["sh", "-c", "echo up; sleep 60"], timeoutSec=120)
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    procs.kill(worker)
    procs.kill(scheduler)
    for c in docker_api.containers(all=True, filters={"label": f"workflows.run={run['id']}"}):
        docker_api.remove_container(c["Id"], force=True)
    procs.scheduler(env=FAST)
    procs.worker(1, env=FAST)
    done = wait_status(client, alice, run["id"], timeout=30)
    assert (done["status"], done["error"]) == ("failed", "worker lost")


def test_queued_runs_nobody_picks_up_fail_after_the_queue_wait(client, alice, procs):
    """max(timeoutSec, QUEUE_WAIT_FLOOR_SEC): a 1 s timeout does not fail a run in a worker restart."""
    procs.scheduler(env={"QUEUE_WAIT_FLOOR_SEC": "6"})  # no worker at all
    run = fire(client, alice, timeoutSec=1, maxRetries=0)
    time.sleep(3.5)  # well past the timeout, before the floor: still waiting for a worker
    assert client.get(f"{base(alice)}/runs/{run['id']}", headers=alice.h()).get_json()["status"] == "queued"
    done = wait_status(client, alice, run["id"], timeout=20)
    assert done["status"] == "failed"
    assert done["error"] == "no worker picked up the run within its timeout"
    assert done["startedAt"] is None
    queued, finished = (datetime.fromisoformat(done[k][:-1]) for k in ("queuedAt", "finishedAt"))
    assert 6 <= (finished - queued).total_seconds() <= 12


def test_the_default_queue_wait_floor_is_five_minutes(app):
    assert app.config["QUEUE_WAIT_FLOOR_SEC"] == 300


def test_worker_slots_die_with_their_supervisor(procs):
    import os
    import signal
    import subprocess
    supervisor = procs.start("worker", "--slots", "2")

    def slots():
        out = subprocess.run(["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]
    children = wait_for(lambda: len(slots()) == 4 and slots(), 20)  # two run slots, one notify slot, the host keeper
    os.kill(supervisor.pid, signal.SIGKILL)  # the supervisor alone, not its process group
    supervisor.wait(10)

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return not open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z")
    wait_for(lambda: not any(alive(pid) for pid in children), 5)


def test_the_sweep_goes_on_while_the_engine_is_down(client, alice, tmp_path):
    from jobs.sweeper import NO_WORKER, sweep
    from webapp import create_app
    run = fire(client, alice, timeoutSec=1)  # no worker: stale after a second (no floor here)
    time.sleep(1.2)
    engine_down = create_app({"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "QUEUE_WAIT_FLOOR_SEC": 0})
    with engine_down.app_context():
        counts = sweep()
    assert counts["stale"] == 1 and "reaped" not in counts  # the sweep has no step that needs an engine
    done = client.get(f"{base(alice)}/runs/{run['id']}", headers=alice.h()).get_json()
    assert (done["status"], done["error"]) == ("failed", NO_WORKER)


def test_a_run_queued_while_redis_was_away_is_handed_over_later(app, client, alice, procs):
    from webapp.extensions import db
    from webapp.models import Run
    wf = create_wf(client, alice, command=["sh", "-c", "echo late"])
    with app.app_context():
        from webapp.services.runs import fire as fire_run
        from webapp.models import Workflow
        row = db.session.query(Workflow).filter_by(public_id=wf["id"]).one()
        run = fire_run(row, "manual", {})  # the row exists; the enqueue never happened
        db.session.commit()
        run_id = run.public_id
        assert db.session.query(Run).filter_by(public_id=run_id).one().enqueued_at is None
    procs.worker(1)
    procs.scheduler()
    assert wait_status(client, alice, run_id, timeout=30)["status"] == "succeeded"


def test_runs_handed_over_before_a_redis_flush_run_soon_after_it(app, client, alice, procs):
    from webapp.connections import get_redis
    procs.scheduler()
    run = fire(client, alice, command=["sh", "-c", "echo survived"], timeoutSec=60)
    with app.app_context():
        from webapp.services.dispatch import queue
        wait_for(lambda: queue().count == 1, 10)  # handed over, no worker yet
        get_redis().flushdb()
        assert queue().count == 0
    procs.worker(1)
    # well before the 30 s an entry needs to count as lost while Redis kept its data
    done = wait_status(client, alice, run["id"], timeout=12)
    assert done["status"] == "succeeded"
    assert lines(client, alice, run["id"]) == ["survived"]


def test_containers_of_finished_runs_are_reaped(app, client, alice, procs, docker_api):
    from webapp.connections import get_docker
    with app.app_context():
        from jobs.engine import LABEL_INSTANCE, LABEL_RUN, instance_id
        labels = {LABEL_RUN: "run_unknownrun", LABEL_INSTANCE: instance_id()}
        get_docker().api.create_container("workflows.local/busybox:1", command=["true"], labels=labels)
    procs.worker(1)  # each worker host removes its own engine's leftovers
    wait_for(lambda: not docker_api.containers(all=True, filters={"label": "workflows.run=run_unknownrun"}), 20)


ROTATES = ("echo first; seq 1 40000; echo stored; "
           "while [ ! -e /tmp/flood ]; do sleep 0.1; done; seq 100001 160000; echo after-the-rotation; "
           "while [ ! -e /tmp/end ]; do sleep 0.1; done; echo last")


def test_a_reattach_after_the_engine_rotated_the_log_loses_nothing_silently(client, alice, procs, docker_api):
    """The json-file driver keeps 2 x CONTAINER_LOG_MAX_MB: a flood written while no worker reads
    drops the head of the engine's log, so the bytes already read no longer count from its start.
    The re-attach stops skipping at the first entry logged after the last read, and says so."""
    from jobs.engine import parse_time
    env = {**FAST, "CONTAINER_LOG_MAX_MB": "1"}
    worker = procs.worker(1, env=env)
    procs.scheduler(env=FAST)
    run = fire(client, alice, command=["sh", "-c", ROTATES], timeoutSec=300)
    wait_for(lambda: "stored" in [l["text"] for l in all_logs(client, alice, run["id"])["lines"][-3:]], 60, every=1.0)
    engine_now = lambda: parse_time(docker_api.info()["SystemTime"])  # noqa: E731
    read_by = engine_now()  # "stored" is stored: it was read before this
    procs.kill(worker)  # nobody reads from here on
    wait_for(lambda: engine_now() > read_by + timedelta(seconds=1.5), 10)  # the flood comes later
    [container] = docker_api.containers(filters={"label": f"workflows.run={run['id']}"})

    def touch(path):
        docker_api.exec_start(docker_api.exec_create(container["Id"], ["touch", path]))
    touch("/tmp/flood")
    wait_for(lambda: b"after-the-rotation" in docker_api.logs(container["Id"], tail=1), 60)
    retained = docker_api.logs(container["Id"], stdout=True, stderr=False).split(b"\n")
    assert retained[0] != b"first" and len(retained) < 40000  # the engine did drop the head
    procs.worker(1, env=env)
    # every poll reads some 60,000 lines through the API: once a second, not ten times
    wait_for(lambda: "after-the-rotation" in [l["text"] for l in all_logs(client, alice, run["id"])["lines"][-3:]],
             120, every=1.0)
    touch("/tmp/end")
    assert wait_status(client, alice, run["id"], timeout=60)["status"] == "succeeded"
    logged = all_logs(client, alice, run["id"])["lines"]
    notices = [i for i, l in enumerate(logged) if l["stream"] == "system" and "rotated its log" in l["text"]]
    assert len(notices) == 1, [l["text"] for l in logged if l["stream"] == "system"]
    before = [l["text"] for l in logged[:notices[0]] if l["stream"] != "system"]
    after = [l["text"] for l in logged[notices[0] + 1:] if l["stream"] != "system"]
    assert before == ["first", *map(str, range(1, 40001)), "stored"]
    # After the notice: a run of the flood's lines to its end, nothing twice, nothing skipped.
    first_kept = int(after[0])
    assert 100001 < first_kept <= 160000
    assert after == [*map(str, range(first_kept, 160001)), "after-the-rotation", "last"]
