"""A second real Docker engine for the tests, in a network namespace of its own, so that it is a
separate host as far as the network goes: its own data root, exec root, pid file and socket, and
its own bridge inside the namespace. Started with nsenter (`ip netns exec` would remount /sys and
dockerd would stop: "Devices cgroup isn't mounted"); never with `--bridge none` in the host's
namespace, which deletes the first engine's docker0. Needs root, as the whole suite does."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import docker

from conftest import ROOT, TEST_IMAGE
from jobs.engine import RUNS_NETWORK


class SecondEngine:
    def __init__(self, name: str):
        self.name = name
        self.netns = Path(f"/var/run/netns/{name}")
        self.data_root = Path(f"/var/lib/{name}")
        self.exec_root = Path(f"/run/{name}")
        self.pidfile = Path(f"/run/{name}.pid")
        self.socket = Path(f"/run/{name}.sock")
        self.url = f"unix://{self.socket}"
        self.log = ROOT / "var" / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def api(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.url, timeout=60)

    def start(self, timeout: float = 90, fresh: bool = False) -> "SecondEngine":
        """Until the engine answers and has the test image (copied from the first engine); `fresh`:
        without any container or runs network, as a new engine."""
        self._kill_leftover()
        if not self.netns.exists():
            subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"], check=True)
        for d in (self.data_root, self.exec_root, self.log.parent):
            d.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={self.netns}", "dockerd", "--data-root", str(self.data_root),
             "--exec-root", str(self.exec_root), "--pidfile", str(self.pidfile), "-H", self.url],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the second engine exited with {self.proc.returncode}:\n{self._log_tail()}")
            try:
                if self.api.ping():
                    break
            except Exception:
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"the second engine did not answer within {timeout}s:\n{self._log_tail()}")
            time.sleep(0.1)
        if fresh:
            self._forget_runs_network()
        if not self.api.images(name=TEST_IMAGE):
            save = subprocess.Popen(["docker", "save", TEST_IMAGE], stdout=subprocess.PIPE)
            subprocess.run(["docker", "-H", self.url, "load", "-q"], stdin=save.stdout, check=True,
                           capture_output=True)
            assert save.wait() == 0
        return self

    def _forget_runs_network(self) -> None:
        """Each pass starts as a new engine would, without the runs network: the first runs of
        several slots then race to make it (a race that failed runs on a new machine)."""
        for c in self.api.containers(all=True):
            self.api.remove_container(c["Id"], force=True)
        for n in self.api.networks(names=[RUNS_NETWORK]):
            self.api.remove_network(n["Id"])

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, as a service manager stops it (it stops its containers first), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        """Stop it and remove its containers' traces and the namespace; the data root (images)
        stays for the next session."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                for c in self.api.containers(all=True):
                    self.api.remove_container(c["Id"], force=True)
            except Exception:
                pass
        self.stop()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def _kill_leftover(self) -> None:
        """An engine left running by an interrupted session is stopped before a new one starts."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""
