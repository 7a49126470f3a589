"""Retention: a team's finished runs and their output removed past runRetentionDays and
logRetentionDays (the defaults keep everything), by the sweep, in batches; pages and the API say so."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from conftest import create_wf
from runs_api import base, end_at_once, trigger
from webapp.extensions import db
from webapp.models import Event, Run, RunLogBlock, Team
from webapp.models.base import utcnow


def _runs_finished(app, client, member, days_ago: list[int]) -> list[str]:
    """Runs of a new workflow, finished `days_ago` days ago, each with two stored lines."""
    wf = create_wf(client, member, maxRetries=0)
    ids = [trigger(client, member, wf["id"])["id"] for _ in days_ago]
    end_at_once(app, ids)
    with app.app_context():
        for public_id, days in zip(ids, days_ago):
            at = utcnow() - timedelta(days=days)
            db.session.execute(update(Run).where(Run.public_id == public_id).values(finished_at=at))
            pk = db.session.scalar(select(Run.id).where(Run.public_id == public_id))
            db.session.execute(RunLogBlock.__table__.insert().values(run_id=pk, first_seq=0, last_seq=1, stream="stdout",
                                                                     text=f"{public_id}\nbye", ts=at))
        db.session.commit()
        db.session.remove()
    return ids


def _state(app, ids: list[str]) -> dict[str, tuple]:
    """Each kept run's (has its output, when it was removed)."""
    with app.app_context():
        rows = db.session.execute(select(Run.public_id, Run.log_pruned_at,
                                         select(func.count(RunLogBlock.id)).where(RunLogBlock.run_id == Run.id)
                                         .scalar_subquery()).where(Run.public_id.in_(ids))).all()
        db.session.remove()
    return {public_id: (blocks > 0, pruned_at) for public_id, pruned_at, blocks in rows}


def _limits(app, member, **values) -> None:
    from webapp.services import quotas
    with app.app_context():
        quotas.set_limits(db.session.get(Team, member.team_id), values)
        db.session.remove()


def test_nothing_is_removed_by_default(app, client, alice):
    from jobs.sweeper import sweep
    ids = _runs_finished(app, client, alice, [4000, 400])
    with app.app_context():
        assert sweep()["pruned"] == 0
        db.session.remove()
    assert all(kept for kept, _ in _state(app, ids).values()) and len(_state(app, ids)) == 2


def test_past_the_teams_retention_output_then_runs_are_removed_and_the_pages_say_so(app, client, alice,
                                                                                    charlie, monkeypatch):
    from jobs.sweeper import sweep
    from webapp.services import retention
    old, middle, recent = _runs_finished(app, client, alice, [30, 10, 1])
    strangers = _runs_finished(app, client, charlie, [30, 10])  # another team, no retention: untouched
    with app.app_context():  # a kept run that retried the oldest, and an event of the oldest
        db.session.execute(update(Run).where(Run.public_id == recent).values(
            retry_of_id=select(Run.id).where(Run.public_id == old).scalar_subquery()))
        wf_id, old_pk = db.session.execute(select(Run.workflow_id, Run.id).where(Run.public_id == old)).one()
        db.session.add(Event(team_id=alice.team_id, kind="workflow.failed", workflow_id=wf_id, run_id=old_pk))
        db.session.commit()
        db.session.remove()
    _limits(app, alice, logRetentionDays=7, runRetentionDays=20)
    monkeypatch.setattr(retention, "RUNS_PER_BATCH", 1)  # several batches, each its own transaction
    with app.app_context():
        assert sweep()["pruned"] == 3  # two runs' output (the old and the middle), then the old run
        assert sweep()["pruned"] == 0
        assert db.session.scalar(select(func.count(Event.id)).where(Event.run_id == old_pk)) == 0
        db.session.remove()
    state = _state(app, [old, middle, recent])
    assert set(state) == {middle, recent}
    assert state[middle][0] is False and state[middle][1] is not None
    assert state[recent] == (True, None)
    assert all(kept and not pruned for kept, pruned in _state(app, strangers).values())
    assert client.get(f"{base(alice)}/runs/{recent}", headers=alice.h()).get_json()["retryOf"] is None
    assert client.get(f"{base(alice)}/runs/{old}", headers=alice.h()).status_code == 404
    body = client.get(f"{base(alice)}/runs/{middle}/logs", headers=alice.h()).get_json()
    assert body["lines"] == [] and body["prunedAt"]
    body = client.get(f"{base(alice)}/runs/{recent}/logs", headers=alice.h()).get_json()
    assert [l["text"] for l in body["lines"]] == [recent, "bye"] and body["prunedAt"] is None
    # the pages: the run without output, and the oldest page of the workflow's runs
    client.post("/login", data={"email": alice.email, "password": alice.password})
    page = client.get(f"/runs/{middle}").get_data(as_text=True)
    assert 'id="log-pruned"' in page and "logRetentionDays" in page
    wf = client.get(f"{base(alice)}/runs/{recent}", headers=alice.h()).get_json()["workflowId"]
    page = client.get(f"/teams/{alice.team_id}/workflows/{wf}").get_data(as_text=True)
    assert 'id="runs-pruned"' in page and "Older runs were pruned" in page


def test_the_installations_defaults_apply_to_every_team_and_an_override_of_0_keeps_for_ever(
        app, client, alice, charlie, monkeypatch):
    from jobs.sweeper import sweep
    mine = _runs_finished(app, client, alice, [30])
    theirs = _runs_finished(app, client, charlie, [30])
    _limits(app, charlie, runRetentionDays=0)
    monkeypatch.setitem(app.config, "RUN_RETENTION_DAYS", 20)
    with app.app_context():
        assert sweep()["pruned"] == 1
        db.session.remove()
    assert _state(app, mine) == {} and len(_state(app, theirs)) == 1
