"""Exponential backoff, written once: a run's automatic retry and a notification's next attempt."""
from __future__ import annotations

import random


def backoff(base: float, attempt: int, *, cap: float, jitter: float = 0.0) -> float:
    """base, 2*base, 4*base ... for attempt 1, 2, 3 ..., capped at `cap`, spread by +-`jitter`
    (a fraction) so that many retries made at once do not come back at once; base 0 is at once."""
    if base <= 0:
        return 0.0
    delay = min(cap, base * 2 ** (attempt - 1))
    return min(cap, delay * random.uniform(1 - jitter, 1 + jitter)) if jitter else delay
