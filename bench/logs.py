"""Log capture under a flood: 50 MiB of short lines, captured byte-exact (the cap set above it),
worker RSS sampled throughout, capture rate against `docker logs` of the same output.
Each round runs the flood through the product, then through the engine alone (`docker run -d`,
`docker logs`), so both see the same machine at the same time; the database's growth is read from
its page count. Usage: .venv/bin/python bench/logs.py [rounds, default 3]"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime

from stack import IMAGE, Stack

LINE = "flood-0123456789-abcdefghijklmnopqrstuvwxyz"  # 44 chars + newline
TOTAL_LINES = (50 * 1024 * 1024) // (len(LINE) + 1)
SCRIPT = f"yes {LINE} | head -n {TOTAL_LINES}"


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout.split("\n")
    children: dict[int, list[int]] = {}
    for row in out:
        if row.strip():
            p, pp = map(int, row.split())
            children.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def database_bytes(path: str) -> int:
    """The database's logical size (pages in use, the WAL's included), read from outside."""
    with sqlite3.connect(path) as conn:
        pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "freelist_count", "page_size"))
    return (pages - free) * size


def docker_logs_seconds() -> float:
    """The engine alone: the same flood by `docker run -d`, then `docker logs` of it, timed."""
    cid = subprocess.run(["docker", "run", "-d", IMAGE, "sh", "-c", SCRIPT], capture_output=True, text=True,
                         check=True).stdout.strip()
    subprocess.run(["docker", "wait", cid], capture_output=True, check=True)
    t = time.monotonic()
    with open(os.devnull, "wb") as null:
        subprocess.run(["docker", "logs", cid], stdout=null, stderr=null, check=True)
    took = time.monotonic() - t
    subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    return took


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    expected = hashlib.sha256((LINE + "\n").encode() * TOTAL_LINES).digest()
    mib = (len(LINE) + 1) * TOTAL_LINES / 1024 / 1024
    env = {"LOG_CAP_BYTES": str(64 * 1024 * 1024), "LOG_CAP_LINES": str(2_000_000)}
    with Stack(slots=1, redis_db=10, extra_env=env) as stack:
        worker = stack.procs[1]
        peak = {"rss": 0.0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                for pid in descendants(worker.pid):
                    peak["rss"] = max(peak["rss"], rss_mib(pid))
                time.sleep(0.1)
        threading.Thread(target=sample, daemon=True).start()
        wf = stack.create_workflow(command=["sh", "-c", SCRIPT], timeoutSec=1800)
        ours, engine, growth = [], [], []
        for i in range(rounds):  # interleaved: ours, then the engine alone, each round
            before = database_bytes(f"{stack.tmp}/db.sqlite")
            run = stack.wait_terminal(stack.trigger(wf)["id"], every=0.5, limit=1800)
            assert run["status"] == "succeeded", run
            growth.append(database_bytes(f"{stack.tmp}/db.sqlite") - before)
            text = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {stack.key}",
                                   f"{stack.base}/api/workflows/{stack.team}/workflows/runs/{run['id']}/logs"
                                   "?format=text"], capture_output=True, check=True).stdout
            assert hashlib.sha256(text).digest() == expected, f"round {i}: the stored log is not byte-exact"
            ours.append((datetime.fromisoformat(run["finishedAt"][:-1])
                         - datetime.fromisoformat(run["startedAt"][:-1])).total_seconds())
            engine.append(docker_logs_seconds())
            print(f"round {i + 1}: ours {ours[-1]:.2f} s ({mib / ours[-1]:.1f} MiB/s), docker logs {engine[-1]:.2f} s "
                  f"({mib / engine[-1]:.1f} MiB/s), database grew {growth[-1] / 1024 / 1024:.1f} MiB")
        stop.set()
    ours_s, engine_s = statistics.median(ours), statistics.median(engine)
    print(f"flood of {mib:.1f} MiB in {TOTAL_LINES} lines, {rounds} interleaved rounds, every log byte-exact")
    print(f"capture, container start to run end: median {ours_s:.2f} s ({mib / ours_s:.1f} MiB/s)")
    print(f"docker logs of the same output: median {engine_s:.2f} s ({mib / engine_s:.1f} MiB/s)")
    print(f"capture rate / docker logs rate: {engine_s / ours_s:.2f}x (goal >= 1.0)")
    print(f"database growth per run: {statistics.median(growth) / 1024 / 1024:.1f} MiB, "
          f"{statistics.median(growth) / 1024 / 1024 / mib:.2f}x the captured bytes (goal < 1.5)")
    print(f"worker peak RSS (largest process of the pool): {peak['rss']:.0f} MiB (goal < 200)")


if __name__ == "__main__":
    main()
