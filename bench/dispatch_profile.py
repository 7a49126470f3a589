"""Where a single run's time goes, ours against `docker run --rm`, read from outside: the engine's
own event stream (create, start, die, destroy, with nanosecond times) against the client's clock.

For each of N interleaved pairs it prints the phases' medians:
  ours: POST trigger -> container create -> start -> die -> terminal status seen over the API
        (and destroy, which is off the critical path: the status is written first);
  CLI:  process spawn -> create -> start -> die -> destroy -> process exit.
Usage: .venv/bin/python bench/dispatch_profile.py [N]
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time

from stack import IMAGE, Stack


class Events:
    """`docker events` for containers, kept by container id: {action: epoch seconds}."""

    def __init__(self):
        self.by_id: dict[str, dict[str, float]] = {}
        self.proc = subprocess.Popen(["docker", "events", "--format", "{{json .}}", "--filter", "type=container"],
                                     stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            e = json.loads(line)
            self.by_id.setdefault(e["id"], {})[e["Action"]] = e["timeNano"] / 1e9
            self.by_id[e["id"]]["labels"] = e.get("Actor", {}).get("Attributes", {})

    def of_run(self, run_id: str) -> dict:
        """The events of our run's container, once its `destroy` has arrived."""
        return self._wait(lambda e: e.get("labels", {}).get("workflows.run") == run_id)

    def first_since(self, since: float) -> dict:
        """The events of the first container created after `since`, once its `destroy` has arrived."""
        return self._wait(lambda e: e.get("create", 0) >= since)

    def _wait(self, match, limit: float = 30) -> dict:
        """The earliest-created matching container's events, once they include its `destroy`."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            found = sorted((e for e in list(self.by_id.values()) if match(e)), key=lambda e: e.get("create", 0))
            if found and "destroy" in found[0]:
                return found[0]
            time.sleep(0.01)
        raise RuntimeError("the engine's events did not arrive")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    events = Events()  # subscribed long before the first measured run: the stack's start-up takes seconds
    ours_rows, cli_rows = [], []
    with Stack(slots=4, extra_env={"TRIGGER_RATE_LIMIT": "1000 per minute"}) as stack:
        wf_id = stack.create_workflow(command=["true"])
        stack.wait_terminal(stack.trigger(wf_id)["id"])  # warm
        subprocess.run(["docker", "run", "--rm", IMAGE, "true"], check=True, capture_output=True)
        for _ in range(n):
            t0 = time.time()
            run = stack.trigger(wf_id)
            t1 = time.time()
            done = stack.wait_terminal(run["id"])
            t_seen = time.time()
            assert done["status"] == "succeeded", done
            e = events.of_run(run["id"])
            ours_rows.append({"trigger answered": t1 - t0, "to create": e["create"] - t0,
                              "create to start": e["start"] - e["create"], "start to die": e["die"] - e["start"],
                              "die to status seen": t_seen - e["die"], "total": t_seen - t0,
                              "(die to destroy)": e["destroy"] - e["die"]})
            t0 = time.time()
            subprocess.run(["docker", "run", "--rm", IMAGE, "true"], check=True, capture_output=True)
            t_exit = time.time()
            e = events.first_since(t0)
            cli_rows.append({"to create": e["create"] - t0, "create to start": e["start"] - e["create"],
                             "start to die": e["die"] - e["start"], "die to exit": t_exit - e["die"],
                             "total": t_exit - t0, "(die to destroy)": e["destroy"] - e["die"]})
    events.proc.terminate()
    for name, rows in (("workflows", ours_rows), ("docker run --rm", cli_rows)):
        print(f"{name}, median of {n} (ms): " + ", ".join(
            f"{k} {statistics.median(r[k] for r in rows) * 1000:.0f}" for k in rows[0]))


if __name__ == "__main__":
    main()
