"""What the processes of one machine do one at a time (a lock file under var/): the slot processes of
a worker host share its engine and its iptables, and each would otherwise race the others there."""
from __future__ import annotations

import contextlib
import fcntl

from webapp.config import ROOT


@contextlib.contextmanager
def one_at_a_time(name: str):
    """Held by one process of this machine at a time (var/NAME.lock); let go when its holder ends."""
    path = ROOT / "var" / f"{name}.lock"
    path.parent.mkdir(exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
