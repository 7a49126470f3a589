"""Private networks beside this machine, as a fleet's Redis or PostgreSQL host and a cloud's
metadata service would be: a network namespace joined by a veth pair, holding a private, a CGNAT,
a link-local and an opened (RUNS_EGRESS_ALLOW) address, each answering TCP 7000 with a banner."""
from __future__ import annotations

import subprocess
import sys
import time

from partition import join

BANNER = "private-banner"
PORT = 7000
SERVER = f"""
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {PORT})); s.listen(64)
while True:
    c, _ = s.accept()
    c.sendall(b"{BANNER}\\n"); c.close()
"""


class PrivateNet:
    def __init__(self, index: int):
        self.netns = f"wf-private-{index}"
        self.host_if, self.ns_if = f"wfq{index}h", f"wfq{index}n"
        self.near, self.far = f"10.214.{index}.1", f"10.214.{index}.2"
        self.addresses = {
            "private": self.far,
            "private-192": f"192.168.214.{index}",
            "cgnat": f"100.64.214.{index}",
            "metadata": "169.254.169.254" if index == 1 else f"169.254.169.{240 + index}",
            "opened": f"10.214.9.{index}",  # inside the tests' RUNS_EGRESS_ALLOW
        }
        self.server = None

    def _ns(self, *cmd: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.netns, *cmd], check=True, capture_output=True)

    def open(self) -> "PrivateNet":
        self.close()  # a leftover of a killed run
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)
        join(self.netns, self.host_if, self.ns_if, self.near, self.far)
        self._ns("ip", "link", "set", "lo", "up")
        self._ns("ip", "route", "add", "default", "via", self.near)
        for name, address in self.addresses.items():
            if address != self.far:
                self._ns("ip", "addr", "add", f"{address}/32", "dev", self.ns_if)
                subprocess.run(["ip", "route", "replace", f"{address}/32", "via", self.far], check=True,
                               capture_output=True)
        self.server = subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, "-c", SERVER])
        self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = subprocess.run(["ip", "netns", "exec", self.netns, "ss", "-Hltn", f"sport = :{PORT}"],
                                 capture_output=True, text=True).stdout
            if out.strip():
                return
            assert self.server.poll() is None, "the banner server exited"
            time.sleep(0.05)
        raise AssertionError("the banner server did not listen")

    def close(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait()
            self.server = None
        for address in self.addresses.values():
            subprocess.run(["ip", "route", "del", f"{address}/32"], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
