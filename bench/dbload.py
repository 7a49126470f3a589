"""The database's load per running run, counted by PostgreSQL itself (pg_stat_statements).

Three phases on one stack (web, one worker host of SLOTS slots, scheduler) on PostgreSQL, each
PHASE_SEC long, the statement counters reset at its start:
  idle:    no run at all: what the processes cost by themselves (heartbeats, sweeps);
  quiet:   SLOTS runs of `sleep` that print nothing;
  writing: one run printing about 100 lines a second.
A running run's cost is its phase's rate less the idle rate (divided by SLOTS for the quiet runs).
Statements are counted twice: all of them, and without the transaction control (BEGIN, COMMIT,
ROLLBACK) that every transaction adds.

    .venv/bin/python bench/dbload.py [SLOTS] [PHASE_SEC]
"""
from __future__ import annotations

import sys
import time

from stack import Stack, fresh_database, psql

DATABASE = "wf_bench_dbload"
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")
WRITER = ["sh", "-c", "i=0; while true; do echo \"line $i of a run that writes a hundred lines a second\"; "
          "i=$((i+1)); usleep 10000; done"]


def counts() -> tuple[int, int, list[tuple[int, str]]]:
    """(all calls, calls without transaction control, the busiest statements) in the database."""
    rows = psql("select calls, regexp_replace(left(query, 110), '\\s+', ' ', 'g') from pg_stat_statements "
                f"where dbid = (select oid from pg_database where datname = '{DATABASE}') order by calls desc",
                DATABASE)
    parsed = [(int(calls), query) for calls, _, query in (line.partition("|") for line in rows.splitlines() if line)]
    total = sum(calls for calls, _ in parsed)
    work = sum(calls for calls, query in parsed if query.strip().upper() not in CONTROL)
    return total, work, parsed[:8]


def phase(name: str, seconds: float) -> tuple[float, float]:
    psql("select pg_stat_statements_reset()", DATABASE)
    started = time.monotonic()
    time.sleep(seconds)
    total, work, top = counts()
    elapsed = time.monotonic() - started
    print(f"  {name}: {total / elapsed:.2f} statements/s, {work / elapsed:.2f} without BEGIN/COMMIT "
          f"over {elapsed:.0f} s; busiest:")
    for calls, query in top:
        print(f"    {calls / elapsed:7.2f}/s  {query}")
    return total / elapsed, work / elapsed


def stored_lines() -> int:
    return int(psql("select coalesce(sum(last_seq - first_seq + 1), 0) from run_log_blocks", DATABASE))


def running(stack: Stack, run_ids: list[str]) -> bool:
    return all(stack.run(r)["status"] == "running" and stack.run(r).get("startedAt") for r in run_ids)


def main() -> None:
    slots = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60
    url = fresh_database(DATABASE)
    with Stack(slots=slots, redis_db=10, database_url=url,
               extra_env={"TRIGGER_RATE_LIMIT": "100000 per minute", "TEAM_MAX_RUNNING": "1000"}) as stack:
        print(f"bench/dbload.py: {slots} slots, phases of {seconds:.0f} s, PostgreSQL with pg_stat_statements")
        idle = phase("idle", seconds)
        quiet_wf = stack.create_workflow(name="quiet", command=["sleep", "3600"], timeoutSec=3600)
        quiet = [stack.trigger(quiet_wf)["id"] for _ in range(slots)]
        while not running(stack, quiet):
            time.sleep(0.5)
        time.sleep(2)  # past the starts' own writes
        busy = phase(f"quiet ({slots} runs printing nothing)", seconds)
        for run_id in quiet:
            stack.call("POST", f"/api/workflows/{stack.team}/workflows/runs/{run_id}/cancel")
        for run_id in quiet:
            stack.wait_terminal(run_id, every=0.2)
        writer_wf = stack.create_workflow(name="writer", command=WRITER, timeoutSec=3600)
        writer = stack.trigger(writer_wf)["id"]
        while not running(stack, [writer]):
            time.sleep(0.5)
        time.sleep(2)
        before = stored_lines()
        writing = phase("writing (1 run, ~100 lines/s)", seconds)
        lines_per_sec = (stored_lines() - before) / seconds
        stack.call("POST", f"/api/workflows/{stack.team}/workflows/runs/{writer}/cancel")
        stack.wait_terminal(writer, every=0.2)
    per_quiet = [(b - i) / slots for b, i in zip(busy, idle)]
    per_writer = [w - i for w, i in zip(writing, idle)]
    print(f"per quiet running run: {per_quiet[0]:.3f} statements/s ({per_quiet[1]:.3f} without "
          f"BEGIN/COMMIT); goal <= 0.2")
    print(f"per run writing {lines_per_sec:.0f} lines/s: {per_writer[0]:.2f} statements/s "
          f"({per_writer[1]:.2f} without BEGIN/COMMIT); goal <= 2")


if __name__ == "__main__":
    main()
