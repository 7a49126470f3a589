"""A host that can be cut off from the database and Redis: a network namespace (the second
engine's) joined to this machine by a veth pair. Inside it, 127.0.0.1:5432 and 127.0.0.1:6379 are
sent over the veth (DNAT) to forwarders on this machine's side, so a worker there uses the very
addresses every other process uses (one installation), and `cut()` drops that traffic inside the
namespace: connections hang, as in a real partition, until `heal()`."""
from __future__ import annotations

import subprocess

from tcp_forward import forward

PORTS = {5432: 15432, 6379: 16379}  # service port -> the forwarder's port on this machine's side


def join(netns: str, host_if: str, ns_if: str, near: str, far: str) -> None:
    """A veth pair between this machine (`near`/30) and the namespace `netns` (`far`)."""
    for cmd in (["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
                ["ip", "link", "set", ns_if, "netns", netns],
                ["ip", "addr", "add", f"{near}/30", "dev", host_if],
                ["ip", "link", "set", host_if, "up"],
                ["ip", "netns", "exec", netns, "ip", "addr", "add", f"{far}/30", "dev", ns_if],
                ["ip", "netns", "exec", netns, "ip", "link", "set", ns_if, "up"]):
        subprocess.run(cmd, check=True, capture_output=True)


class Partition:
    def __init__(self, netns: str, index: int):
        self.netns = netns
        self.host_if, self.ns_if = f"wfp{index}h", f"wfp{index}n"
        self.near, self.far = f"10.213.{index}.1", f"10.213.{index}.2"
        self.servers = []

    @property
    def prefix(self) -> tuple[str, ...]:
        """Run a command inside the namespace (nsenter: `ip netns exec` would remount /sys)."""
        return ("nsenter", f"--net=/var/run/netns/{self.netns}")

    def _ns(self, *cmd: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.netns, *cmd], check=True, capture_output=True)

    def open(self) -> "Partition":
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)  # a leftover of a killed run
        join(self.netns, self.host_if, self.ns_if, self.near, self.far)
        self._ns("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")
        for port, via in PORTS.items():
            self._ns("iptables", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1", "-p", "tcp", "--dport", str(port),
                     "-j", "DNAT", "--to-destination", f"{self.near}:{via}")
            self.servers.append(forward((self.near, via), ("127.0.0.1", port)))
        self._ns("iptables", "-t", "nat", "-A", "POSTROUTING", "-d", self.near, "-j", "MASQUERADE")
        return self

    def cut(self) -> None:
        self._ns("iptables", "-I", "OUTPUT", "-d", self.near, "-j", "DROP")

    def heal(self) -> None:
        self._ns("iptables", "-D", "OUTPUT", "-d", self.near, "-j", "DROP")

    def close(self) -> None:
        for server in self.servers:
            server.close()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        for port, via in PORTS.items():
            subprocess.run(["ip", "netns", "exec", self.netns, "iptables", "-t", "nat", "-D", "OUTPUT", "-d",
                            "127.0.0.1", "-p", "tcp", "--dport", str(port), "-j", "DNAT", "--to-destination",
                            f"{self.near}:{via}"], capture_output=True)
        subprocess.run(["ip", "netns", "exec", self.netns, "iptables", "-t", "nat", "-D", "POSTROUTING", "-d",
                        self.near, "-j", "MASQUERADE"], capture_output=True)
