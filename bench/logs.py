"""Log capture under a flood: 50 MiB of short lines, captured byte-exact (the cap set above it),
worker RSS sampled throughout, capture rate against `docker logs` of the same output.
Usage: .venv/bin/python bench/logs.py"""
from __future__ import annotations

import hashlib
import os
import subprocess
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


def main() -> None:
    expected = (LINE + "\n").encode() * TOTAL_LINES
    with Stack(slots=1, redis_db=10, extra_env={"LOG_CAP_BYTES": str(64 * 1024 * 1024)}) as stack:
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
        t = time.monotonic()
        run = stack.wait_terminal(stack.trigger(wf)["id"], every=0.5, limit=1800)
        wall = time.monotonic() - t
        stop.set()
        assert run["status"] == "succeeded", run
        text = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {stack.key}",
                               f"{stack.base}/api/workflows/{stack.team}/workflows/runs/{run['id']}/logs?format=text"],
                              capture_output=True, check=True).stdout
        exact = hashlib.sha256(text).digest() == hashlib.sha256(expected).digest()
        span = (datetime.fromisoformat(run["finishedAt"][:-1]) - datetime.fromisoformat(run["startedAt"][:-1])).total_seconds()
        mib = len(expected) / 1024 / 1024
        print(f"flood of {mib:.1f} MiB in {TOTAL_LINES} lines: captured byte-exact: {exact}; "
              f"stored {len(text) / 1024 / 1024:.1f} MiB")
        print(f"capture: container start to run end {span:.1f} s ({mib / span:.1f} MiB/s); trigger to terminal {wall:.1f} s")
        print(f"worker peak RSS (largest process of the pool): {peak['rss']:.0f} MiB")

    cid = subprocess.run(["docker", "run", "-d", IMAGE, "sh", "-c", SCRIPT], capture_output=True, text=True,
                         check=True).stdout.strip()
    subprocess.run(["docker", "wait", cid], capture_output=True, check=True)
    t = time.monotonic()
    with open(os.devnull, "wb") as null:
        subprocess.run(["docker", "logs", cid], stdout=null, stderr=null, check=True)
    took = time.monotonic() - t
    subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    print(f"docker logs of the same output: {took:.1f} s ({mib / took:.1f} MiB/s)")


if __name__ == "__main__":
    main()
