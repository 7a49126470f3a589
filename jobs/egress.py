"""Where a run container may send packets: the internet, never this machine, a private network
(where a fleet's Redis and PostgreSQL live), link-local (cloud metadata), CGNAT, multicast or
reserved addresses. Rules in the engine host's iptables: a chain of ours, WORKFLOWS-EGRESS,
jumped to from Docker's DOCKER-USER chain for what enters from our runs bridge, and an INPUT rule
for this machine's own addresses. RUNS_EGRESS_ALLOW (CIDRs) opens internal services on purpose.

The worker installs them for its own engine, at start and before each run's network is used;
they are written with one iptables-restore (atomic: no moment without them). Only an engine on
this machine can be ruled from here: for a remote DOCKER_HOST the operator installs the same rules
on the engine host (`flask egress-rules` prints them) and says so with RUNS_EGRESS_RULES=external.
"""
from __future__ import annotations

import ipaddress
import logging
import subprocess
from pathlib import Path

from flask import current_app

from .machine import one_at_a_time

log = logging.getLogger(__name__)

CHAIN = "WORKFLOWS-EGRESS"
# Not the internet: this host and its neighbours, private networks, link-local (the cloud metadata
# service, 169.254.169.254), CGNAT, benchmarking, multicast and reserved ranges.
BLOCKED = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
           "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4")


class EgressUnguarded(RuntimeError):
    """The rules could not be installed: run containers could reach private networks."""


def allowed() -> list[str]:
    """RUNS_EGRESS_ALLOW as normalised CIDRs (config validates them)."""
    return [str(ipaddress.ip_network(c.strip(), strict=False))
            for c in current_app.config["RUNS_EGRESS_ALLOW"].split(",") if c.strip()]


def rules(allow: list[str]) -> str:
    """The iptables-restore input (filter table, applied without flushing anything but our chain)."""
    lines = ["*filter", f":{CHAIN} - [0:0]"]
    lines += [f"-A {CHAIN} -d {cidr} -j RETURN" for cidr in allow]
    for server in nameservers():  # the engine's DNS forwards a container's queries from its namespace
        lines += [f"-A {CHAIN} -d {server}/32 -p {proto} -m {proto} --dport 53 -j RETURN" for proto in ("udp", "tcp")]
    for cidr in BLOCKED:
        lines.append(f"-A {CHAIN} -d {cidr} -p tcp -j REJECT --reject-with tcp-reset")
        lines.append(f"-A {CHAIN} -d {cidr} -j REJECT --reject-with icmp-net-prohibited")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def nameservers() -> list[str]:
    """This machine's IPv4 resolvers (the engine's, for containers on a user-defined network)."""
    found = []
    for path in ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    address = ipaddress.ip_address(parts[1])
                except ValueError:
                    continue
                if address.version == 4 and not address.is_loopback and str(address) not in found:
                    found.append(str(address))
    return found


def local_engine() -> bool:
    host = current_app.config["DOCKER_HOST"]
    return not host or host.startswith("unix://")


def install(bridge: str) -> None:
    """Install (or bring up to date) the rules for `bridge`; EgressUnguarded if they cannot be."""
    if not local_engine():
        if current_app.config["RUNS_EGRESS_RULES"] == "external":
            return
        raise EgressUnguarded(f"the engine ({current_app.config['DOCKER_HOST']}) is not on this machine: install "
                              "the egress rules on its host (flask egress-rules) and set RUNS_EGRESS_RULES=external")
    with one_at_a_time("egress"):  # the slots of a machine install one at a time
        try:
            _apply(bridge, rules(allowed()))
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", None) or str(e)
            raise EgressUnguarded(f"iptables: {str(detail).strip()[:300]}") from None


def _apply(bridge: str, restore: str) -> None:
    current = subprocess.run(["iptables", "-S", CHAIN], capture_output=True, text=True)
    wanted = [line for line in restore.splitlines() if line.startswith("-A ")]
    if current.returncode != 0 or [line for line in current.stdout.splitlines() if line.startswith("-A ")] != wanted:
        subprocess.run(["iptables-restore", "--noflush"], input=restore, text=True, capture_output=True, check=True)
    _ensure(["DOCKER-USER", "-i", bridge, "-j", CHAIN])
    _ensure(["INPUT", "-i", bridge, "-j", "REJECT"])  # this machine itself, on any of its addresses


def _ensure(rule: list[str]) -> None:
    if subprocess.run(["iptables", "-C", *rule], capture_output=True).returncode != 0:
        if rule[0] == "DOCKER-USER":
            subprocess.run(["iptables", "-N", "DOCKER-USER"], capture_output=True)  # the engine makes it too
        subprocess.run(["iptables", "-I", *rule], capture_output=True, text=True, check=True)


def guard(bridge: str) -> str | None:
    """Install the rules; None when installed, else why not. In production a worker that cannot
    install them runs no container (the caller refuses the run); elsewhere it is said and allowed."""
    try:
        install(bridge)
        return None
    except EgressUnguarded as e:
        if current_app.config["ENV_NAME"] == "production":
            raise
        log.warning("run containers are not kept from private networks: %s (README, security model)", e)
        return str(e)
