"""Runs at once on one host (issue 29, goal 1): N long runs (`sleep`, a line a minute) running on one
worker host, and what the product's own processes cost meanwhile, on PostgreSQL.

Measured: the proportional set size (PSS, /proc/<pid>/smaps_rollup) of every process of the
stack (web, scheduler, the worker's supervisor, keeper and slot processes) summed; their CPU over
an idle minute; and, with them all running, how long a new manual run takes from its trigger to
`running` over the API. Goal: 300 runs, PSS < 1.5 GiB, < 5 % of one core, a new run within 1 s.
Usage: .venv/bin/python bench/perhost.py [--runs N] [--per-process K] [--idle SEC]
(WORKER_SLOTS is N + 4, so that the new run finds a free slot; RUNS_PER_PROCESS is K.)
"""
from __future__ import annotations

import argparse
import os
import time

from schedule import app_for
from stack import Stack, cpu_seconds, fresh_database, pss_mib, spread, sweep_passes, tree

LONG = ["sh", "-c", "while true; do echo still here; sleep 60; done"]


def started(run: dict) -> bool:
    return run["status"] == "running" and bool(run.get("startedAt"))


def start_runs(stack: Stack, count: int) -> list[str]:
    wf = stack.create_workflow(name="long", command=LONG, timeoutSec=7200)
    runs = [stack.trigger(wf)["id"] for _ in range(count)]
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if all(started(stack.run(r)) for r in runs):
            return runs
        time.sleep(5)
    raise TimeoutError("the runs did not all start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--per-process", type=int, default=1)
    parser.add_argument("--idle", type=float, default=60)
    args = parser.parse_args()
    env = {"RUNS_PER_PROCESS": str(args.per_process), "NOTIFY_SLOTS": "1",
           "TRIGGER_RATE_LIMIT": "100000 per minute", "TEAM_MAX_RUNNING": "10000", "TEAM_MAX_QUEUED": "10000"}
    with Stack(slots=args.runs + 4, database_url=fresh_database("wf_bench_perhost"), extra_env=env) as stack:
        print(f"bench/perhost.py: {args.runs} runs on one host, WORKER_SLOTS {args.runs + 4}, "
              f"RUNS_PER_PROCESS {args.per_process}, PostgreSQL")
        began = time.monotonic()
        runs = start_runs(stack, args.runs)
        print(f"  {len(runs)} runs running after {time.monotonic() - began:.0f} s")
        pids = tree([p.pid for p in stack.procs])
        cpu, at = {pid: cpu_seconds(pid) for pid in pids}, time.monotonic()
        time.sleep(args.idle)
        pids = tree([p.pid for p in stack.procs])
        elapsed = time.monotonic() - at
        shares = {pid: 100 * (cpu_seconds(pid) - cpu.get(pid, 0.0)) / elapsed for pid in pids}
        share = sum(shares.values())
        print(f"  the product's {len(pids)} processes: PSS {pss_mib(pids):.0f} MiB, "
              f"{share:.1f} % of one core over {args.idle:.0f} s idle")
        for pid in pids:
            threads = len(os.listdir(f"/proc/{pid}/task")) if os.path.exists(f"/proc/{pid}/task") else 0
            name = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[30:90] if threads else "?"
            print(f"    {pid:>7} {pss_mib([pid]):6.0f} MiB {shares[pid]:5.1f} % {threads:4} threads  {name}")
        quick = stack.create_workflow(name="quick", command=["sleep", "5"])
        triggered = time.monotonic()
        run = stack.trigger(quick)["id"]
        while not started(stack.run(run)):
            time.sleep(0.01)
        print(f"  a new manual run: its container started {time.monotonic() - triggered:.2f} s after its trigger")
        spread(f"with {len(runs)} runs running, one sweep pass", sweep_passes(app_for(stack)))
        for run_id in runs:
            stack.call("POST", f"/api/workflows/{stack.team}/workflows/runs/{run_id}/cancel")


if __name__ == "__main__":
    main()
