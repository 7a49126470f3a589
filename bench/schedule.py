"""Scheduler figures, in one run:
1. start lateness (container startedAt - scheduledFor), p50/p99 over at least 30 fires;
2. 1,000 workflows due on the same minute: time until every one is enqueued;
3. scheduler CPU per minute while 10,000 workflows are scheduled and none is due.
Usage: .venv/bin/python bench/schedule.py"""
from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import datetime, timedelta

from stack import IMAGE, ROOT, Stack

sys.path.insert(0, str(ROOT))


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def app_for(stack: Stack):
    os.environ.update({k: v for k, v in stack.env.items() if k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")})
    from webapp import create_app
    return create_app()


def bulk_workflows(stack: Stack, count: int, schedule: str, next_run_at: datetime) -> None:
    app = app_for(stack)
    with app.app_context():
        from webapp.extensions import db
        from webapp.models import Project, Workflow
        from webapp.models.base import new_public_id, utcnow
        project = db.session.get(Project, stack.project)
        now = utcnow()
        rows = [dict(public_id=new_public_id("wf_"), team_id=stack.team, project_id=project.id,
                     environment_id=project.production.id, name=f"bulk-{i}", image=IMAGE, command=["true"],
                     env={}, schedule=schedule, timezone="UTC", concurrency_policy="allow", timeout_sec=600,
                     max_retries=0, retry_backoff_sec=5, next_run_at=next_run_at, created_at=now, updated_at=now)
                for i in range(count)]
        db.session.execute(Workflow.__table__.insert(), rows)
        db.session.commit()


def lateness() -> None:
    with Stack(slots=4, redis_db=9) as stack:
        wf = stack.create_workflow(command=["true"], schedule="* * * * * *", timeoutSec=60)
        time.sleep(34)
        stack.call("PATCH", f"/api/workflows/{stack.team}/workflows/{wf}", {"schedule": None})
        time.sleep(3)
        runs = stack.call("GET", f"/api/workflows/{stack.team}/workflows/{wf}/runs?limit=100")[1]["runs"]
        late = sorted((ts(r["startedAt"]) - ts(r["scheduledFor"])).total_seconds() for r in runs if r["startedAt"])
        p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
        print(f"start lateness over {len(late)} fires: p50 {statistics.median(late) * 1000:.0f} ms, "
              f"p99 {p99 * 1000:.0f} ms, max {late[-1] * 1000:.0f} ms")


def thousand_due() -> None:
    stack = Stack(slots=1, redis_db=8)
    stack.start(processes=())
    due = (datetime.utcnow() + timedelta(seconds=8)).replace(microsecond=0)
    bulk_workflows(stack, 1000, "* * * * *", due)
    stack.start_more = None
    import subprocess
    proc = subprocess.Popen([".venv/bin/flask", "--app", "wsgi", "scheduler"], cwd=ROOT, env=stack.env,
                            start_new_session=True)
    stack.procs.append(proc)
    app = app_for(stack)
    try:
        with app.app_context():
            from sqlalchemy import func
            from webapp.extensions import db
            from webapp.models import Run
            while True:
                db.session.commit()
                done, last = db.session.query(func.count(Run.id), func.max(Run.enqueued_at)).filter(
                    Run.enqueued_at.is_not(None)).one()
                if done >= 1000:
                    break
                time.sleep(0.2)
        print(f"1,000 workflows due at the same instant: all enqueued {(last - due).total_seconds():.2f} s after it")
    finally:
        stack.stop()


def idle_cpu() -> None:
    stack = Stack(slots=1, redis_db=7)
    stack.start(processes=())
    bulk_workflows(stack, 10000, "0 0 1 1 *", datetime(2099, 1, 1))
    import subprocess
    proc = subprocess.Popen([".venv/bin/flask", "--app", "wsgi", "scheduler"], cwd=ROOT, env=stack.env,
                            start_new_session=True)
    stack.procs.append(proc)
    try:
        time.sleep(5)
        before = cpu_seconds(proc.pid)
        time.sleep(60)
        used = cpu_seconds(proc.pid) - before
        print(f"scheduler CPU with 10,000 scheduled workflows, none due: {used:.2f} CPU-s per minute "
              f"({used / 60 * 100:.1f}% of one core)")
    finally:
        stack.stop()


if __name__ == "__main__":
    lateness()
    thousand_due()
    idle_cpu()
