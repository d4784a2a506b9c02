"""A small emulated network: one namespace per host, joined by a bridge, each uplink shaped.

    hub namespace:  br0 10.77.0.1/24  (the signaling server listens here)
      |-- veth --  bot namespace 1: eth0 10.77.0.11/24, egress shaped (tc tbf [+ netem])
      |-- veth --  bot namespace 2: eth0 10.77.0.12/24
      ...

Nothing leaves the namespaces this module made; `Lab.close()` deletes them all,
and a Lab is a context manager so that happens even when a run fails.
Needs root (CAP_NET_ADMIN) and iproute2.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import dataclass, field

CLONE_NEWNET = 0x40000000
SUBNET = "10.77.0"
HUB_ADDRESS = f"{SUBNET}.1"
QUEUE_MS = 200  # tbf queue: what a home router buffers before it drops


class LabError(RuntimeError):
    """The network could not be built (no root, no iproute2, a kernel without a feature)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _tc(namespace: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", namespace, "tc", *args], capture_output=True, text=True)


def check_can_build() -> None:
    """Raise LabError saying what is missing to build namespaces here."""
    if os.geteuid() != 0:
        raise LabError("needs root to create network namespaces and shape them with tc: run it with sudo")
    if not shutil.which("ip") or not shutil.which("tc"):
        raise LabError("needs iproute2 (the ip and tc commands): apt-get install iproute2")


NO_NETEM = ("this kernel has no netem qdisc (sch_netem): --loss and --delay need it; "
            "uplink limits (tbf) work without it")


def has_netem() -> bool | None:
    """Whether tc can add a netem qdisc on this kernel; None when it cannot tell (not root, no tools).

    Tried on the loopback of a throwaway network namespace (`unshare --net`), which
    goes away with the probe: nothing is built and nothing is left.
    """
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("tc"):
        return None
    done = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                          capture_output=True, text=True)
    if done.returncode == 0:
        return True
    return False if "qdisc kind is unknown" in done.stderr else None


def check_netem() -> None:
    """Raise LabError when this kernel certainly has no netem (for --loss and --delay)."""
    if has_netem() is False:
        raise LabError(NO_NETEM)


def enter(namespace: str) -> None:
    """Move the calling thread into `namespace` (call it before any other thread starts)."""
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if hasattr(os, "setns"):  # Python 3.12+
            os.setns(fd, CLONE_NEWNET)
        elif ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({namespace})")
    finally:
        os.close(fd)


def shaping(mbit: float | None, loss_pct: float = 0.0, delay_ms: float = 0.0) -> list[list[str]]:
    """The tc commands (after `tc`) that shape eth0's egress to `mbit` (None: no limit), with optional netem."""
    commands = [["qdisc", "del", "dev", "eth0", "root"]]
    if mbit is None:
        return commands
    rate = int(mbit * 1_000_000)
    burst = max(3000, rate // 8 // 100)  # 10 ms at the line rate, at least two full packets
    tbf = ["tbf", "rate", f"{rate}bit", "burst", str(burst), "latency", f"{QUEUE_MS}ms"]
    if loss_pct or delay_ms:
        netem = ["netem"]
        if delay_ms:
            netem += ["delay", f"{delay_ms}ms"]
        if loss_pct:
            netem += ["loss", f"{loss_pct}%"]
        commands += [["qdisc", "add", "dev", "eth0", "root", "handle", "1:", *netem],
                     ["qdisc", "add", "dev", "eth0", "parent", "1:", "handle", "2:", *tbf]]
    else:
        commands.append(["qdisc", "add", "dev", "eth0", "root", *tbf])
    return commands


@dataclass
class Lab:
    """A hub namespace with a bridge, and `hosts` namespaces hanging off it."""

    hosts: int
    prefix: str = field(default_factory=lambda: f"p2pc{os.getpid()}")
    namespaces: list[str] = field(default_factory=list)  # every namespace made so far

    @property
    def hub(self) -> str:
        return f"{self.prefix}-hub"

    def host(self, n: int) -> str:
        """The namespace of host n (1-based)."""
        return f"{self.prefix}-h{n}"

    @staticmethod
    def address(n: int) -> str:
        return f"{SUBNET}.{10 + n}"

    def __enter__(self) -> "Lab":
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        check_can_build()
        self._add(self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for n in range(1, self.hosts + 1):
            host = self.host(n)
            self._add(host)
            _ip("link", "add", f"h{n}", "netns", self.hub, "type", "veth", "peer", "name", "eth0", "netns", host)
            _ip("-n", self.hub, "link", "set", f"h{n}", "master", "br0", "up")
            _ip("-n", host, "addr", "add", f"{self.address(n)}/24", "dev", "eth0")
            _ip("-n", host, "link", "set", "eth0", "up")
            _ip("-n", host, "link", "set", "lo", "up")

    def _add(self, namespace: str) -> None:
        _ip("netns", "add", namespace)
        self.namespaces.append(namespace)

    def shape(self, n: int, mbit: float | None, loss_pct: float = 0.0, delay_ms: float = 0.0) -> None:
        """Limit host n's uplink (what it sends) to `mbit` (None: no limit), with optional loss and delay."""
        for i, command in enumerate(shaping(mbit, loss_pct, delay_ms)):
            done = _tc(self.host(n), *command)
            if done.returncode and i > 0:  # deleting a qdisc that is not there is fine
                if "qdisc kind is unknown" in done.stderr and "netem" in command:
                    raise LabError(NO_NETEM)
                raise LabError(f"tc {' '.join(command)}: {done.stderr.strip()}")

    def close(self) -> None:
        """Delete every namespace made (their veth pairs and bridge go with them)."""
        for namespace in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self.namespaces.clear()
