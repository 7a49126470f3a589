"""Exactly once under races and faults, with real processes: a worker paused past its lease, a
worker killed between create and start or right after a terminal status, Redis flushed with a
cancel pending, a scheduler killed inside a `replace` fire. Where no signal can hit a window
reliably, a fault point (`webapp/faults.py`, switched on by WORKFLOWS_FAULTS in that process
only) stops the process there so the test can kill it."""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from datetime import datetime, timedelta

from conftest import create_wf, wait_for, wait_status
from runs_api import base, end_at_once, fire, trigger
from engine_events import intervals
from webapp import keys

FAST = {"RUN_LEASE_TTL_SEC": "3"}
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")


def lines(client, m, run_id, system=False):
    got = client.get(f"{base(m)}/runs/{run_id}/logs", headers=m.h()).get_json()["lines"]
    return [l["text"] for l in got if system or l["stream"] != "system"]


def runs_of(client, m, wf_id):
    return client.get(f"{base(m)}/{wf_id}/runs?limit=100", headers=m.h()).get_json()["runs"]


def row(app, run_id):
    from webapp.extensions import db
    from webapp.models import Run
    with app.app_context():
        r = db.session.query(Run).filter_by(public_id=run_id).one()
        db.session.expunge(r)
        return r


def fault_reached(app, name: str) -> int:
    from webapp.connections import get_redis
    with app.app_context():
        value = wait_for(lambda: get_redis().get(keys.fault(name)), 60)
        return int(value)


def containers_created(docker_api, run_id: str, since: float) -> int:
    """How many containers the engine ever created for the run (its event log, not a listing)."""
    events = docker_api.events(since=int(since), until=int(time.time()) + 1, decode=True,
                               filters={"type": "container", "event": "create", "label": f"workflows.run={run_id}"})
    return sum(1 for _ in events)


COUNT_TO_12 = "for i in $(seq 1 12); do echo line-$i; sleep 0.4; done; exit 4"
EXPECTED = [f"line-{i}" for i in range(1, 13)]


def test_a_worker_paused_past_its_lease_lets_go_and_writes_nothing(app, client, alice, procs, docker_api):
    since = time.time()
    procs.worker(1, env=FAST)
    procs.scheduler(env=FAST)
    run = fire(client, alice, command=["sh", "-c", COUNT_TO_12], timeoutSec=120)
    wait_for(lambda: len(lines(client, alice, run["id"])) >= 3, 30)
    paused = int(row(app, run["id"]).worker_name.rsplit(":", 1)[1])
    os.kill(paused, signal.SIGSTOP)  # the slot that owns the run, frozen past its lease
    try:
        procs.worker(1, env=FAST)
        wait_for(lambda: row(app, run["id"]).worker_name.rsplit(":", 1)[1] != str(paused), 30)
    finally:
        os.kill(paused, signal.SIGCONT)  # it wakes up believing it owns the run
    done = wait_status(client, alice, run["id"], timeout=60)
    assert (done["status"], done["exitCode"]) == ("failed", 4)
    time.sleep(2)  # what the woken worker might still write
    assert lines(client, alice, run["id"]) == EXPECTED  # every line once: the old owner wrote none
    seqs = [l["seq"] for l in client.get(f"{base(alice)}/runs/{run['id']}/logs", headers=alice.h()).get_json()["lines"]]
    assert seqs == list(range(len(seqs)))
    assert containers_created(docker_api, run["id"], since) == 1
    assert len(runs_of(client, alice, done["workflowId"])) == 1


def test_a_worker_killed_between_create_and_start_does_not_fake_a_success(app, client, alice, procs, docker_api):
    since = time.time()
    doomed = procs.worker(1, env={**FAST, "WORKFLOWS_FAULTS": "after-create"})
    procs.scheduler(env=FAST)
    run = fire(client, alice, command=["sh", "-c", "echo ran; exit 3"], timeoutSec=60)
    fault_reached(app, "after-create")
    container = docker_api.containers(all=True, filters={"label": f"workflows.run={run['id']}"})[0]
    assert docker_api.inspect_container(container["Id"])["State"]["Status"] == "created"
    procs.kill(doomed)
    procs.worker(1, env=FAST)
    done = wait_status(client, alice, run["id"], timeout=60)
    # started by the new owner and finished by its real exit, not "succeeded" with a made-up 0
    assert (done["status"], done["exitCode"]) == ("failed", 3)
    assert lines(client, alice, run["id"]) == ["ran"]
    assert done["startedAt"] is not None
    assert containers_created(docker_api, run["id"], since) == 1


def test_the_stale_queued_sweep_cannot_fail_a_run_claimed_between_its_read_and_its_write(app, client, alice):
    """The sweep's own step, with a worker's claim committed (on another connection) right before
    the sweep's write: the compare-and-set on `queued` lets the claim win, and nothing follows."""
    from sqlalchemy import event, update

    from jobs.sweeper import fail_stale_queued
    from webapp.extensions import db
    from webapp.models import Run
    from webapp.models.base import utcnow
    run = fire(client, alice, timeoutSec=1)
    with app.app_context():
        db.session.execute(update(Run).where(Run.public_id == run["id"])
                           .values(due_at=utcnow() - timedelta(minutes=10)))  # long past its wait
        db.session.commit()
        engine = db.engine
        claimed = []

        def claim_first(conn, cursor, statement, *_):
            if not claimed and statement.lstrip().upper().startswith("UPDATE RUNS SET STATUS"):
                claimed.append(True)
                with engine.connect() as worker:
                    worker.execute(update(Run).where(Run.public_id == run["id"], Run.status == "queued")
                                   .values(status="running", owner_token="w1"))
                    worker.commit()
        event.listen(engine, "before_cursor_execute", claim_first)
        try:
            failed = fail_stale_queued()
        finally:
            event.remove(engine, "before_cursor_execute", claim_first)
        assert claimed == [True] and failed == 0
        assert db.session.query(Run.status).filter_by(public_id=run["id"]).scalar() == "running"
        assert db.session.query(Run).count() == 1  # no retry was fired


def test_a_cancel_lost_by_redis_still_stops_the_run_within_a_second(app, client, alice, procs):
    from sqlalchemy import update

    from webapp.connections import get_redis
    from webapp.extensions import db
    from webapp.models import Run
    from webapp.models.base import utcnow
    procs.worker(1)
    procs.scheduler()
    run = fire(client, alice, command=["sh", "-c", "trap 'exit 143' TERM; echo up; sleep 60 & wait"], timeoutSec=120)
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    with app.app_context():
        # The cancel as the API writes it, with its Redis signal lost in a flush.
        db.session.execute(update(Run).where(Run.public_id == run["id"]).values(cancel_requested_at=utcnow()))
        db.session.commit()
        get_redis().flushdb()
    asked = time.monotonic()
    done = wait_status(client, alice, run["id"], timeout=15)
    assert done["status"] == "cancelled"
    assert time.monotonic() - asked < 2.5  # noticed within a second, plus the container's exit


def test_a_cancel_whose_signal_never_reached_redis_is_signalled_again_by_the_sweep(app, client, alice, procs):
    """The canceller died between the row's write and the signal: Redis keeps the lease, so the
    worker reads the database only every CANCEL_DB_POLL_SEC (30 s); the sweep signals it again."""
    from sqlalchemy import update

    from webapp.extensions import db
    from webapp.models import Run
    from webapp.models.base import utcnow
    procs.worker(1)
    procs.scheduler()
    run = fire(client, alice, command=["sh", "-c", "trap 'exit 143' TERM; echo up; sleep 60 & wait"], timeoutSec=120)
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    with app.app_context():
        db.session.execute(update(Run).where(Run.public_id == run["id"])
                           .values(cancel_requested_at=utcnow(), cancel_reason="asked by the test"))
        db.session.commit()
    asked = time.monotonic()
    done = wait_status(client, alice, run["id"], timeout=20)
    assert done["status"] == "cancelled" and done["error"] == "asked by the test"
    assert time.monotonic() - asked < 5  # a sweep (2 s), the worker's next poll, the container's exit


def test_a_resumed_run_that_was_cancelled_meanwhile_ends_cancelled(app, client, alice, procs):
    from webapp.connections import get_redis
    worker = procs.worker(1, env=FAST)
    procs.scheduler(env=FAST)
    run = fire(client, alice, command=["sh", "-c", "trap 'exit 143' TERM; echo up; sleep 60 & wait"],
               timeoutSec=120, maxRetries=2)
    wait_for(lambda: lines(client, alice, run["id"]), 30)
    procs.kill(worker)
    assert client.post(f"{base(alice)}/runs/{run['id']}/cancel", headers=alice.h()).status_code == 202
    with app.app_context():
        get_redis().delete(f"run:{run['id']}:cancel")  # only the database knows
    procs.worker(1, env=FAST)
    done = wait_status(client, alice, run["id"], timeout=40)
    assert done["status"] == "cancelled"
    assert len(runs_of(client, alice, done["workflowId"])) == 1  # never retried


def test_a_scheduler_killed_inside_a_replace_fire_loses_nothing(app, client, alice, procs):
    from webapp.extensions import db
    from webapp.models import Workflow
    wf = create_wf(client, alice, schedule="0 0 1 1 *", concurrencyPolicy="replace", timeoutSec=3600)
    manual = trigger(client, alice, wf["id"])  # no worker: it stays queued, in progress
    instant = datetime.utcnow().replace(microsecond=0) - timedelta(seconds=1)
    with app.app_context():
        db.session.query(Workflow).filter_by(public_id=wf["id"]).update({"next_run_at": instant})
        db.session.commit()
    doomed = procs.scheduler(env={"WORKFLOWS_FAULTS": "replace-claimed"}, wait=False)
    fault_reached(app, "replace-claimed")
    procs.kill(doomed)
    runs = runs_of(client, alice, wf["id"])
    assert [(r["trigger"], r["status"]) for r in runs] == [("manual", "queued")]  # nothing half done
    procs.scheduler()
    wait_for(lambda: len(runs_of(client, alice, wf["id"])) == 2, 20)
    fired, replaced = runs_of(client, alice, wf["id"])
    assert fired["trigger"] == "schedule" and fired["scheduledFor"] == instant.isoformat() + ".000Z"
    assert replaced["id"] == manual["id"] and replaced["status"] == "cancelled"
    assert "concurrencyPolicy replace" in replaced["error"]


def test_a_scheduler_killed_inside_a_tick_fires_none_of_its_policied_workflows_by_halves(app, client, alice, procs):
    """A tick's forbid and replace fires are one transaction: killed before its commit, the
    scheduler leaves every one of them to the next, none done and none lost."""
    from webapp.extensions import db
    from webapp.models import Workflow
    forbid = create_wf(client, alice, schedule="0 0 1 1 *", concurrencyPolicy="forbid", timeoutSec=3600)
    replace = create_wf(client, alice, schedule="0 0 1 1 *", concurrencyPolicy="replace", timeoutSec=3600)
    for wf in (forbid, replace):
        trigger(client, alice, wf["id"])  # no worker: it stays queued, in progress
    instant = datetime.utcnow().replace(microsecond=0) - timedelta(seconds=1)
    with app.app_context():  # the forbid workflow's instant first: it is fired first
        for wf, at in ((forbid, instant - timedelta(seconds=1)), (replace, instant)):
            db.session.query(Workflow).filter_by(public_id=wf["id"]).update({"next_run_at": at})
        db.session.commit()
    doomed = procs.scheduler(env={"WORKFLOWS_FAULTS": "replace-claimed"}, wait=False)
    fault_reached(app, "replace-claimed")
    procs.kill(doomed)
    for wf in (forbid, replace):  # the forbid skip, made before the replace fire, is not kept alone
        assert [(r["trigger"], r["status"]) for r in runs_of(client, alice, wf["id"])] == [("manual", "queued")]
    procs.scheduler()
    wait_for(lambda: all(len(runs_of(client, alice, wf["id"])) == 2 for wf in (forbid, replace)), 20)
    skipped, kept = runs_of(client, alice, forbid["id"])
    assert (skipped["trigger"], skipped["status"], kept["status"]) == ("schedule", "cancelled", "queued")
    assert "concurrencyPolicy forbid" in skipped["error"]
    fired, replaced = runs_of(client, alice, replace["id"])
    assert (fired["trigger"], replaced["status"]) == ("schedule", "cancelled")


def test_a_worker_killed_after_a_terminal_status_loses_neither_retry_nor_alert(app, client, alice, procs,
                                                                              docker_api):
    from receivers import Receiver
    receiver = Receiver()
    try:
        r = client.post(f"/api/teams/{alice.team_id}/notification-channels", headers=alice.h(),
                        json={"kind": "webhook", "name": "hook", "target": receiver.url + "/hook"})
        assert r.status_code == 201
        procs.scheduler()
        wf = create_wf(client, alice, command=["sh", "-c", "exit 5"], maxRetries=1, retryBackoffSec=0)
        for _ in range(2):  # the first attempt's end (a retry to fire), then the retry's (an alert)
            # no notification slot: the alert handed over by the sweep must not be claimed by the
            # doomed worker and killed with it mid-attempt (then taken back only STUCK_AFTER_SEC later)
            doomed = procs.worker(1, env={"WORKFLOWS_FAULTS": "after-terminal", "NOTIFY_SLOTS": "0"})
            if not runs_of(client, alice, wf["id"]):
                trigger(client, alice, wf["id"])
            fault_reached(app, "after-terminal")
            procs.kill(doomed)
            with app.app_context():
                from webapp.connections import get_redis
                get_redis().delete(keys.fault("after-terminal"))
        procs.worker(1)
        wait_for(lambda: receiver.on("/hook"), 30)
        runs = runs_of(client, alice, wf["id"])
        assert [(r["attempt"], r["status"]) for r in runs] == [(2, "failed"), (1, "failed")]
        time.sleep(3)
        assert len(receiver.on("/hook")) == 1
        # the killed workers never removed their containers: the sweeper does
        wait_for(lambda: not any(docker_api.containers(all=True, filters={"label": f"workflows.run={r['id']}"})
                                 for r in runs), 20)
    finally:
        receiver.server.shutdown()


def test_a_worker_killed_after_an_upstream_end_loses_no_chain_run_and_makes_no_second(app, client, alice, procs,
                                                                                     docker_api):
    procs.scheduler()
    up = create_wf(client, alice, name="extract", command=["true"])
    down = create_wf(client, alice, name="load", command=["sh", "-c", "echo loaded"], after=[{"workflow": up["id"]}])
    doomed = procs.worker(1, env={"WORKFLOWS_FAULTS": "after-terminal", "NOTIFY_SLOTS": "0"})
    since = time.time()
    first = trigger(client, alice, up["id"])
    fault_reached(app, "after-terminal")  # the upstream's end and its chain run committed, not handed over
    procs.kill(doomed)
    with app.app_context():
        from webapp.connections import get_redis
        get_redis().delete(keys.fault("after-terminal"))
    procs.worker(1)
    [run] = wait_for(lambda: runs_of(client, alice, down["id"]) or None, 30)
    assert wait_status(client, alice, run["id"], timeout=60)["status"] == "succeeded"
    assert run["triggeredBy"] == first["id"]
    from jobs.sweeper import sweep
    with app.app_context():  # the end handled again changes nothing: the upstream run is terminal
        sweep()
    time.sleep(2)
    assert len(runs_of(client, alice, down["id"])) == 1
    assert containers_created(docker_api, run["id"], since) == 1
    # the killed worker never removed the upstream's container: the sweeper does
    wait_for(lambda: not docker_api.containers(all=True, filters={"label": f"workflows.run={first['id']}"}), 30)


def test_concurrent_successes_emit_one_recovery(app, client, alice):
    from sqlalchemy import update

    from webapp.extensions import db
    from webapp.models import Event, Workflow
    wf = create_wf(client, alice)
    ids = [trigger(client, alice, wf["id"])["id"] for _ in range(12)]
    with app.app_context():
        db.session.execute(update(Workflow).where(Workflow.public_id == wf["id"]).values(alert_state="failing"))
        db.session.commit()
    end_at_once(app, ids)
    with app.app_context():
        kinds = [e.kind for e in db.session.query(Event).all()]
    assert kinds == ["workflow.recovered"]


def test_output_that_cannot_be_stored_for_storage_outage_sec_fails_the_run_and_stops_its_container(
        app, client, alice, procs, docker_api):
    from jobs.runner import STORE_FAILED
    since = time.time()
    procs.worker(1, env={"WORKFLOWS_FAULTS": "sink-flush", "STORAGE_OUTAGE_SEC": "3"})
    procs.scheduler()
    run = fire(client, alice, command=["sh", "-c", "echo one; sleep 1; echo two; sleep 60"], timeoutSec=120)
    done = wait_status(client, alice, run["id"], timeout=30)
    assert (done["status"], done["error"]) == ("failed", STORE_FAILED)
    wait_for(lambda: not docker_api.containers(all=True, filters={"label": f"workflows.run={run['id']}"}), 10)
    [(_, began, ended)] = intervals(docker_api, since, {run["id"]})
    assert ended - began < 25  # stopped when the run failed, not left to sleep out its minute


@contextmanager
def output_refused_for(app, seconds: float):
    """The database itself refuses every write of run output for `seconds` from when it is told
    to (a trigger that aborts inserts into run_log_blocks): what a restarting or failing-over
    database looks like to a worker, on either database."""
    from sqlalchemy import text

    from webapp.extensions import db
    with app.app_context():
        engine = db.engine
    postgres = engine.dialect.name == "postgresql"
    setup = (["CREATE TABLE refuse_output (until TIMESTAMP)",
              "CREATE FUNCTION refuse_output() RETURNS trigger AS $$ BEGIN "
              "IF EXISTS (SELECT 1 FROM refuse_output WHERE until > clock_timestamp() AT TIME ZONE 'UTC') "
              "THEN RAISE EXCEPTION 'output refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
              "CREATE TRIGGER refuse_output BEFORE INSERT ON run_log_blocks FOR EACH ROW "
              "EXECUTE FUNCTION refuse_output()"] if postgres else
             ["CREATE TABLE refuse_output (until TEXT)",
              "CREATE TRIGGER refuse_output BEFORE INSERT ON run_log_blocks WHEN EXISTS (SELECT 1 FROM "
              "refuse_output WHERE until > strftime('%Y-%m-%d %H:%M:%f', 'now')) BEGIN "
              "SELECT RAISE(ABORT, 'output refused'); END"])
    until = (f"clock_timestamp() AT TIME ZONE 'UTC' + interval '{seconds} seconds'" if postgres
             else f"strftime('%Y-%m-%d %H:%M:%f', 'now', '+{seconds} seconds')")

    def refuse():
        with engine.begin() as conn:
            conn.execute(text(f"INSERT INTO refuse_output VALUES ({until})"))
    with engine.begin() as conn:
        for statement in setup:
            conn.execute(text(statement))
    try:
        yield refuse
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_output" + (" ON run_log_blocks" if postgres else "")))
            if postgres:
                conn.execute(text("DROP FUNCTION refuse_output()"))
            conn.execute(text("DROP TABLE refuse_output"))


def test_output_the_database_refuses_for_a_few_seconds_is_kept_and_stored_once_it_takes_it_again(
        app, client, alice, procs, docker_api):
    since = time.time()
    procs.worker(1)
    procs.scheduler()
    with output_refused_for(app, 3) as refuse:
        run = fire(client, alice, command=["sh", "-c", COUNT_TO_12], timeoutSec=60)
        wait_for(lambda: lines(client, alice, run["id"]), 30)
        refuse()
        done = wait_status(client, alice, run["id"], timeout=60)
    assert (done["status"], done["exitCode"], done["error"]) == ("failed", 4, None)  # as its container ended
    assert lines(client, alice, run["id"], system=True) == EXPECTED  # every line once, nothing about it
    assert len(intervals(docker_api, since, {run["id"]})) == 1  # one container, never stopped or re-made


def test_a_reader_that_fails_says_so_in_the_log(app, client, alice, procs):
    procs.worker(1, env={"WORKFLOWS_FAULTS": "reader"})
    procs.scheduler()
    run = fire(client, alice, command=["sh", "-c", "echo first; sleep 1; echo second"], timeoutSec=60)
    done = wait_status(client, alice, run["id"], timeout=30)
    assert done["status"] == "succeeded"  # the exit code decides; the log says what is missing
    texts = lines(client, alice, run["id"], system=True)
    assert texts[0] == "first"
    assert any(t.startswith("reading the container's output failed (InjectedFault") for t in texts), texts
