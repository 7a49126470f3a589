"""Many worker hosts on one database (issue 29, goal 6): HOSTS `flask worker` processes, each with
its own WORKER_HOST and one run slot (no notification slot), on this machine's engine, beside one
web and one scheduler, on PostgreSQL with pg_stat_statements.

Measured, first with one host and then with all of them, for MINUTES (the statement counters
reset at the start of each phase):
  - the database's statements per second, and those that write heartbeats;
  - the Workers page as a signed-in member sees it (in this process, Flask's test client, no
    network), and one sweep pass (jobs/sweeper.sweep, as the scheduler runs it), 20 times each;
  - the scheduler's CPU.

    .venv/bin/python bench/hosts.py [HOSTS] [MINUTES]
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from stack import ROOT, Stack, cpu_seconds, fresh_database, psql, spread, sweep_passes

DATABASE = "wf_bench_hosts"
SAMPLES = 20


def statements(seconds: float) -> None:
    rows = psql("select calls, regexp_replace(left(query, 100), '\\s+', ' ', 'g') from pg_stat_statements "
                f"where dbid = (select oid from pg_database where datname = '{DATABASE}') order by calls desc",
                DATABASE)
    parsed = [(int(c), q) for c, _, q in (line.partition("|") for line in rows.splitlines() if line)]
    beats = sum(c for c, q in parsed if q.upper().startswith("UPDATE WORKER_PROCESSES"))
    print(f"    database: {sum(c for c, _ in parsed) / seconds:.1f} statements/s, of which heartbeat "
          f"updates {beats / seconds:.1f}/s; busiest:")
    for calls, query in parsed[:5]:
        print(f"      {calls / seconds:7.2f}/s  {query}")


def timings(app, client) -> None:
    page = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        answer = client.get("/workers")
        page.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.status_code
    spread("Workers page", page)
    spread("one sweep pass", sweep_passes(app, SAMPLES))


def phase(name: str, stack: Stack, scheduler: subprocess.Popen, app, client, minutes: float) -> None:
    print(f"  {name} ({int(psql('select count(distinct host) from worker_processes', DATABASE))} hosts "
          "in the database):")
    psql("select pg_stat_statements_reset()", DATABASE)
    cpu, started = cpu_seconds(scheduler.pid), time.monotonic()
    time.sleep(minutes * 60)
    elapsed = time.monotonic() - started
    statements(elapsed)
    print(f"    scheduler: {100 * (cpu_seconds(scheduler.pid) - cpu) / elapsed:.1f}% of a core")
    timings(app, client)


def start_hosts(stack: Stack, count: int) -> None:
    """`count` workers of one slot, each its own host; returns once every host beats."""
    env = dict(stack.env, WORKER_SLOTS="1", NOTIFY_SLOTS="0")
    for i in range(count):
        stack.procs.append(subprocess.Popen(
            [".venv/bin/flask", "--app", "wsgi", "worker"], cwd=ROOT, env=dict(env, WORKER_HOST=f"bench-host-{i:03d}"),
            start_new_session=True, stdout=open(f"{stack.tmp}/host-{i}.log", "w"), stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 60 + count * 5
    sql = "select count(distinct host) from worker_processes where last_seen_at > now() at time zone 'utc' - interval '5 seconds'"
    while int(psql(sql, DATABASE)) < count + 1:
        assert time.monotonic() < deadline, f"only {psql(sql, DATABASE).strip()} hosts beat"
        time.sleep(2)


def main() -> None:
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    minutes = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    url = fresh_database(DATABASE)
    with Stack(slots=1, database_url=url, extra_env={"NOTIFY_SLOTS": "1"}) as stack:
        os.environ.update(DATABASE_URL=url, REDIS_URL=stack.env["REDIS_URL"], SECRET_KEY=stack.env["SECRET_KEY"])
        from webapp import create_app
        from webapp.heap import settle_heap
        app = create_app({"WTF_CSRF_ENABLED": False})
        settle_heap()
        client = app.test_client()
        assert client.post("/login", data={"email": "bench@example.test", "password": "bench-password"}).status_code == 302
        scheduler = stack.procs[2]
        print(f"hosts: {hosts}, {minutes:g} minutes a phase, PostgreSQL")
        phase("one worker host", stack, scheduler, app, client, minutes)
        started = time.monotonic()
        start_hosts(stack, hosts)
        print(f"  {hosts} more hosts beating after {time.monotonic() - started:.0f} s")
        phase(f"{hosts + 1} worker hosts", stack, scheduler, app, client, minutes)


if __name__ == "__main__":
    main()
