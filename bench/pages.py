"""Server-side time of every dashboard page (and the API lists, and /metrics) with 1,000 workflows
and 100,000 runs in the database (one a minute: the last week holds about 10,000). In-process (Flask's test client): the figure is the server's own time.
Usage: .venv/bin/python bench/pages.py"""
from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.mkdtemp(prefix='bench-pages-')}/db.sqlite")
from webapp.config import local_redis_url  # noqa: E402

os.environ.setdefault("REDIS_URL", local_redis_url(5))

WORKFLOWS, RUNS_PER_WORKFLOW, REPEAT = 1000, 100, 15


def insert_workflows(team, project, count: int, **over) -> None:
    """`count` workflows job-0000… of `project` in one insert, a third each on `*/5 * * * *`, on
    `0 3 * * *` and on no schedule; `over` sets other columns."""
    from webapp.extensions import db
    from webapp.models import Workflow
    from webapp.models.base import new_public_id
    now = datetime.utcnow()
    db.session.execute(Workflow.__table__.insert(), [
        dict(dict(public_id=new_public_id("wf_"), team_id=team.id, project_id=project.id,
                  environment_id=project.production.id, name=f"job-{i:04d}", image="workflows.local/busybox:1",
                  command=["sh", "-c", "echo hi"], env={"A": "1"},
                  schedule=("*/5 * * * *", "0 3 * * *", None)[i % 3], timezone="UTC", concurrency_policy="allow",
                  timeout_sec=600, max_retries=1, retry_backoff_sec=5, next_run_at=now + timedelta(minutes=5),
                  created_at=now, updated_at=now), **over)
        for i in range(count)])


def seed(app) -> dict:
    from flask_migrate import upgrade
    from sqlalchemy import text

    from webapp.extensions import db
    from webapp.models import Run, RunLogBlock, Workflow
    from webapp.models.base import new_public_id
    from webapp.services.access import Principal
    from webapp.services.keys import create_key
    from webapp.services.teams import create_user
    with app.app_context():
        upgrade()
        user, team, project = create_user("pages@example.test", "pages-password", "pages")
        now = datetime.utcnow()
        insert_workflows(team, project, WORKFLOWS, env={"A": "1", "API_TOKEN": "x"})
        ids = [w for (w,) in db.session.query(Workflow.id).order_by(Workflow.id)]
        batch = []
        for n in range(WORKFLOWS * RUNS_PER_WORKFLOW):
            wf_id = ids[n % WORKFLOWS]
            t = now - timedelta(minutes=WORKFLOWS * RUNS_PER_WORKFLOW - n)
            status = random.choice(["succeeded"] * 8 + ["failed", "timed_out"])
            batch.append(dict(public_id=new_public_id("run_"), team_id=team.id, workflow_id=wf_id, trigger="schedule",
                              attempt=1, status=status, exit_code=0 if status == "succeeded" else 1, env={"A": "1"},
                              image="workflows.local/busybox:1", command=None, timeout_sec=600, queued_at=t, due_at=t,
                              scheduled_for=t - timedelta(milliseconds=40),
                              started_at=t, finished_at=t + timedelta(seconds=2), duration_ms=2000, enqueued_at=t,
                              stdout_bytes=0, stderr_bytes=0, log_bytes=0, log_dropped_bytes=0))
            if len(batch) == 10000:
                db.session.execute(Run.__table__.insert(), batch)
                batch = []
        # what the migration's backfill (and then every terminal transition) keeps in run_counts
        db.session.execute(text("INSERT INTO run_counts (workflow_id, status, \"trigger\", n) SELECT workflow_id, "
                                "status, \"trigger\", count(*) FROM runs GROUP BY workflow_id, status, \"trigger\""))
        db.session.commit()
        wf = db.session.query(Workflow).order_by(Workflow.id.desc()).first()
        run = db.session.query(Run).filter_by(workflow_id=wf.id).order_by(Run.id.desc()).first()
        db.session.execute(RunLogBlock.__table__.insert(), [  # a slow writer's log: a block a line
            dict(run_id=run.id, first_seq=i, last_seq=i, stream="stdout", text=f"line {i}", ts=now)
            for i in range(2000)])
        db.session.commit()
        key = create_key(Principal.operator({team.id}), team.id, "admin", "live")[1]
        return {"team": team.id, "project": project.id, "wf": wf.public_id, "run": run.public_id, "key": key}


def page_list(ids: dict) -> list[tuple[str, str, dict]]:
    """(name, path, headers) of every page measured, for the seeded ids."""
    tid, pid, wf, run = ids["team"], ids["project"], ids["wf"], ids["run"]
    api = {"Authorization": f"Bearer {ids['key']}"}
    return [
        ("Workflows tab", f"/teams/{tid}/projects/{pid}/workflows", {}),
        ("workflow page", f"/teams/{tid}/workflows/{wf}", {}),
        ("run page", f"/runs/{run}", {}),
        ("raw log download", f"/runs/{run}/log.txt", {}),
        ("new workflow form", f"/teams/{tid}/projects/{pid}/workflows/new", {}),
        ("edit workflow form", f"/teams/{tid}/workflows/{wf}/edit", {}),
        ("schedule preview", "/schedule-preview?schedule=*/5+*+*+*+*", {}),
        ("project", f"/teams/{tid}/projects/{pid}/settings", {}),
        ("registries", f"/teams/{tid}/projects/{pid}/registry-credentials", {}),
        ("notifications", f"/teams/{tid}/notifications", {}),
        ("API keys", f"/teams/{tid}/api-keys", {}),
        ("Runs tab", f"/teams/{tid}/projects/{pid}/runs", {}),
        ("Runs tab, failed, 7 days", f"/teams/{tid}/projects/{pid}/runs?status=failed&range=7d", {}),
        ("Runs tab, one workflow", f"/teams/{tid}/projects/{pid}/runs?workflow={wf}", {}),
        ("Workflows tab, search", f"/teams/{tid}/projects/{pid}/workflows?q=job-09", {}),
        ("Workflows tab, scheduled", f"/teams/{tid}/projects/{pid}/workflows?show=scheduled", {}),
        ("health view", f"/teams/{tid}/projects/{pid}/health", {}),
        ("/metrics", "/metrics", {}),
        ("API: list workflows", f"/api/projects/{tid}/{pid}/workflows", api),
        ("API: list runs", f"/api/workflows/{tid}/workflows/{wf}/runs?limit=100", api),
        ("API: run logs", f"/api/workflows/{tid}/workflows/runs/{run}/logs", api),
    ]


def measure(client, path: str, headers: dict, repeat: int = REPEAT) -> list[float]:
    """Milliseconds of the first request of `path` and of `repeat` more, each body read whole."""
    times = []
    for _ in range(repeat + 1):
        t = time.perf_counter()
        r = client.get(path, headers=headers)
        r.get_data()  # a streamed body (log.txt) is read whole, as a browser would
        times.append((time.perf_counter() - t) * 1000)
        r.close()
        assert r.status_code == 200, (path, r.status_code)
    return times


def figures(times: list[float]) -> tuple[float, float, float, float]:
    """(first, median, p95, max) of measure()'s list: the first apart, the rest together."""
    first, warm = times[0], sorted(times[1:])
    return first, statistics.median(warm), warm[max(0, round(len(warm) * 0.95) - 1)], max(warm)


def signed_in_client(app, email: str, password: str):
    """A test client with a session, once the heap is settled as the web process settles it."""
    from webapp.heap import settle_heap
    settle_heap()  # as the web process does once gunicorn has loaded the app (gunicorn.conf.py)
    client = app.test_client()
    client.post("/login", data={"email": email, "password": password})
    return client


def main() -> None:
    from webapp import create_app
    app = create_app({"WTF_CSRF_ENABLED": False})
    t = time.monotonic()
    ids = seed(app)
    print(f"seeded {WORKFLOWS} workflows and {WORKFLOWS * RUNS_PER_WORKFLOW} runs in {time.monotonic() - t:.0f} s")
    client = signed_in_client(app, "pages@example.test", "pages-password")
    print(f"{'page':28} {'first':>8} {'median':>8} {'p95':>8} {'max':>8}  "
          f"(ms; first = cold templates, then {REPEAT} requests)")
    for name, path, headers in page_list(ids):
        first, median, p95, most = figures(measure(client, path, headers))
        print(f"{name:28} {first:8.1f} {median:8.1f} {p95:8.1f} {most:8.1f}")

if __name__ == "__main__":
    main()
