"""What a page reads grows with its own team's history, not with another team's: the plans of the
hot queries, read from PostgreSQL's EXPLAIN ANALYZE over a busy team's many runs."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import event, text

from conftest import create_wf

BUSY_RUNS = 20_000


def _seed_busy(app, wf_id: str) -> None:
    """BUSY_RUNS finished runs of `wf_id`, all newer than anything the quiet team has."""
    from webapp.extensions import db
    from webapp.models import Run, Workflow
    with app.app_context():
        wf = db.session.query(Workflow).filter_by(public_id=wf_id).one()
        env = Run.__table__.c.env.type.process_bind_param({}, db.engine.dialect)
        db.session.execute(text("""
            INSERT INTO runs (public_id, team_id, workflow_id, "trigger", attempt, status, image, timeout_sec,
                              queued_at, due_at, finished_at, stdout_bytes, stderr_bytes, log_bytes,
                              log_dropped_bytes, log_next_seq, network, env, worker_pool)
            SELECT 'run_' || substr(md5('busy' || g::text), 1, 20), :team, :wf, 'manual', 1, 'succeeded',
                   'x', 60, now(), now(), now(), 0, 0, 0, 0, 0, 'bridge', :env, 'default'
            FROM generate_series(1, CAST(:n AS integer)) g"""),
            dict(team=wf.team_id, wf=wf.id, env=env, n=BUSY_RUNS))
        db.session.commit()
        db.session.execute(text("ANALYZE runs"))
        db.session.commit()


def _runs_rows_read(app, call) -> int:
    """Rows of `runs` the slowest statement of `call()` reads, by its EXPLAIN ANALYZE."""
    from webapp.extensions import db
    seen = []
    with app.app_context():
        listener = lambda conn, cursor, statement, params, context, many: seen.append((statement, params))  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            call()
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        read = 0
        for statement, params in seen:
            if "FROM runs" not in statement or "workflows" not in statement:
                continue
            with db.engine.connect() as conn:
                with conn.connection.driver_connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
                    plan = cursor.fetchone()[0]
            read = max(read, _rows_of(plan if isinstance(plan, list) else json.loads(plan), "runs"))
        return read


def _rows_of(plan, relation: str) -> int:
    """Rows the plan's scans of `relation` returned, over all their loops."""
    total = 0
    nodes = [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == relation:
            total += node["Actual Rows"] * node["Actual Loops"]
        nodes += node.get("Plans", [])
    return total


def test_a_quiet_teams_runs_tab_reads_its_own_runs_not_a_busy_teams(app, client, alice, charlie):
    from webapp.extensions import db
    from webapp.services.access import Principal
    from webapp.services.runs import RunFilter, project_runs
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("plans are PostgreSQL's")
    quiet = create_wf(client, charlie, name="quiet")
    assert client.post(f"/api/workflows/{charlie.team_id}/workflows/{quiet['id']}/trigger", json={},
                       headers=charlie.h()).status_code in (200, 201, 202)
    _seed_busy(app, create_wf(client, alice, name="busy")["id"])
    principal = Principal.operator({charlie.team_id})
    found = []
    read = _runs_rows_read(app, lambda: found.extend(
        project_runs(principal, charlie.team_id, charlie.project_id, RunFilter())[0]))
    assert len(found) == 1
    assert read <= 100, f"the quiet team's Runs tab read {read} rows of runs for its one run"
