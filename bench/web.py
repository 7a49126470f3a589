"""The web under load (issue 29, goal 8): the API's list and run routes hit by 50 concurrent
keep-alive clients, measured from outside with ApacheBench (`ab -k -c 50`), on PostgreSQL.

The stack is `make run`'s web process (gunicorn's gevent workers, WEB_WORKERS of them) with one team of 20
workflows and 200 finished runs; each route is read N times by 50 clients, and ab's own figures
(requests/s, p50, p99, failures, non-2xx) are printed. Goal: >= 1,000 requests/s, p99 <= 100 ms.
Usage: .venv/bin/python bench/web.py [--requests N] [--workers W]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import time

from stack import Stack, fresh_database

ROUTES = {
    "workflows list": "/api/projects/{team}/{project}/workflows",
    "runs list": "/api/workflows/{team}/workflows/{wf}/runs",
    "run": "/api/workflows/{team}/workflows/runs/{run}",
}


def ab(url: str, key: str, requests: int, clients: int = 50) -> dict:
    """ApacheBench's figures for `requests` GETs of `url` by `clients` keep-alive clients."""
    out = subprocess.run(["ab", "-q", "-k", "-c", str(clients), "-n", str(requests),
                          "-H", f"Authorization: Bearer {key}", url], check=True, capture_output=True, text=True).stdout

    def number(pattern: str) -> float:
        found = re.search(pattern, out, re.M)
        return float(found.group(1)) if found else 0.0
    return {"rps": number(r"^Requests per second:\s+([\d.]+)"), "p50": number(r"^\s+50%\s+(\d+)"),
            "p99": number(r"^\s+99%\s+(\d+)"), "failed": number(r"^Failed requests:\s+(\d+)"),
            "non2xx": number(r"^Non-2xx responses:\s+(\d+)"),
            "why": " ".join(re.findall(r"\((Connect: \d+, Receive: \d+, Length: \d+, Exceptions: \d+)\)", out)),
            "seconds": number(r"^Time taken for tests:\s+([\d.]+)")}


def seed(stack: Stack) -> dict:
    """20 workflows, 10 finished runs each (made by the worker), ids of one workflow and one run."""
    wfs = [stack.create_workflow(name=f"web-{i}", command=["true"]) for i in range(20)]
    runs = [stack.trigger(wf)["id"] for wf in wfs for _ in range(10)]
    for run in runs:
        stack.wait_terminal(run, every=0.05)
    return {"wf": wfs[0], "run": runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    url = fresh_database("wf_bench_web")
    env = {"WEB_WORKERS": str(args.workers), "TRIGGER_RATE_LIMIT": "1000 per minute"}
    with Stack(slots=4, database_url=url, extra_env=env) as stack:
        ids = dict(seed(stack), team=stack.team, project=stack.project)
        print(f"web: {args.workers} gunicorn processes (gevent); ab -k -c 50 -n {args.requests}")
        for name, path in ROUTES.items():
            ab(stack.base + path.format(**ids), stack.key, 500)  # warm: connections, caches
            time.sleep(1)
            got = ab(stack.base + path.format(**ids), stack.key, args.requests)
            print(f"{name:15} {got['rps']:7.0f} req/s  p50 {got['p50']:4.0f} ms  p99 {got['p99']:4.0f} ms  "
                  f"failed {got['failed']:.0f}  non-2xx {got['non2xx']:.0f}")


if __name__ == "__main__":
    main()
