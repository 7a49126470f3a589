"""The viewers of bench/viewers.py: many live-log websockets in one process, on gevent (a thread
each would measure this client, not the server). Reads a JSON list of [url, api key] from the
file named by argv[1] and opens one socket for each; prints `open N refused M` once all are
answered, then on each line of stdin: `mark` forgets what was received so far, `report` prints
a JSON object (frames each viewer received since the mark, delivery latencies, sockets still
open). A frame's text is the container's CLOCK_BOOTTIME when it printed it (/proc/uptime), so
the latency is the receipt's CLOCK_BOOTTIME minus it (10 ms resolution).
"""
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.fileobject import FileObject  # noqa: E402
from simple_websocket import Client  # noqa: E402


class Viewer:
    def __init__(self, url: str, key: str):
        self.url, self.key = url, key
        self.ws = None
        self.frames = 0
        self.latencies: list[float] = []
        self.refused = ""

    def run(self) -> None:
        try:
            self.ws = Client.connect(self.url, headers={"Authorization": f"Bearer {self.key}"})
        except Exception as e:
            self.refused = str(e)[:200]
            return
        while True:
            try:
                data = self.ws.receive(timeout=120)
            except Exception:
                return
            if data is None:
                continue
            now = time.clock_gettime(time.CLOCK_BOOTTIME)
            frame = json.loads(data)
            if frame.get("event") == "end":
                return
            self.frames += 1
            try:
                self.latencies.append(now - float(frame["text"]))
            except (KeyError, ValueError):
                pass

    def mark(self) -> None:
        self.frames, self.latencies = 0, []


def main() -> None:
    targets = json.load(open(sys.argv[1]))
    viewers = [Viewer(url, key) for url, key in targets]
    for i, viewer in enumerate(viewers):
        gevent.spawn(viewer.run)
        if i % 50 == 49:
            gevent.sleep(0.05)  # a crowd arriving over a few seconds, not one SYN flood
    while sum(1 for v in viewers if v.refused or (v.ws is not None and v.ws.connected)) < len(viewers):
        gevent.sleep(0.2)
    refused = [v.refused for v in viewers if v.refused]
    print(f"open {len(viewers) - len(refused)} refused {len(refused)} {refused[:1]}", flush=True)
    stdin = FileObject(sys.stdin)
    for line in stdin:
        if line.strip() == "mark":
            for viewer in viewers:
                viewer.mark()
        elif line.strip() == "report":
            lat = sorted(x for v in viewers for x in v.latencies)
            print(json.dumps({"frames": [v.frames for v in viewers if not v.refused],
                              "open": sum(1 for v in viewers if v.ws is not None and v.ws.connected),
                              "latencies": len(lat), "p50": lat[len(lat) // 2] if lat else None,
                              "p99": lat[int(len(lat) * 0.99)] if lat else None,
                              "max": lat[-1] if lat else None}), flush=True)


if __name__ == "__main__":
    main()
