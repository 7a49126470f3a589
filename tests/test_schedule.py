"""Cron semantics with fixed clocks, and live fires from two scheduler processes at once."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from conftest import all_logs, create_wf, wait_for, wait_status
from runs_api import base

from webapp import cron


def at(s: str) -> datetime:
    return datetime.fromisoformat(s)


@pytest.mark.parametrize("expr,after,expected", [
    ("*/5 * * * *", "2026-01-01T00:03:10", ["2026-01-01T00:05:00", "2026-01-01T00:10:00"]),
    ("0 9 * * 1-5", "2026-01-02T10:00:00", ["2026-01-05T09:00:00", "2026-01-06T09:00:00"]),  # Fri -> Mon
    ("*/2 * * * * *", "2026-01-01T00:00:01", ["2026-01-01T00:00:02", "2026-01-01T00:00:04"]),  # seconds first
    ("30 0 12 * * *", "2026-01-01T00:00:00", ["2026-01-01T12:00:30", "2026-01-02T12:00:30"]),
    ("0 0 1 1 *", "2026-06-01T00:00:00", ["2027-01-01T00:00:00", "2028-01-01T00:00:00"]),
    ("*/15 * * * *", "2026-01-01T00:59:59", ["2026-01-01T01:00:00", "2026-01-01T01:15:00"]),
])
def test_next_instants_in_utc(expr, after, expected):
    assert cron.next_instants(expr, "UTC", at(after), 2) == [at(e) for e in expected]


def test_six_fields_are_seconds_first_not_seconds_last():
    # "5 * * * * *": second 5 of every minute (croniter's default would read it as minute 5 + seconds)
    got = cron.next_instants("5 * * * * *", "UTC", at("2026-01-01T00:00:00"), 3)
    assert got == [at("2026-01-01T00:00:05"), at("2026-01-01T00:01:05"), at("2026-01-01T00:02:05")]


def test_timezone_is_honoured():
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer
    assert cron.next_instant("0 9 * * *", "Europe/Paris", at("2026-01-10T00:00:00")) == at("2026-01-10T08:00:00")
    assert cron.next_instant("0 9 * * *", "Europe/Paris", at("2026-07-10T00:00:00")) == at("2026-07-10T07:00:00")


def test_fall_back_hour_fires_once():
    # New York leaves DST on 2026-11-01: 01:30 happens twice; it fires once (the first, 05:30 UTC)
    got = cron.next_instants("30 1 * * *", "America/New_York", at("2026-10-31T12:00:00"), 3)
    assert got == [at("2026-11-01T05:30:00"), at("2026-11-02T06:30:00"), at("2026-11-03T06:30:00")]
    hourly = cron.next_instants("0 * * * *", "America/New_York", at("2026-11-01T03:30:00"), 4)
    assert hourly == [at("2026-11-01T04:00:00"), at("2026-11-01T05:00:00"), at("2026-11-01T07:00:00"),
                      at("2026-11-01T08:00:00")]  # 01:00 EDT fires, 01:00 EST (06:00 UTC) does not


def test_a_time_skipped_by_spring_forward_fires_at_the_end_of_the_gap():
    # 2026-03-08 02:30 does not exist in New York: that day fires at 03:00 EDT (07:00 UTC), the
    # first instant after the gap; every other day at 02:30 local
    got = cron.next_instants("30 2 * * *", "America/New_York", at("2026-03-07T12:00:00"), 3)
    assert got == [at("2026-03-08T07:00:00"), at("2026-03-09T06:30:00"), at("2026-03-10T06:30:00")]
    hourly = cron.next_instants("0 * * * *", "America/New_York", at("2026-03-08T05:30:00"), 3)
    assert hourly == [at("2026-03-08T06:00:00"), at("2026-03-08T07:00:00"), at("2026-03-08T08:00:00")]


def test_latest_at_or_before():
    assert cron.latest_at_or_before("*/5 * * * *", "UTC", at("2026-01-01T00:12:00")) == at("2026-01-01T00:10:00")
    assert cron.latest_at_or_before("*/5 * * * *", "UTC", at("2026-01-01T00:10:00")) == at("2026-01-01T00:10:00")


# -- firing, with fixed clocks, through the scheduler's own code --------------------------------
def _set_next(app, wf_id: str, when: datetime):
    from webapp.extensions import db
    from webapp.models import Workflow
    with app.app_context():
        db.session.query(Workflow).filter_by(public_id=wf_id).update({"next_run_at": when})
        db.session.commit()


def _fire(app, now: datetime) -> int:
    from jobs.schedule import fire_due
    with app.app_context():
        return fire_due(now)


def _runs(app, wf_id: str):
    from webapp.extensions import db
    from webapp.models import Run, Workflow
    with app.app_context():
        wf = db.session.query(Workflow).filter_by(public_id=wf_id).one()
        return [(r.trigger, r.scheduled_for) for r in db.session.query(Run).filter_by(workflow_id=wf.id).order_by(Run.id)], wf.next_run_at


def test_a_due_instant_fires_once_and_the_next_is_computed_from_it(app, client, alice):
    wf = create_wf(client, alice, schedule="*/5 * * * *")
    _set_next(app, wf["id"], at("2026-01-01T00:05:00"))
    assert _fire(app, at("2026-01-01T00:05:00.300000")) == 1
    assert _fire(app, at("2026-01-01T00:05:00.300000")) == 0  # a second scheduler, same instant
    runs, nxt = _runs(app, wf["id"])
    assert runs == [("schedule", at("2026-01-01T00:05:00"))]
    assert nxt == at("2026-01-01T00:10:00")


def test_a_batch_of_fires_copies_each_workflow_as_a_fire_of_one_would(app, client, alice):
    """Fires of workflows without env groups are made set-wise on PostgreSQL (one INSERT … SELECT,
    the env copied still encrypted), the others one by one: both read back as the workflow was."""
    assert client.post(f"/api/teams/{alice.team_id}/env-groups", headers=alice.h(), json={
        "name": "shared", "entries": [{"key": "G", "value": "g", "secret": True}]}).status_code == 201
    plain = create_wf(client, alice, schedule="*/5 * * * *", env={"SECRET": "s-1", "B": "two"}, memoryMb=64,
                      cpus=0.5, network="none", timeoutSec=77, command=["sh", "-c", "echo $SECRET"])
    grouped = create_wf(client, alice, schedule="*/5 * * * *", env={"C": "three"}, envGroups=["shared"])
    for wf in (plain, grouped):
        _set_next(app, wf["id"], at("2026-01-01T00:05:00"))
    assert _fire(app, at("2026-01-01T00:04:59")) == 2
    from webapp.extensions import db
    from webapp.models import Run
    for wf in (plain, grouped):
        [run] = client.get(f"{base(alice)}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]
        run = client.get(f"{base(alice)}/runs/{run['id']}", headers=alice.h()).get_json()
        assert {f: run[f] for f in ("image", "command", "env", "workerPool")} == \
            {f: wf[f] for f in ("image", "command", "env", "workerPool")}
        assert (run["trigger"], run["status"], run["attempt"], run["scheduledFor"], run["notBefore"]) == \
            ("schedule", "queued", 1, "2026-01-01T00:05:00.000Z", "2026-01-01T00:05:00.000Z")
        with app.app_context():
            row = db.session.query(Run).filter_by(public_id=run["id"]).one()
            assert (row.timeout_sec, row.memory_mb, row.cpus, row.network, row.enqueued_at is not None) == \
                (wf["timeoutSec"], wf["memoryMb"], wf["cpus"], wf["network"], True)
    assert [g["name"] for g in run["envGroups"]] == ["shared"]


def test_fires_are_made_further_ahead_when_many_share_an_instant(app, alice, monkeypatch):
    """The lead grows with what is due: 300 fires of one instant at a (forced) pace of 10 ms each
    need about 4 s to make, so they are made 5 s ahead, where 2 s is the lead of a few; capped by
    SCHEDULE_LEAD_MAX_SEC (set to SCHEDULE_LEAD_SEC, the lead is fixed)."""
    from jobs import schedule
    from webapp.extensions import db
    from webapp.models import Run, Workflow
    from webapp.models.base import new_public_id
    instant = at("2026-01-01T00:05:00")
    with app.app_context():
        db.session.execute(Workflow.__table__.insert(), [dict(
            public_id=new_public_id("wf_"), team_id=alice.team_id, project_id=alice.project_id,
            environment_id=alice.environment_id, name=f"many-{i}", image="busybox", command=["true"], env={},
            schedule="*/5 * * * *", timezone="UTC", concurrency_policy="allow", timeout_sec=60, max_retries=0,
            retry_backoff_sec=5, next_run_at=instant, created_at=instant, updated_at=instant) for i in range(300)])
        db.session.commit()
    monkeypatch.setattr(schedule, "lead", schedule.Lead())
    monkeypatch.setattr(schedule.lead, "pace", 0.010)
    monkeypatch.setitem(app.config, "SCHEDULE_LEAD_MAX_SEC", 2.0)
    assert _fire(app, instant - timedelta(seconds=5)) == 0  # a fixed lead of 2 s: not yet
    monkeypatch.setitem(app.config, "SCHEDULE_LEAD_MAX_SEC", 20.0)
    monkeypatch.setattr(schedule.lead, "counted_at", float("-inf"))
    with app.app_context():
        assert 5.5 < schedule.lead.seconds(instant - timedelta(seconds=5)) < 6.0  # 2 + 300 × 10 ms × 1.25
    assert _fire(app, instant - timedelta(seconds=5)) == 300
    with app.app_context():
        assert {due for due, in db.session.query(Run.due_at)} == {instant}  # made ahead, due at the instant
    monkeypatch.setitem(app.config, "SCHEDULE_LEAD_MAX_SEC", 4.0)
    monkeypatch.setattr(schedule.lead, "counted_at", float("-inf"))
    monkeypatch.setattr(schedule.lead, "pace", 0.010)
    with app.app_context():  # the next instant, 00:10, is as crowded: at most SCHEDULE_LEAD_MAX_SEC
        assert schedule.lead.seconds(at("2026-01-01T00:09:58")) == 4.0


def test_forbid_instants_still_to_come_take_no_place_in_a_batch(app, client, alice, monkeypatch):
    """Within the lead, only `allow` fires are made ahead: `forbid` ones due sooner must not fill the
    batch (here of 2) and hold back the `allow` fire behind them until their instant."""
    from jobs import schedule
    monkeypatch.setattr(schedule, "BATCH", 2)
    for _ in range(2):
        wf = create_wf(client, alice, schedule="*/5 * * * *", concurrencyPolicy="forbid")
        _set_next(app, wf["id"], at("2026-01-01T00:05:00.500000"))
    plain = create_wf(client, alice, schedule="*/5 * * * *")
    _set_next(app, plain["id"], at("2026-01-01T00:05:01"))
    assert _fire(app, at("2026-01-01T00:05:00")) == 1
    assert _runs(app, plain["id"])[0] == [("schedule", at("2026-01-01T00:05:01"))]


def test_a_workflow_row_held_by_another_transaction_delays_no_other_workflow(app, client, alice):
    """A worker cut off mid-transaction holds its workflow's row until the server drops it: the
    scheduler passes that one workflow over meanwhile and fires the others on time."""
    import threading

    from sqlalchemy import text

    from webapp.extensions import db
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("row locks are PostgreSQL's: SQLite has one writer at a time, and no lock to skip")
    held_wf, free_wf = (create_wf(client, alice, name=n, schedule="*/5 * * * *") for n in ("held", "free"))
    for wf in (held_wf, free_wf):
        _set_next(app, wf["id"], at("2026-01-01T00:05:00"))
    fired: list[int] = []
    with app.app_context():
        holder = db.engine.connect()
        held = holder.begin()
        holder.execute(text("SELECT id FROM workflows WHERE public_id = :p FOR UPDATE"), {"p": held_wf["id"]})
        tick = threading.Thread(target=lambda: fired.append(_fire(app, at("2026-01-01T00:05:00.2"))))
        tick.start()
        tick.join(10)
        try:
            assert fired == [1], "the tick waited for the held row"
            assert _runs(app, free_wf["id"])[0] == [("schedule", at("2026-01-01T00:05:00"))]
            assert _runs(app, held_wf["id"])[0] == []
        finally:
            held.rollback()
            holder.close()
    assert _fire(app, at("2026-01-01T00:05:00.4")) == 1  # the next tick, the row free again
    assert _runs(app, held_wf["id"])[0] == [("schedule", at("2026-01-01T00:05:00"))]


def test_a_claim_cut_off_midway_delays_no_fire_of_its_team(app, client, alice):
    """A worker cut off in the middle of a claim holds its team's claim lock until the server drops
    its session: the team's fires (a run row naming the team) go on meanwhile."""
    import threading

    from jobs.lease import claims_in_turn
    from webapp.extensions import db
    from webapp.models import Workflow
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("row locks are PostgreSQL's: SQLite has one writer at a time")
    wf = create_wf(client, alice, name="fires", schedule="*/5 * * * *")
    _set_next(app, wf["id"], at("2026-01-01T00:05:00"))
    fired: list[int] = []
    with app.app_context():
        team_id = db.session.query(Workflow.team_id).filter_by(public_id=wf["id"]).scalar()
        db.session.remove()
        holder = db.engine.connect()
        held = holder.begin()
        holder.execute(claims_in_turn(team_id))
        tick = threading.Thread(target=lambda: fired.append(_fire(app, at("2026-01-01T00:05:00.2"))))
        tick.start()
        tick.join(10)
        on_time = list(fired)
        held.rollback()
        holder.close()
        tick.join(10)
    assert on_time == [1], "the fire waited for the team's claim"
    assert _runs(app, wf["id"])[0] == [("schedule", at("2026-01-01T00:05:00"))]


def test_a_transaction_that_names_a_workflow_does_not_make_its_fire_late(app, client, alice):
    """A run end, a run or an event being written names the workflow in a foreign key (a key-share
    lock on its row) until its commit: the scheduler's lock on the row does not conflict with it,
    so the workflow is not passed over for the tick."""
    from sqlalchemy import insert

    from webapp.extensions import db
    from webapp.models import Event, Workflow
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("row locks are PostgreSQL's: SQLite has one writer at a time")
    wf = create_wf(client, alice, name="named", schedule="*/5 * * * *")
    _set_next(app, wf["id"], at("2026-01-01T00:05:00"))
    with app.app_context():
        row = db.session.query(Workflow.id, Workflow.team_id).filter_by(public_id=wf["id"]).one()
        db.session.remove()
        holder = db.engine.connect()
        held = holder.begin()
        holder.execute(insert(Event.__table__).values(team_id=row.team_id, workflow_id=row.id, kind="workflow.silent",
                                                      created_at=at("2026-01-01T00:04:59")))
        try:
            assert _fire(app, at("2026-01-01T00:05:00.2")) == 1, "the workflow was passed over"
        finally:
            held.rollback()
            holder.close()
    assert _runs(app, wf["id"])[0] == [("schedule", at("2026-01-01T00:05:00"))]


def test_a_late_scheduler_fires_only_the_latest_missed_instant(app, client, alice):
    wf = create_wf(client, alice, schedule="* * * * *", timeoutSec=600)
    _set_next(app, wf["id"], at("2026-01-01T00:01:00"))
    assert _fire(app, at("2026-01-01T00:07:30")) == 1  # six instants missed: only 00:07 runs
    runs, nxt = _runs(app, wf["id"])
    assert runs == [("schedule", at("2026-01-01T00:07:00"))]
    assert nxt == at("2026-01-01T00:08:00")


def test_a_missed_instant_older_than_the_timeout_is_skipped(app, client, alice):
    wf = create_wf(client, alice, schedule="0 * * * *", timeoutSec=60)
    _set_next(app, wf["id"], at("2026-01-01T01:00:00"))
    assert _fire(app, at("2026-01-01T01:30:00")) == 0
    runs, nxt = _runs(app, wf["id"])
    assert runs == [] and nxt == at("2026-01-01T02:00:00")


def test_the_unique_key_stops_a_duplicate_fire(app, client, alice):
    from sqlalchemy.exc import IntegrityError

    from webapp.extensions import db
    from webapp.models import Workflow
    from webapp.services.runs import fire
    wf = create_wf(client, alice, schedule="* * * * *")
    with app.app_context():
        row = db.session.query(Workflow).filter_by(public_id=wf["id"]).one()
        fire(row, "schedule", {}, scheduled_for=at("2026-01-01T00:01:00"))
        db.session.commit()
        fire(row, "schedule", {}, scheduled_for=at("2026-01-01T00:01:00"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def _second_fire_over_a_queued_one(app, client, member, policy: str) -> list[dict]:
    """Fire 00:01 (queued; no worker runs it, so it stays in progress), then 00:02: the runs."""
    wf = create_wf(client, member, schedule="* * * * *", concurrencyPolicy=policy, timeoutSec=3600)
    for instant in ("2026-01-01T00:01:00", "2026-01-01T00:02:00"):
        _set_next(app, wf["id"], at(instant))
        _fire(app, at(instant))
    return client.get(f"/api/workflows/{member.team_id}/workflows/{wf['id']}/runs",
                      headers=member.h()).get_json()["runs"]


def test_forbid_records_a_skipped_fire(app, client, alice):
    runs = _second_fire_over_a_queued_one(app, client, alice, "forbid")
    assert [r["status"] for r in runs] == ["cancelled", "queued"]
    assert "skipped" in runs[0]["error"]


def test_replace_cancels_a_queued_run_with_the_reason_and_fires(app, client, alice):
    runs = _second_fire_over_a_queued_one(app, client, alice, "replace")
    assert [(r["status"], r["scheduledFor"]) for r in runs] == [
        ("queued", "2026-01-01T00:02:00.000Z"), ("cancelled", "2026-01-01T00:01:00.000Z")]
    assert "replaced by the fire of 2026-01-01T00:02:00Z" in runs[1]["error"]


def test_replace_stops_a_running_container_and_says_why(app, client, alice, worker):
    wf = create_wf(client, alice, concurrencyPolicy="replace", timeoutSec=120,
                   command=["sh", "-c", "trap 'exit 143' TERM; echo up; sleep 60 & wait"])
    base = f"/api/workflows/{alice.team_id}/workflows"
    first = client.post(f"{base}/{wf['id']}/trigger", headers=alice.h()).get_json()
    wait_for(lambda: client.get(f"{base}/runs/{first['id']}/logs", headers=alice.h()).get_json()["lines"], 30)
    client.patch(f"{base}/{wf['id']}", json={"schedule": "0 0 1 1 *"}, headers=alice.h())
    _set_next(app, wf["id"], datetime.utcnow().replace(microsecond=0))  # due now: the scheduler fires it
    old = wait_status(client, alice, first["id"], timeout=30)
    assert old["status"] == "cancelled" and "concurrencyPolicy replace" in old["error"]
    runs = client.get(f"{base}/{wf['id']}/runs", headers=alice.h()).get_json()["runs"]
    assert runs[0]["trigger"] == "schedule" and runs[0]["status"] in ("queued", "running")
    client.post(f"{base}/runs/{runs[0]['id']}/cancel", headers=alice.h())
    assert wait_status(client, alice, runs[0]["id"], timeout=30)["status"] == "cancelled"


def test_patch_and_delete_change_the_next_fire(client, alice):
    wf = create_wf(client, alice, schedule="0 0 1 1 *")
    url = f"/api/workflows/{alice.team_id}/workflows/{wf['id']}"
    moved = client.patch(url, json={"schedule": "*/5 * * * *"}, headers=alice.h()).get_json()
    assert moved["nextRunAt"] != wf["nextRunAt"]
    assert datetime.fromisoformat(moved["nextRunAt"][:-1]) - datetime.utcnow() <= timedelta(minutes=5)
    tz = client.patch(url, json={"schedule": "0 9 * * *", "timezone": "Asia/Tokyo"}, headers=alice.h()).get_json()
    assert tz["nextRunAt"].endswith("T00:00:00.000Z")  # 09:00 in Tokyo
    assert client.patch(url, json={"schedule": None}, headers=alice.h()).get_json()["nextRunAt"] is None


def test_an_allow_instant_within_the_lead_is_fired_ahead_and_due_at_its_instant(app, client, alice):
    from webapp.extensions import db
    from webapp.models import Run
    plain = create_wf(client, alice, schedule="*/5 * * * *")
    forbid = create_wf(client, alice, schedule="*/5 * * * *", concurrencyPolicy="forbid")
    for wf in (plain, forbid):
        _set_next(app, wf["id"], at("2026-01-01T00:05:00"))
    assert _fire(app, at("2026-01-01T00:04:58.500000")) == 1  # SCHEDULE_LEAD_SEC is 2
    runs, nxt = _runs(app, plain["id"])
    assert runs == [("schedule", at("2026-01-01T00:05:00"))] and nxt == at("2026-01-01T00:10:00")
    with app.app_context():
        assert db.session.query(Run.due_at).scalar() == at("2026-01-01T00:05:00")
    # forbid and replace decide on what is in flight: at their instant, not before
    assert _runs(app, forbid["id"]) == ([], at("2026-01-01T00:05:00"))
    assert _fire(app, at("2026-01-01T00:05:00.100000")) == 1
    assert _runs(app, forbid["id"])[0] == [("schedule", at("2026-01-01T00:05:00"))]


def test_a_schedule_saved_after_an_ahead_fire_does_not_fire_that_instant_again(app, client, alice):
    wf = create_wf(client, alice, schedule="* * * * * *")
    instant = (datetime.utcnow() + timedelta(seconds=2)).replace(microsecond=0)
    _set_next(app, wf["id"], instant)
    assert _fire(app, instant - timedelta(seconds=1.5)) == 1
    url = f"/api/workflows/{alice.team_id}/workflows/{wf['id']}"
    saved = client.patch(url, json={"schedule": "*/1 * * * * *"}, headers=alice.h()).get_json()
    assert datetime.fromisoformat(saved["nextRunAt"][:-1]) > instant


def _boot_clock_at(instant: datetime) -> float:
    """The kernel's boot clock (what /proc/uptime shows in any container) at a wall-clock instant."""
    from datetime import timezone
    return instant.replace(tzinfo=timezone.utc).timestamp() + time.clock_gettime(time.CLOCK_BOOTTIME) - time.time()


def _run_containers(run_id: str) -> list[dict]:
    import docker

    from jobs.engine import LABEL_RUN
    engine = docker.from_env()
    try:
        return engine.api.containers(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})
    finally:
        engine.close()


def test_a_run_prepared_ahead_starts_its_process_at_the_instant_not_before(app, client, alice, procs):
    procs.worker(1)
    procs.scheduler(env={"SCHEDULE_LEAD_SEC": "4"})
    wf = create_wf(client, alice, schedule="*/10 * * * * *", command=["cat", "/proc/uptime"], timeoutSec=30)
    url = f"/api/workflows/{alice.team_id}/workflows/{wf['id']}"

    def ahead():  # a run made before its instant, its container already created and not started
        for run in client.get(f"{url}/runs", headers=alice.h()).get_json()["runs"]:
            instant = datetime.fromisoformat(run["scheduledFor"][:-1])
            if instant > datetime.utcnow() + timedelta(seconds=0.5):
                found = _run_containers(run["id"])
                if found and found[0]["State"] == "created":
                    return run
        return None
    run = wait_for(ahead, 30, every=0.05)
    client.patch(url, json={"schedule": None}, headers=alice.h())
    done = wait_status(client, alice, run["id"], timeout=30)
    assert done["status"] == "succeeded"
    instant = datetime.fromisoformat(run["scheduledFor"][:-1])
    uptime = float(all_logs(client, alice, run["id"])["lines"][0]["text"].split()[0])
    # /proc/uptime moves in 10 ms steps (truncated): a process at the instant may read 10 ms less
    assert uptime >= _boot_clock_at(instant) - 0.011, (uptime, _boot_clock_at(instant))
    assert datetime.fromisoformat(done["startedAt"][:-1]) >= instant
    assert wait_for(lambda: not _run_containers(run["id"]), 10)


def _prepared_ahead(client, member, url: str) -> dict:
    """Once there is one: a run of the workflow at `url` whose container exists, 2 s or more
    before its instant."""
    def prepared():
        for run in client.get(f"{url}/runs", headers=member.h()).get_json()["runs"]:
            instant = datetime.fromisoformat(run["scheduledFor"][:-1])
            if instant > datetime.utcnow() + timedelta(seconds=2) and _run_containers(run["id"]):
                return run
        return None
    return wait_for(prepared, 30, every=0.05)


def test_a_run_prepared_ahead_and_cancelled_before_its_instant_never_starts(app, client, alice, procs):
    procs.worker(1)
    procs.scheduler(env={"SCHEDULE_LEAD_SEC": "8"})
    wf = create_wf(client, alice, schedule="*/10 * * * * *", command=["echo", "ran"], timeoutSec=30)
    url = f"/api/workflows/{alice.team_id}/workflows/{wf['id']}"

    run = _prepared_ahead(client, alice, url)
    client.patch(url, json={"schedule": None}, headers=alice.h())
    cancel = client.post(f"/api/workflows/{alice.team_id}/workflows/runs/{run['id']}/cancel", headers=alice.h())
    assert cancel.status_code == 202
    done = wait_status(client, alice, run["id"], timeout=30)
    assert done["status"] == "cancelled" and done["startedAt"] is None
    assert wait_for(lambda: not _run_containers(run["id"]), 10)
    assert [l["text"] for l in all_logs(client, alice, run["id"])["lines"] if l["stream"] == "stdout"] == []


def test_a_workflow_deleted_while_its_fire_is_prepared_ahead_never_starts_it(app, client, alice, procs):
    """DELETE stops fires at once: a fire made ahead of its instant (SCHEDULE_LEAD_SEC) is one."""
    from webapp.services.workflows import PREPARED_GONE
    procs.worker(1)
    procs.scheduler(env={"SCHEDULE_LEAD_SEC": "8"})
    wf = create_wf(client, alice, schedule="*/10 * * * * *", command=["echo", "ran"], timeoutSec=30)
    url = f"/api/workflows/{alice.team_id}/workflows/{wf['id']}"

    run = _prepared_ahead(client, alice, url)
    shown = client.get(f"/api/workflows/{alice.team_id}/workflows/runs/{run['id']}", headers=alice.h()).get_json()
    assert (shown["status"], shown["waiting"][:13]) == ("queued", "preparing on ")  # not running: not started
    assert client.delete(url, headers=alice.h()).status_code == 204
    done = wait_status(client, alice, run["id"], timeout=30)
    assert (done["status"], done["error"], done["startedAt"]) == ("cancelled", PREPARED_GONE, None)
    assert wait_for(lambda: not _run_containers(run["id"]), 10)


# -- live: two scheduler processes, a 2-second schedule --------------------------------------
def test_two_schedulers_fire_each_instant_exactly_once(app, client, alice, procs):
    procs.worker(2)
    procs.scheduler()
    procs.scheduler()
    wf = create_wf(client, alice, schedule="*/2 * * * * *", command=["true"], timeoutSec=30)
    url = f"/api/workflows/{alice.team_id}/workflows/{wf['id']}"

    def schedule_runs():
        return client.get(f"{url}/runs?limit=100", headers=alice.h()).get_json()["runs"]
    wait_for(lambda: len(schedule_runs()) >= 5, 30)
    client.patch(url, json={"schedule": None}, headers=alice.h())
    time.sleep(0.5)
    runs = schedule_runs()
    instants = [r["scheduledFor"] for r in runs]
    assert all(r["trigger"] == "schedule" for r in runs)
    stamps = sorted(datetime.fromisoformat(i[:-1]) for i in instants)
    assert all(s.second % 2 == 0 and s.microsecond == 0 for s in stamps)
    assert all((b - a).total_seconds() == 2 for a, b in zip(stamps, stamps[1:]))
    count = len(runs)
    assert _collisions(app) == 0  # no instant was ever inserted twice: the claim decided, not the key
    time.sleep(3)
    assert len(schedule_runs()) == count  # unscheduled: no more fires
    wait_for(lambda: all(r["status"] == "succeeded" for r in schedule_runs()), 30)


def test_a_restarted_scheduler_after_a_redis_flush_keeps_firing_once(app, client, alice, procs):
    from webapp.connections import get_redis
    procs.worker(2)
    scheduler = procs.scheduler()
    wf = create_wf(client, alice, schedule="*/2 * * * * *", command=["true"], timeoutSec=30)
    url = f"/api/workflows/{alice.team_id}/workflows/{wf['id']}"

    def runs():
        return client.get(f"{url}/runs?limit=100", headers=alice.h()).get_json()["runs"]
    wait_for(lambda: len(runs()) >= 2, 20)
    procs.kill(scheduler)
    with app.app_context():
        get_redis().flushdb()
    before = len(runs())
    procs.scheduler()
    wait_for(lambda: len(runs()) >= before + 3, 30)
    client.patch(url, json={"schedule": None}, headers=alice.h())
    assert _collisions(app) == 0  # the restarted scheduler claimed each instant once; the key never had to refuse one
    wait_for(lambda: all(r["status"] == "succeeded" for r in runs()), 40)


def test_waiting_for_the_instant_survives_a_cancel_check_that_runs_past_it():
    """The wait's own checks may take longer than what was left of it (a slow database under
    load): the run then starts at once instead of crashing on a negative sleep."""
    import threading
    from types import SimpleNamespace

    from jobs.deadlines import until_due
    from webapp.models.base import utcnow

    def slow_cancel_check():
        time.sleep(0.3)
        return False
    run = SimpleNamespace(due_at=utcnow() + timedelta(seconds=0.25), public_id="run_x")
    cancel = SimpleNamespace(requested=slow_cancel_check, reason=None)
    assert until_due(run, threading.Event(), cancel) is None


def _events(app, kind: str) -> int:
    from webapp.extensions import db
    from webapp.models import Event
    with app.app_context():
        return db.session.query(Event).filter_by(kind=kind).count()


def _collisions(app) -> int:
    from webapp.connections import get_redis
    with app.app_context():
        return int(get_redis().hget("workflows:metrics:c:fire_collisions", "") or 0)


def test_an_instant_that_has_its_run_already_is_passed_over_without_undoing_the_other_fires(app, client, alice):
    """A workflow whose next_run_at names an instant that has a run (however it came about) moves
    on to its next instant; the other workflows of the batch keep their fires prepared ahead."""
    from webapp.extensions import db
    from webapp.models import Run, Workflow
    from webapp.services.runs import fire
    taken = create_wf(client, alice, schedule="* * * * *")
    other = create_wf(client, alice, schedule="* * * * *")
    instant = at("2026-01-01T00:01:00")
    for wf in (taken, other):
        _set_next(app, wf["id"], instant)
    with app.app_context():
        fire(db.session.query(Workflow).filter_by(public_id=taken["id"]).one(), "schedule", {},
             scheduled_for=instant)
        db.session.commit()
    assert _fire(app, at("2026-01-01T00:00:59.500000")) == 1  # ahead of the instant, within the lead
    assert _runs(app, taken["id"]) == ([("schedule", instant)], at("2026-01-01T00:02:00"))
    assert _runs(app, other["id"]) == ([("schedule", instant)], at("2026-01-01T00:02:00"))
    with app.app_context():  # still prepared ahead: due at its instant
        assert db.session.query(Run.due_at).filter(Run.workflow.has(public_id=other["id"])).scalar() == instant
    assert _fire(app, at("2026-01-01T00:01:00.100000")) == 0  # nothing left to fire, nothing jammed
    assert (_collisions(app), _events(app, "workflow.missed")) == (1, 0)


def test_a_forbid_instant_that_has_its_run_already_is_passed_over(app, client, alice):
    from webapp.extensions import db
    from webapp.models import Workflow
    from webapp.services.runs import fire
    wf = create_wf(client, alice, schedule="* * * * *", concurrencyPolicy="forbid")
    instant = at("2026-01-01T00:05:00")
    _set_next(app, wf["id"], instant)
    with app.app_context():
        fire(db.session.query(Workflow).filter_by(public_id=wf["id"]).one(), "schedule", {},
             scheduled_for=instant)
        db.session.commit()
    assert _fire(app, at("2026-01-01T00:05:00.200000")) == 0
    assert _runs(app, wf["id"]) == ([("schedule", instant)], at("2026-01-01T00:06:00"))
    assert (_collisions(app), _events(app, "workflow.missed")) == (1, 0)


def test_a_workflow_unscheduled_during_a_tick_is_passed_over_quietly(app, client, alice, caplog):
    """A `forbid` workflow is fired after the batch's commit, from its row read again: a PATCH of
    its schedule to null in between leaves nothing to fire and nothing to log as an error."""
    from jobs import schedule
    from webapp.extensions import db
    from webapp.models import Workflow
    wf = create_wf(client, alice, name="gone", schedule="*/5 * * * *")
    with app.app_context():
        row = db.session.query(Workflow).filter_by(public_id=wf["id"]).one()
        row.schedule, row.next_run_at = None, None  # as the PATCH left it
        assert schedule._instants(row, at("2026-01-01T00:05:00")) == (None, None, 0)
        db.session.rollback()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_batch_claim_wins_only_the_instants_no_one_else_advanced(app, client, alice):
    """The batch's compare-and-set is per workflow: a workflow another scheduler advanced since
    the batch read it is not won (nor fired), the others are."""
    from jobs import schedule
    from webapp.extensions import db
    from webapp.models import Workflow
    ids = [create_wf(client, alice, name=f"b{i}", schedule="*/5 * * * *")["id"] for i in range(3)]
    for wf_id in ids:
        _set_next(app, wf_id, at("2026-01-01T00:05:00"))
    with app.app_context():
        rows = [db.session.query(Workflow).filter_by(public_id=i).one() for i in ids]
        other = db.engine.connect()  # another scheduler, in a transaction of its own
        other.execute(Workflow.__table__.update().where(Workflow.__table__.c.id == rows[1].id)
                      .values(next_run_at=at("2026-01-01T00:10:00")))
        other.commit()
        other.close()
        won = schedule._claim_many([(wf, at("2026-01-01T00:10:00")) for wf in rows])
        db.session.commit()
        assert won == {rows[0].id, rows[2].id}
