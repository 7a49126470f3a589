"""Live-log latency: from the moment a container writes a line to the moment a websocket viewer
receives it. Goal (issue: run execution): within 0.2 s.

The container stamps each line with the kernel's boot clock (/proc/uptime, 10 ms resolution, not
namespaced), the viewer compares it with its own CLOCK_BOOTTIME on receipt. Several viewers watch
the same run at once, one of them joining midway (it must get the backlog, then the live tail).
Usage: .venv/bin/python bench/live.py [LINES] [VIEWERS]
"""
from __future__ import annotations

import json
import statistics
import sys
import threading
import time

from simple_websocket import Client

from stack import Stack

SCRIPT = ("for i in $(seq 1 {lines}); do read up idle < /proc/uptime; echo \"$i $up\"; "
          "echo \"err-$i\" >&2; sleep 0.2; done")


def watch(url: str, headers: dict, out: list, joined: threading.Event | None = None) -> None:
    ws = Client.connect(url, headers=headers)
    if joined:
        joined.set()
    try:
        while True:
            data = ws.receive(timeout=60)
            if data is None:
                break
            now = time.clock_gettime(time.CLOCK_BOOTTIME)
            frame = json.loads(data)
            if frame.get("event") == "end":
                break
            out.append((now, frame))
    finally:
        try:
            ws.close()
        except Exception:
            pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    viewers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    with Stack(slots=2) as stack:
        wf = stack.create_workflow(command=["sh", "-c", SCRIPT.format(lines=lines)])
        run = stack.trigger(wf)
        url = stack.base.replace("http", "ws") + f"/api/workflows/{stack.team}/workflows/runs/{run['id']}/logs/stream"
        headers = {"Authorization": f"Bearer {stack.key}"}
        got = [[] for _ in range(viewers)]
        threads = [threading.Thread(target=watch, args=(url, headers, got[i])) for i in range(viewers - 1)]
        for t in threads:
            t.start()
        time.sleep(lines * 0.2 / 2)  # the last viewer joins halfway through the run
        late = threading.Thread(target=watch, args=(url, headers, got[-1]))
        late.start()
        for t in threads + [late]:
            t.join(lines * 0.2 + 60)
        done = stack.wait_terminal(run["id"])

    latencies, complete = [], True
    for i, frames in enumerate(got):
        stdout = [f["text"] for _, f in frames if f.get("stream") == "stdout"]
        stderr = [f["text"] for _, f in frames if f.get("stream") == "stderr"]
        complete &= [int(t.split()[0]) for t in stdout] == list(range(1, lines + 1))
        complete &= stderr == [f"err-{n}" for n in range(1, lines + 1)]
        if i < viewers - 1:  # the late viewer's backlog lines are old by design
            latencies += [now - float(f["text"].split()[1]) for now, f in frames if f.get("stream") == "stdout"]
    ms = [x * 1000 for x in latencies]
    print(f"run {done['status']}; {viewers} viewers (one joined midway), {lines} stdout + {lines} stderr lines each")
    print(f"every viewer got every line once, in order: {complete}")
    print(f"write-to-viewer latency over {len(ms)} lines: p50 {statistics.median(ms):.0f} ms, "
          f"p95 {percentile(ms, 0.95):.0f} ms, max {max(ms):.0f} ms (clock resolution 10 ms)")


if __name__ == "__main__":
    main()
