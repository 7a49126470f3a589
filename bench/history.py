"""A million runs of history on PostgreSQL (issue 29, goal 4): every dashboard page, API list and
log page timed as bench/pages.py times them (in-process, the server's own time), and the slowest
statement of each page shown with PostgreSQL's EXPLAIN (ANALYZE, BUFFERS).

The seed is made in bulk by SQL (generate_series), not through the API: 1,000 workflows, RUNS
runs over the last 30 days (about 1 a 2.6 s: 1,000,000 by default, the last week about 233,000),
4 % of them failed and 1 % timed out (each failure with its workflow.failed event), each run with
LINES_PER_RUN lines of stored output in one zstd block as the worker stores them (20,000,000
lines by default), and one run of BIG_RUN_LINES lines, a block of 100 lines each, for the log
pages. A second, quiet team has 10 workflows and 1,000 runs over the same 30 days, their ids among
the busy team's: its pages must not pay for the other team's history. The database `workflows_history` is made anew each time (or kept with --keep, to measure
again without seeding).
Usage: .venv/bin/python bench/history.py [--runs N] [--keep]   (needs root: it makes the database)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "workflows_history"
os.environ["DATABASE_URL"] = f"postgresql://workflows:workflows@127.0.0.1:5432/{DATABASE}"
sys.path.insert(0, str(ROOT / "bench"))
from pages import figures, insert_workflows, measure, page_list, signed_in_client  # noqa: E402

WORKFLOWS, LINES_PER_RUN, BIG_RUN_LINES, BATCH = 1000, 20, 100_000, 100_000
QUIET_WORKFLOWS, QUIET_RUNS = 10, 1000  # a second team's, among the big one's runs
EMAIL, QUIET_EMAIL, PASSWORD = "history@example.test", "quiet@example.test", "history-password"
GOALS_MS = {"health view": 300, "API: run logs": 50, "API: log page, middle of a big run": 50,
            "API: logs of an ordinary run": 50, "run page": 50}
EXPLAINED = ROOT / "var" / "history-explain.txt"
IDS = ROOT / "var" / "history-ids.json"


def make_database() -> None:
    for sql in (f"drop database if exists {DATABASE}", f"create database {DATABASE} owner workflows"):
        subprocess.run(["su", "postgres", "-c", f"psql -qc '{sql}'"], check=True, capture_output=True)


class Tenant:
    """A team seeded with `workflows` workflows and `runs` runs over the last 30 days."""

    def __init__(self, email: str, password: str, name: str, workflows: int, runs: int):
        from sqlalchemy import func

        from webapp.extensions import db
        from webapp.models import Workflow
        from webapp.services.teams import create_user
        self.email, self.password, self.workflows, self.runs, self.salt = email, password, workflows, runs, name
        _, self.team, self.project = create_user(email, password, name)
        now = datetime.utcnow()
        insert_workflows(self.team, self.project, workflows, next_run_at=now + timedelta(days=365),
                         created_at=now - timedelta(days=31))
        self.first_wf = db.session.scalar(db.select(func.min(Workflow.id)).where(Workflow.team_id == self.team.id))


def seed(app, runs: int) -> dict:
    """The big team's RUNS runs in batches, each batch after a tenth of the quiet team's: its runs'
    ids lie among the big team's as a team that runs little among busy ones."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from webapp.extensions import db
    from webapp.models import Run
    from webapp.runoutput import codec
    with app.app_context():
        upgrade()
        busy = Tenant(EMAIL, PASSWORD, "history", WORKFLOWS, runs)
        quiet = Tenant(QUIET_EMAIL, PASSWORD, "quiet", QUIET_WORKFLOWS, QUIET_RUNS)
        env = Run.__table__.c.env.type.process_bind_param({"A": "1"}, db.engine.dialect)
        lines = "\n".join(f"2026-12-01T00:00:{i:02d}Z INFO step {i} of {LINES_PER_RUN}: done in {i * 7} ms"
                          for i in range(LINES_PER_RUN))
        packed = codec.encode(lines, None)[1]
        now = datetime.utcnow().replace(microsecond=0)
        batches = -(-runs // BATCH)
        for k in range(batches):
            t = time.monotonic()
            for tenant in (quiet, busy):
                first, last = k * tenant.runs // batches + 1, (k + 1) * tenant.runs // batches
                _seed_runs(tenant, first, last, env, packed, now)
            db.session.commit()
            print(f"  batch {k + 1} of {batches} in {time.monotonic() - t:.1f} s", flush=True)
        db.session.execute(text("INSERT INTO run_counts (workflow_id, status, \"trigger\", n) SELECT workflow_id, "
                                "status, \"trigger\", count(*) FROM runs GROUP BY workflow_id, status, \"trigger\""))
        big = _seed_big_run(busy.team.id, busy.first_wf + WORKFLOWS - 1, env, now)
        db.session.commit()
        return {"busy": _ids(busy, big), "quiet": _ids(quiet, None)}


def _seed_runs(tenant: Tenant, first: int, last: int, env: bytes, packed: bytes, now: datetime) -> None:
    """The tenant's runs `first`..`last` (the last one now, one every 30 days / its runs before
    it), their output blocks and their failures' events, each a statement over generate_series."""
    from sqlalchemy import text

    from webapp.extensions import db
    db.session.execute(text("""
        INSERT INTO runs (public_id, team_id, workflow_id, "trigger", attempt, status, exit_code, error, image,
                          timeout_sec, scheduled_for, queued_at, due_at, enqueued_at, started_at, finished_at,
                          duration_ms, stdout_bytes, stderr_bytes, log_bytes, log_dropped_bytes, log_next_seq,
                          network, env, worker_host, worker_pool)
        SELECT 'run_' || substr(md5(:salt || g::text), 1, 20), :team, :wf + g % :wfs, 'schedule', 1,
               CASE WHEN g % 25 = 0 THEN 'failed' WHEN g % 100 = 1 THEN 'timed_out' ELSE 'succeeded' END,
               CASE WHEN g % 25 = 0 THEN 3 WHEN g % 100 = 1 THEN NULL ELSE 0 END,
               CASE WHEN g % 25 = 0 THEN 'exited with code 3' END,
               'workflows.local/busybox:1', 600, t, t, t, t, t + interval '0.3 s', t + interval '2.3 s', 2000,
               1300, 0, 1300, 0, :lines, 'bridge', :env, 'host-' || (g % 7), 'default'
        FROM (SELECT g, CAST(:now AS timestamp) - (CAST(:runs AS integer) - g) * CAST(:step AS float8)
                        * interval '1 millisecond' AS t
              FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) g) s"""),
        dict(salt=tenant.salt, team=tenant.team.id, wf=tenant.first_wf, wfs=tenant.workflows, lines=LINES_PER_RUN,
             env=env, now=now, runs=tenant.runs, step=30 * 86_400_000 / tenant.runs, first=first, last=last))
    db.session.execute(text("""
        INSERT INTO run_log_blocks (run_id, first_seq, last_seq, stream, text, packed, ts)
        SELECT id, 0, :last_seq, 'stdout', NULL, :packed, started_at FROM runs
        WHERE id > (SELECT coalesce(max(run_id), 0) FROM run_log_blocks)"""),
        dict(last_seq=LINES_PER_RUN - 1, packed=packed))
    db.session.execute(text("""
        INSERT INTO events (team_id, kind, workflow_id, run_id, created_at)
        SELECT team_id, 'workflow.failed', workflow_id, id, finished_at FROM runs
        WHERE status IN ('failed', 'timed_out') AND id > (SELECT coalesce(max(run_id), 0) FROM events)"""))


def _seed_big_run(team_id: int, wf_id: int, env: bytes, now: datetime) -> int:
    """A manual run of BIG_RUN_LINES lines, a block of 100 lines each; its id."""
    from sqlalchemy import text

    from webapp.extensions import db
    from webapp.runoutput import codec
    run_id = db.session.scalar(text("""
        INSERT INTO runs (public_id, team_id, workflow_id, "trigger", attempt, status, exit_code, image,
                          timeout_sec, queued_at, due_at, started_at, finished_at, duration_ms, stdout_bytes,
                          stderr_bytes, log_bytes, log_dropped_bytes, log_next_seq, network, env, worker_pool)
        VALUES ('run_bighistorylog000000', :team, :wf, 'manual', 1, 'succeeded', 0, 'workflows.local/busybox:1',
                600, :now, :now, :now, :now, 60000, 6000000, 0, 6000000, 0, :lines, 'bridge', :env, 'default')
        RETURNING id"""), dict(team=team_id, wf=wf_id, now=now, lines=BIG_RUN_LINES, env=env))
    rows = []
    for first in range(0, BIG_RUN_LINES, 100):
        block = "\n".join(f"{now:%H:%M:%S} request {n} GET /api/items/{n % 977} 200 {n % 53} ms"
                          for n in range(first, first + 100))
        plain, packed = codec.encode(block, None)
        rows.append(dict(run_id=run_id, first_seq=first, last_seq=first + 99, text=plain, packed=packed, ts=now))
    db.session.execute(text("INSERT INTO run_log_blocks (run_id, first_seq, last_seq, stream, text, packed, ts) "
                            "VALUES (:run_id, :first_seq, :last_seq, 'stdout', :text, :packed, :ts)"), rows)
    return run_id


def _ids(tenant: Tenant, big_run_id: int | None) -> dict:
    """The ids bench/pages.py's page list needs (an ordinary run of the newest workflow), and the big run."""
    from webapp.extensions import db
    from webapp.models import Run, Workflow
    from webapp.services.access import Principal
    from webapp.services.keys import create_key
    team = tenant.team
    wf = db.session.query(Workflow).filter_by(team_id=team.id).order_by(Workflow.id.desc()).first()
    run = (db.session.query(Run).filter(Run.workflow_id == wf.id, Run.trigger == "schedule")
           .order_by(Run.id.desc()).first())
    key = create_key(Principal.operator({team.id}), team.id, "admin", "live")[1]
    return {"team": team.id, "project": tenant.project.id, "wf": wf.public_id, "run": run.public_id, "key": key,
            "email": tenant.email, "big": db.session.get(Run, big_run_id).public_id if big_run_id else None}


def big_run_pages(ids: dict) -> list[tuple[str, str, dict]]:
    tid, big = ids["team"], ids["big"]
    api = {"Authorization": f"Bearer {ids['key']}"}
    logs = f"/api/workflows/{tid}/workflows/runs/{big}/logs"
    return [
        ("run page, big run", f"/runs/{big}", {}),
        ("API: log page, middle of a big run", f"{logs}?afterSeq=49999&limit=1000", api),
        ("API: logs of a big run (10,000)", logs, api),
        ("raw log download, big run", f"/runs/{big}/log.txt", {}),
    ]


class Statements:
    """Each statement a request runs, with its time, from SQLAlchemy's cursor events."""

    def __init__(self, engine):
        from sqlalchemy import event
        self.seen: list[tuple[float, str, object]] = []
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self._started = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        self.seen.append(((time.perf_counter() - self._started) * 1000, statement, parameters))


def explain_slowest(engine, statements: list, requests: int, out) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the slowest statement (to `out`); its summary line."""
    ms, statement, parameters = max(statements, key=lambda s: s[0])
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = [row[0] for row in cursor.fetchall()]
    out.write(f"-- {ms:.1f} ms\n{_shorter(statement)}\n{_shorter(repr(parameters))}\n"
              + "\n".join(_shorter(line) for line in plan) + "\n\n")
    scans = sorted({line.split(" on ")[1].split()[0] for line in plan if "Seq Scan on" in line})
    return (f"{ms:6.1f} ms, {len(statements) / requests:.0f} statements a request"
            + (f", seq scan of {', '.join(scans)}" if scans else ""))


def _shorter(text: str, most: int = 600) -> str:
    """A long IN (...) list cut short for the reader."""
    return text if len(text) <= most else f"{text[:most]}… ({len(text):,} characters)"


QUIET_PAGES = ("Workflows tab", "Runs tab", "Runs tab, failed, 7 days", "Runs tab, one workflow", "health view",
               "API: list workflows", "API: list runs", "run page")


def report(client, engine, statements: Statements, pages: list, out, team: str) -> None:
    """Each page's figures and its slowest statement, a line each."""
    for name, path, headers in pages:
        measure(client, path, headers, repeat=0)  # templates compiled, statements cached
        statements.seen.clear()
        times = measure(client, path, headers)
        first, median, p95, most = figures(times)
        summary = explain_slowest(engine, statements.seen, len(times), out) if statements.seen else "no statement"
        goal = GOALS_MS.get(name, 100 if not name.startswith("raw") else None)
        mark = "" if goal is None else ("ok" if p95 <= goal else "OVER")
        print(f"{team:6} {name:36} {first:7.1f} {median:7.1f} {p95:7.1f} {most:7.1f} {mark:>5}  {summary}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="measure the database seeded before")
    args = parser.parse_args()
    from webapp import create_app
    from webapp.extensions import db
    app = create_app({"WTF_CSRF_ENABLED": False})
    if not args.keep:
        make_database()
        t = time.monotonic()
        ids = seed(app, args.runs)
        subprocess.run(["su", "postgres", "-c", f"psql -d {DATABASE} -qc 'VACUUM ANALYZE'"], check=True)
        print(f"seeded {WORKFLOWS + QUIET_WORKFLOWS:,} workflows, {args.runs + QUIET_RUNS + 1:,} runs, "
              f"{(args.runs + QUIET_RUNS) * LINES_PER_RUN + BIG_RUN_LINES:,} lines in {time.monotonic() - t:.0f} s")
        IDS.write_text(json.dumps(ids))
    else:
        ids = json.loads(IDS.read_text())
    with app.app_context():
        engine = db.engine
    statements = Statements(engine)
    print(f"{'team':6} {'page':36} {'first':>7} {'median':>7} {'p95':>7} {'max':>7} {'goal':>5}  slowest statement "
          f"(EXPLAIN in {EXPLAINED.relative_to(ROOT)})")
    with EXPLAINED.open("w") as out:
        busy, quiet = ids["busy"], ids["quiet"]
        report(signed_in_client(app, busy["email"], PASSWORD), engine, statements,
               page_list(busy) + big_run_pages(busy), out, "busy")
        report(signed_in_client(app, quiet["email"], PASSWORD), engine, statements,
               [p for p in page_list(quiet) if p[0] in QUIET_PAGES], out, "quiet")

if __name__ == "__main__":
    main()
