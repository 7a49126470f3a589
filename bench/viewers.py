"""A thousand live-log viewers (issue 29, goal 8, second half), on PostgreSQL.

Five teams, each with four runs printing a line a second (the container's boot clock, so that a
viewer can tell each line's delivery latency), and 200 viewers per team (WS_MAX_PER_TEAM and
WS_MAX_PER_PRINCIPAL 200: within their caps), 1,000 in all, on `make run`'s web (gunicorn's gevent
workers, WEB_WORKERS of them). The viewers live in one gevent process (bench/viewers_client.py).
Measured: the API's run route under `ab -k -c 50` before the viewers open and while they are
open; the web processes' CPU and PSS while the viewers watch; every viewer's lines and their
delivery latency. Goal: 1,000 viewers open at once, the API's p99 unchanged.
Usage: .venv/bin/python bench/viewers.py [--viewers N] [--teams T] [--requests R] [--workers W]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from stack import ROOT, Stack, cpu_seconds, fresh_database, pss_mib, tree
from web import ab

TICK = ["sh", "-c", "while true; do read up idle < /proc/uptime; echo \"$up\"; sleep 1; done"]
RUNS_PER_TEAM = 4


def start_team_runs(stack: Stack, team: int, project: int, key: str) -> list[str]:
    auth = {"Authorization": f"Bearer {key}"}
    runs = []
    for i in range(RUNS_PER_TEAM):
        status, wf = stack.call("POST", f"/api/projects/{team}/{project}/workflows",
                                {"projectId": project, "name": f"tick-{i}", "image": "workflows.local/busybox:1",
                                 "command": TICK, "timeoutSec": 3600}, auth)
        assert status == 201, wf
        status, run = stack.call("POST", f"/api/workflows/{team}/workflows/{wf['id']}/trigger", headers=auth)
        assert status == 202, run
        runs.append(run["id"])
    return runs


def wait_running(stack: Stack, team_runs: list[tuple[int, str, str]]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        states = [stack.call("GET", f"/api/workflows/{team}/workflows/runs/{run}",
                             headers={"Authorization": f"Bearer {key}"})[1]["status"] for team, run, key in team_runs]
        if all(s == "running" for s in states):
            return
        time.sleep(1)
    raise TimeoutError("the runs did not all start")


def web_cost(stack: Stack, seconds: float, client: int = 0) -> tuple[float, float, float]:
    """The web processes' share of one core over `seconds`, their PSS in MiB, and the viewers'
    process's share (it runs on the same two cores)."""
    pids = tree([stack.procs[0].pid])
    before, at = {pid: cpu_seconds(pid) for pid in pids + [client]}, time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - at
    share = sum(cpu_seconds(pid) - before[pid] for pid in pids) * 100 / elapsed
    return share, pss_mib(pids), (cpu_seconds(client) - before[client]) * 100 / elapsed if client else 0.0


def line(name: str, got: dict) -> str:
    return (f"  {name:28} {got['rps']:6.0f} req/s  p50 {got['p50']:4.0f} ms  p99 {got['p99']:4.0f} ms  "
            f"failed {got['failed']:.0f} {got['why']}  non-2xx {got['non2xx']:.0f}  ({got['seconds']:.1f} s)")


def ask(client: subprocess.Popen, what: str) -> dict:
    client.stdin.write(what + "\n")
    client.stdin.flush()
    return json.loads(client.stdout.readline()) if what == "report" else {}


def describe(report: dict, seconds: float) -> str:
    frames = report["frames"]
    return (f"{report['open']} open; lines a viewer received in {seconds:.0f} s: min {min(frames)}, "
            f"median {statistics.median(frames):.0f}, max {max(frames)}; delivery latency p50 "
            f"{report['p50'] * 1000:.0f} ms, p99 {report['p99'] * 1000:.0f} ms, max {report['max'] * 1000:.0f} ms "
            f"(10 ms resolution)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    per_team = args.viewers // args.teams
    env = {"WEB_WORKERS": str(args.workers), "WS_MAX_PER_TEAM": str(per_team), "WS_MAX_PER_PRINCIPAL": str(per_team),
           "WS_MAX_PER_PROCESS": str(args.viewers), "RUNS_PER_PROCESS": "10", "NOTIFY_SLOTS": "1",
           "TRIGGER_RATE_LIMIT": "1000 per minute"}
    slots = args.teams * RUNS_PER_TEAM
    with Stack(slots=slots, database_url=fresh_database("wf_bench_viewers"), extra_env=env) as stack:
        teams = [(stack.team, stack.project, stack.key)] + [stack.add_team(f"viewers{i}") for i in range(1, args.teams)]
        team_runs = [(team, run, key) for team, project, key in teams for run in start_team_runs(stack, team, project, key)]
        wait_running(stack, team_runs)
        print(f"bench/viewers.py: {len(team_runs)} runs printing a line a second in {args.teams} teams, "
              f"{args.workers} web processes (gevent), PostgreSQL; ab -k -c 50 -n {args.requests}")
        run_url = stack.base + f"/api/workflows/{stack.team}/workflows/runs/{team_runs[0][1]}"
        ab(run_url, stack.key, 500)
        before = ab(run_url, stack.key, args.requests)
        print(line("run route, no viewers", before))
        share, pss, _ = web_cost(stack, 20)
        print(f"  web, no viewers: {share:.1f} % of one core, PSS {pss:.0f} MiB")
        ws = stack.base.replace("http", "ws")
        targets = []
        for team, _, key in teams:  # a team's viewers spread over its runs
            runs = [run for owner, run, _ in team_runs if owner == team]
            targets += [[f"{ws}/api/workflows/{team}/workflows/runs/{runs[j % len(runs)]}/logs/stream", key]
                        for j in range(per_team)]
        spec = f"{stack.tmp}/viewers.json"
        json.dump(targets, open(spec, "w"))
        client = subprocess.Popen([sys.executable, str(ROOT / "bench/viewers_client.py"), spec], text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            opened = time.monotonic()
            print(f"  viewers: {client.stdout.readline().strip()} after {time.monotonic() - opened:.1f} s")
            time.sleep(5)
            ask(client, "mark")
            share, pss, theirs = web_cost(stack, 30, client.pid)
            print(f"  web, {args.viewers} viewers watching: {share:.1f} % of one core, PSS {pss:.0f} MiB "
                  f"(the viewers' own process: {theirs:.1f} %)")
            print(f"  viewers over those 30 s: {describe(ask(client, 'report'), 30)}")
            ask(client, "mark")
            began = time.monotonic()
            during = ab(run_url, stack.key, args.requests)
            print(line(f"run route, {args.viewers} viewers", during))
            print(f"  viewers during ab: {describe(ask(client, 'report'), time.monotonic() - began)}")
        finally:
            client.kill()
        for team, run, key in team_runs:
            stack.call("POST", f"/api/workflows/{team}/workflows/runs/{run}/cancel",
                       headers={"Authorization": f"Bearer {key}"})


if __name__ == "__main__":
    main()
