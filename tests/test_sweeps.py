"""The sweeps are fair: each step's conditions are in SQL, per team, so that no team's backlog
(a pool without workers, a team held at TEAM_MAX_RUNNING, thousands of pending alerts) hides
another team's runs or notifications from a pass."""
from __future__ import annotations

import pytest

from datetime import timedelta

from sqlalchemy import insert, select, update

from conftest import create_wf, grant_pool


@pytest.fixture(autouse=True)
def _pool_granted(app, alice):
    """Pool 'gpu' is set aside for alice's team (only default is everyone's)."""
    grant_pool(app, alice, "gpu")


def _wf(app, client, member, **fields):
    from webapp.extensions import db
    from webapp.models import Workflow
    public_id = create_wf(client, member, **fields)["id"]
    with app.app_context():
        return db.session.scalar(select(Workflow.id).where(Workflow.public_id == public_id))


def _queue(app, workflow_id: int, count: int, due_ago: timedelta, timeout_sec: int = 60, pool: str = "default"):
    """`count` queued runs of the workflow, due `due_ago` ago, not handed over; their ids."""
    from webapp.extensions import db
    from webapp.models import Run, Workflow
    from webapp.models.base import new_public_id, utcnow
    with app.app_context():
        wf = db.session.get(Workflow, workflow_id)
        due = utcnow() - due_ago
        rows = [dict(public_id=new_public_id("run_"), team_id=wf.team_id, workflow_id=wf.id, trigger="manual",
                     attempt=1, status="queued", env={}, image=wf.image, command=wf.command, timeout_sec=timeout_sec,
                     worker_pool=pool, queued_at=due, due_at=due) for _ in range(count)]
        db.session.execute(insert(Run), rows)
        db.session.commit()
        return db.session.scalars(select(Run.id).where(Run.workflow_id == wf.id).order_by(Run.id)).all()[-count:]


def test_a_team_with_a_backlog_does_not_hide_another_teams_due_run(app, client, alice, charlie):
    from jobs.sweeper import hand_over_due
    from webapp.extensions import db
    from webapp.models import Run
    crowd = _queue(app, _wf(app, client, alice), 600, timedelta(minutes=2))
    [lone] = _queue(app, _wf(app, client, charlie), 1, timedelta(minutes=1))
    with app.app_context():
        hand_over_due()
        handed = set(db.session.scalars(select(Run.id).where(Run.enqueued_at.is_not(None))).all())
    assert lone in handed
    assert len(handed & set(crowd)) == app.config["TEAM_MAX_RUNNING"]  # no more than it may run at once


def test_long_waiting_runs_of_a_pool_without_workers_do_not_hide_a_short_one_past_its_wait(app, client, alice):
    from jobs.sweeper import NO_WORKER, fail_stale_queued
    from webapp.extensions import db
    from webapp.models import Run
    gpu = _wf(app, client, alice, workerPool="gpu", timeoutSec=86400)
    _queue(app, gpu, 600, timedelta(hours=1), timeout_sec=86400, pool="gpu")  # within their wait
    [short] = _queue(app, _wf(app, client, alice), 1, timedelta(minutes=10), timeout_sec=60)  # past 300 s
    with app.app_context():
        assert fail_stale_queued() == 1
        assert (db.session.get(Run, short).status, db.session.get(Run, short).error) == ("failed", NO_WORKER)


def test_a_team_with_thousands_of_pending_alerts_does_not_hide_another_teams(app, client, alice, charlie):
    from jobs.sweeper import hand_over_due_notifications
    from webapp.extensions import db
    from webapp.models import Notification
    from webapp.models.base import utcnow
    ids = {}
    for member in (alice, charlie):
        channel = client.post(f"/api/teams/{member.team_id}/notification-channels", headers=member.h(),
                              json={"kind": "slack", "name": "s", "target": "http://127.0.0.1:9/x"}).get_json()
        ids[member.team_id] = channel["id"]
    with app.app_context():
        now = utcnow() - timedelta(seconds=5)
        rows = [dict(team_id=alice.team_id, channel_id=ids[alice.team_id], event_id=None, state="pending",
                     attempts=0, next_attempt_at=now, created_at=now) for _ in range(600)]
        rows.append(dict(team_id=charlie.team_id, channel_id=ids[charlie.team_id], event_id=None, state="pending",
                         attempts=0, next_attempt_at=now, created_at=now))
        db.session.execute(insert(Notification), rows)
        db.session.commit()
        hand_over_due_notifications()
        handed = db.session.execute(select(Notification.team_id).where(Notification.enqueued_at.is_not(None))).all()
    assert sorted(t for (t,) in handed) == [alice.team_id, charlie.team_id]  # each team's oldest, one each


def test_a_running_run_that_never_recorded_its_host_is_not_handed_to_any_host(app, client, alice, monkeypatch):
    """A run claimed before hosts were recorded: no other host's engine has its container, so its
    lapsed lease makes it a lost host's run (failed, retried by its budget), never a resume on
    whichever worker comes first."""
    import time

    from sqlalchemy import update

    from jobs.sweeper import HOST_LOST, recover_lost
    from webapp.extensions import db
    from webapp.models import Run
    monkeypatch.setitem(app.config, "RUN_LEASE_TTL_SEC", 2)  # a lease absent for 1 s has lapsed
    [run_id] = _queue(app, _wf(app, client, alice), 1, timedelta(seconds=30))
    with app.app_context():
        db.session.execute(update(Run).where(Run.id == run_id).values(status="running", owner_token="gone",
                                                                      worker_host=None))
        db.session.commit()
        recover_lost()  # the lease is seen absent
        time.sleep(1.1)  # ... for longer than a lease's renewals
        recover_lost()
        run = db.session.get(Run, run_id)
        assert (run.status, run.error) == ("failed", HOST_LOST)


def test_hosts_gone_for_a_week_lose_their_heartbeat_rows_and_their_queues(app, client, alice):
    """A sweep step, not a worker's registration, forgets processes unseen for FORGET_AFTER_SEC;
    a host-bound queue goes once its host has no row left and no running run, and not before."""
    from jobs.sweeper import sweep
    from webapp.extensions import db
    from webapp.models import Run, WorkerProcess
    from webapp.models.clock import db_now
    from webapp.services import dispatch, hosts
    [busy] = _queue(app, _wf(app, client, alice), 1, timedelta(0))
    with app.app_context():
        db.session.execute(update(Run).where(Run.id == busy).values(status="running", worker_host="busy"))
        week = db_now(-hosts.FORGET_AFTER_SEC - 60)
        db.session.add_all([WorkerProcess(name=f"m:{i}", host=host, slots=1, started_at=seen, last_seen_at=seen)
                            for i, (host, seen) in enumerate([("gone", week), ("gone", week), ("here", db_now()),
                                                             ("half", week), ("half", db_now())])])
        db.session.commit()
        for host in ("gone", "here", "half", "unknown", "busy"):
            dispatch.enqueue_resume(f"run_{host}", 60, host)
        assert dispatch.host_queue_hosts() == {"gone", "here", "half", "unknown", "busy"}
        hosts._next_prune[0] = 0.0  # an earlier test's sweep in this process may have pruned just now
        assert sweep()["hosts_pruned"] == 3
        assert sorted(db.session.scalars(select(WorkerProcess.host))) == ["half", "here"]
        assert dispatch.host_queue_hosts() == {"here", "half", "busy"}  # "busy" still has a run on it
        assert dispatch.queue("host:here").count == 1


def test_the_workers_page_asks_the_database_as_often_for_forty_hosts_as_for_two(app, client, alice):
    """Each host has a running run of the viewer's: the page's queries do not grow with the hosts."""
    from sqlalchemy import event
    from webapp.extensions import db
    from webapp.models import Run
    from webapp.services import hosts
    workflow = _wf(app, client, alice)
    client.post("/login", data={"email": alice.email, "password": alice.password})

    def statements_for(count: int) -> int:
        runs = _queue(app, workflow, count, timedelta(0))
        with app.app_context():
            for i, run in enumerate(runs):
                hosts.register(f"box-{count}-{i}:1", f"box-{count}-{i}", ["default"], 1, "26.1")
                db.session.execute(update(Run).where(Run.id == run).values(status="running",
                                                                          worker_host=f"box-{count}-{i}"))
            db.session.commit()
            engine = db.engine
        seen = []
        listen = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listen)
        try:
            page = client.get("/workers").get_data(as_text=True)
        finally:
            event.remove(engine, "before_cursor_execute", listen)
        assert page.count(f"box-{count}-") >= count
        return len(seen)

    assert statements_for(2) == statements_for(40)
