"""Scheduler figures, in one run:
1. start lateness (the container's first instruction - scheduledFor), p50/p99 over 60 fires of a
   6-field `*/2` schedule;
2. 1,000 workflows due on the same minute: time until every one is enqueued;
3. scheduler CPU per minute while 10,000 workflows are scheduled and none is due.
Usage: .venv/bin/python bench/schedule.py [fires, default 60]"""
from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

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


def bulk_workflows(stack: Stack, count: int, schedule: str, next_run_at: datetime, **over) -> None:
    """`count` `allow` workflows on `schedule`, due at `next_run_at`; `over` sets other columns."""
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
                     max_retries=0, retry_backoff_sec=5, next_run_at=next_run_at, created_at=now, updated_at=now,
                     **over)
                for i in range(count)]
        db.session.execute(Workflow.__table__.insert(), rows)
        db.session.commit()


def boot_clock_offset() -> float:
    """CLOCK_BOOTTIME minus the wall clock, now: a wall-clock instant plus this is its boot time."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) - time.time()


def lateness(fires: int, lead: float) -> None:
    """Each fire's container prints the kernel's boot clock (/proc/uptime, not namespaced, 10 ms
    steps) as its very first action; lateness = that - the boot clock at scheduledFor: when the
    process really ran, not when the engine was asked to start it. `lead`: SCHEDULE_LEAD_SEC (0:
    fired at the instant, the way before runs were prepared ahead)."""
    with Stack(slots=4, redis_db=9, extra_env={"SCHEDULE_LEAD_SEC": str(lead)}) as stack:
        wf = stack.create_workflow(command=["cat", "/proc/uptime"], schedule="*/2 * * * * *", timeoutSec=60)
        time.sleep(2 * fires + 1)
        stack.call("PATCH", f"/api/workflows/{stack.team}/workflows/{wf}", {"schedule": None})
        time.sleep(4)
        offset = boot_clock_offset()
        runs = stack.call("GET", f"/api/workflows/{stack.team}/workflows/{wf}/runs?limit=100")[1]["runs"]
        late, api_late = [], []
        for r in runs:
            if r["status"] != "succeeded":
                continue
            logs = stack.call("GET", f"/api/workflows/{stack.team}/workflows/runs/{r['id']}/logs")[1]["lines"]
            uptime = float(logs[0]["text"].split()[0])
            instant = ts(r["scheduledFor"]).replace(tzinfo=timezone.utc).timestamp() + offset
            late.append(uptime - instant)
            api_late.append((ts(r["startedAt"]) - ts(r["scheduledFor"])).total_seconds())
        late.sort()
        p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
        print(f"SCHEDULE_LEAD_SEC={lead:g}: start lateness, the container's first instruction - scheduledFor, "
              f"over {len(late)} fires: "
              f"p50 {statistics.median(late) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, min {late[0] * 1000:.0f} ms, "
              f"max {late[-1] * 1000:.0f} ms (clock steps of 10 ms)")
        print(f"startedAt - scheduledFor (the engine's start call returned): p50 "
              f"{statistics.median(api_late) * 1000:.0f} ms, max {max(api_late) * 1000:.0f} ms")


def engine_start_floor(samples: int = 15) -> None:
    """What is left once a run is prepared ahead: from the engine's start call to the process's
    first instruction (the same /proc/uptime stamp), for a created container with the options a
    run gets (the runs network, cap-drop, limits), with `network: none`, and plain `docker run`
    defaults; interleaved."""
    import docker

    from jobs import engine
    app = app_for(Stack(slots=1, redis_db=6))
    api = docker.from_env().api
    with app.app_context():
        kinds = {"run options (runs network)": engine.host_config(api, None, None, "bridge"),
                 "run options, network none": engine.host_config(api, None, None, "none"),
                 "engine defaults (docker0 bridge)": api.create_host_config()}
    took: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(samples):
        for kind, host_config in kinds.items():
            cid = api.create_container(IMAGE, ["cat", "/proc/uptime"], host_config=host_config)["Id"]
            before = time.clock_gettime(time.CLOCK_BOOTTIME)
            api.start(cid)
            api.wait(cid)
            took[kind].append(float(api.logs(cid).split()[0]) - before)
            api.remove_container(cid, force=True)
    for kind, values in took.items():
        values.sort()
        print(f"engine start call to first instruction, {kind}: p50 {statistics.median(values) * 1000:.0f} ms, "
              f"min {values[0] * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms ({samples} starts)")


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
        print(f"1,000 workflows due at the same instant: all enqueued {(last - due).total_seconds():+.2f} s from it "
              "(negative: ahead of it, SCHEDULE_LEAD_SEC)")
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
    fires = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    lateness(fires, 0.0)
    lateness(fires, 2.0)
    engine_start_floor()
    thousand_due()
    idle_cpu()
