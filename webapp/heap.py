"""The garbage collector of a long-lived process, once it has loaded the app."""
from __future__ import annotations

import gc


def settle_heap() -> None:
    """Call once a long-lived process has loaded the app: its ~130k startup objects move to the
    garbage collector's permanent generation, so a full collection scans only what requests and jobs
    make (one took ~65 ms of a request's time before, microseconds after)."""
    gc.collect()
    gc.freeze()
