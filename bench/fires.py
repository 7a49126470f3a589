"""Ten thousand schedules (issue 29, goal 3): 10,000 workflows firing every minute on PostgreSQL,
the scheduler's fire lag (the run row's `queued_at` − its instant) and its CPU.

The workflows are `allow` (the default) and in a worker pool no worker serves: each fire makes its
run row and hands it to the pool's queue, where it stays queued. What is measured is the
scheduler's own work for each fire (claim, run row, hand-over), not the engine's; 10,000
containers a minute on two cores would measure the engine instead (bench/dispatch.py does). The
team's queued-runs quota is raised to let the queue grow (TEAM_MAX_QUEUED).
Usage: .venv/bin/python bench/fires.py [workflows, default 10000] [minutes, default 3]
"""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta

from schedule import bulk_workflows, cpu_seconds
from stack import ROOT, Stack, fresh_database, psql

DATABASE = "wf_bench_fires"
POOL = "nowhere"


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    minutes = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    url = fresh_database(DATABASE)
    stack = Stack(slots=1, redis_db=9, database_url=url, extra_env={"TEAM_MAX_QUEUED": "1000000"})
    stack.start(processes=())
    try:
        first = (datetime.utcnow() + timedelta(minutes=1)).replace(second=0, microsecond=0)
        bulk_workflows(stack, count, "* * * * *", first, network="none", worker_pool=POOL)
        proc = subprocess.Popen([".venv/bin/flask", "--app", "wsgi", "scheduler"], cwd=ROOT, env=stack.env,
                                start_new_session=True)
        stack.procs.append(proc)
        end = first + timedelta(minutes=minutes)
        time.sleep(max(0.0, (first - datetime.utcnow()).total_seconds() - 5))
        cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(max(0.0, (end - datetime.utcnow()).total_seconds()))
        cpu = (cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - wall_before)
        time.sleep(15)  # the last minute's fires are made
        report(count, minutes, first, end, cpu)
    finally:
        stack.stop()


def report(count: int, minutes: int, first: datetime, end: datetime, cpu: float) -> None:
    window = f"scheduled_for >= '{first:%Y-%m-%d %H:%M:%S}' and scheduled_for < '{end:%Y-%m-%d %H:%M:%S}'"
    lag = "extract(epoch from queued_at - scheduled_for)"
    handed = "extract(epoch from enqueued_at - scheduled_for)"
    row = psql(f"select count(*), percentile_cont(0.5) within group (order by {lag}), "
               f"percentile_cont(0.99) within group (order by {lag}), max({lag}), "
               f"percentile_cont(0.99) within group (order by {handed}), max({handed}), "
               f"count(*) filter (where enqueued_at is null) from runs where {window}", DATABASE).strip().split("|")
    made, p50, p99, most, h99, hmax, unhanded = row
    missed = psql("select count(*) from events where kind = 'workflow.missed'", DATABASE).strip()
    print(f"{count:,} workflows every minute for {minutes} minutes (instants {first:%H:%M}–{end:%H:%M} UTC), "
          f"PostgreSQL, runs left queued in a pool no worker serves")
    print(f"  runs made: {int(made):,} of {count * minutes:,} due; workflow.missed events: {missed}")
    print(f"  fire lag (run row made - instant, negative: ahead, SCHEDULE_LEAD_SEC): p50 {float(p50):+.2f} s, "
          f"p99 {float(p99):+.2f} s, max {float(most):+.2f} s")
    print(f"  handed to the queue - instant: p99 {float(h99):+.2f} s, max {float(hmax):+.2f} s; never handed: {unhanded}")
    print(f"  scheduler CPU over the minutes: {cpu * 100:.1f}% of one core")


if __name__ == "__main__":
    main()
