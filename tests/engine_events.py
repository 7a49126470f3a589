"""When each run container ran, from the engine's own event log: the overlap audit of the
exactly-once tests (no two attempts of one run may have a running container at once)."""
from __future__ import annotations

import time

from jobs.engine import LABEL_RUN


def intervals(api, since: float, run_ids: set[str]) -> list[tuple[str, float, float]]:
    """(run id, start, die) of every container of `run_ids` started on the engine of `api` since
    `since` (Unix time), with the engine's own timestamps; a container still running ends now."""
    until = time.time() + 1
    events = api.events(since=int(since) - 1, until=int(until), decode=True,
                        filters={"type": "container", "event": ["start", "die"]})
    started: dict[str, tuple[str, float]] = {}
    found = []
    for e in events:
        run_id = e.get("Actor", {}).get("Attributes", {}).get(LABEL_RUN)
        if run_id not in run_ids:
            continue
        at = e["timeNano"] / 1e9
        if e["Action"] == "start":
            started[e["Actor"]["ID"]] = (run_id, at)
        elif e["Actor"]["ID"] in started:
            run, began = started.pop(e["Actor"]["ID"])
            found.append((run, began, at))
    found += [(run, began, until) for run, began in started.values()]
    return sorted(found, key=lambda i: i[1])


def overlaps(spans: list[tuple[str, float, float]]) -> list[tuple]:
    """Pairs of spans that overlap in time (each span one container of one attempt)."""
    spans = sorted(spans, key=lambda s: s[1])
    return [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if b[1] < a[2]]
