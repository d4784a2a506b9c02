"""A small emulated network: one namespace per host, joined by a bridge, each uplink shaped.

    hub namespace:  br0 10.77.0.1/24  (the signaling server listens here)
      |-- veth --  bot namespace 1: eth0 10.77.0.11/24, egress shaped (tc tbf [+ netem])
      |-- veth --  bot namespace 2: eth0 10.77.0.12/24
      ...

Added loss and delay (what a host sends) come from netem where the kernel has
it. Where it has not, loss is an nftables rule on the host's egress (`numgen
random`) and delay a delay line: the host's own packets into the lab subnet are
routed through a TUN device to a small process (p2pconf/delayline.py) that
writes them back after the delay, and the kernel forwards them out of eth0.

Nothing leaves the namespaces this module made; `Lab.close()` stops the delay
lines and deletes the namespaces (with their rules and devices), and a Lab is a
context manager so that happens even when a run fails.
Needs root (CAP_NET_ADMIN) and iproute2; without netem also nftables (loss)
and /dev/net/tun (delay).
"""

from __future__ import annotations

import ctypes
import os
import selectors
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

CLONE_NEWNET = 0x40000000
SUBNET = "10.77.0"
HUB_ADDRESS = f"{SUBNET}.1"
QUEUE_MS = 200  # tbf queue: what a home router buffers before it drops
TUN_DEVICE = "dly0"  # a host's delay line (no netem)
DELAY_TABLE = "77"  # the routing table that sends a host's own packets into it
NFT_TABLE = "p2pconf"  # a host's loss rule (no netem)
LOSS_MODULUS = 10_000  # nftables draws a number below this per packet: loss in steps of 0.01 %
READY_TIMEOUT_S = 10.0
DELAYLINE_MODULE = "p2pconf.delayline"


class LabError(RuntimeError):
    """The network could not be built (no root, no iproute2, a kernel without a feature)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _tc(namespace: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", namespace, "tc", *args], capture_output=True, text=True)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else ""


def _in(namespace: str, *command: str, input: str | None = None) -> None:
    """Run `command` inside `namespace`; LabError with its message when it fails."""
    done = subprocess.run(["ip", "netns", "exec", namespace, *command], input=input, capture_output=True, text=True)
    if done.returncode:
        raise LabError(f"{' '.join(command)}: {_last_line(done.stderr) or 'failed'}")


def check_can_build() -> None:
    """Raise LabError saying what is missing to build namespaces here."""
    if os.geteuid() != 0:
        raise LabError("needs root to create network namespaces and shape them with tc: run it with sudo")
    if not shutil.which("ip") or not shutil.which("tc"):
        raise LabError("needs iproute2 (the ip and tc commands): apt-get install iproute2")


NO_NETEM = "tc cannot add a netem qdisc (sch_netem) for --loss and --delay here"


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


def _probe(*command: str) -> subprocess.CompletedProcess:
    """Run `command` in a throwaway network namespace (gone with the probe)."""
    return subprocess.run(["unshare", "--net", *command], capture_output=True, text=True)


def impairment(loss_pct: float, delay_ms: float) -> str | None:
    """How this machine adds loss and delay: "netem", "nftables" (loss by nftables, delay by a
    delay line), or None when none is asked for. LabError, in one line, when it cannot.

    netem when the kernel has it (or the probe cannot tell: then a missing netem is
    reported when it is first used); otherwise each mechanism asked for is tried
    in a throwaway namespace first, so a run fails before anything is built.
    """
    if not loss_pct and not delay_ms:
        return None
    if has_netem() is not False:
        return "netem"
    if loss_pct:
        if not shutil.which("nft"):
            raise LabError("this kernel has no netem qdisc, so --loss needs nftables: apt-get install nftables")
        done = _probe("nft", "add", "table", "inet", "p2pconf_probe")
        if done.returncode:
            raise LabError(f"this kernel has no netem qdisc and nftables fails, so --loss cannot be added: "
                           f"{done.stderr.strip().splitlines()[0] if done.stderr.strip() else 'nft failed'}")
    if delay_ms:
        done = _probe("ip", "tuntap", "add", "dev", TUN_DEVICE, "mode", "tun")
        if done.returncode:
            raise LabError(f"this kernel has no netem qdisc and no TUN devices, so --delay cannot be added: "
                           f"{done.stderr.strip().splitlines()[0] if done.stderr.strip() else 'ip tuntap failed'}")
    return "nftables"


def loss_ruleset(loss_pct: float) -> str:
    """The nftables table (for `nft -f -` in a host namespace) that drops `loss_pct` % of what eth0 sends."""
    below = round(loss_pct * LOSS_MODULUS / 100)
    return (f"table inet {NFT_TABLE} {{\n"
            f"  chain loss {{\n"
            f"    type filter hook postrouting priority 0; policy accept;\n"
            f"    oifname \"eth0\" numgen random mod {LOSS_MODULUS} < {below} drop\n"
            f"  }}\n"
            f"}}\n")


def delay_setup(address: str) -> list[list[str]]:
    """The commands (inside a host namespace) that make the TUN device for its delay line.

    The host's own packets reach it through the rule delay_route() adds; what the
    delay line writes back comes in on the device and is forwarded out of eth0,
    which takes forwarding and accepting packets from the host's own address.
    """
    return [
        ["ip", "tuntap", "add", "dev", TUN_DEVICE, "mode", "tun"],
        ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
         f"net.ipv4.conf.{TUN_DEVICE}.rp_filter=0", f"net.ipv4.conf.{TUN_DEVICE}.accept_local=1",
         f"net.ipv6.conf.{TUN_DEVICE}.disable_ipv6=1"],
        ["ip", "link", "set", TUN_DEVICE, "up"],
        ["ip", "route", "add", f"{SUBNET}.0/24", "dev", TUN_DEVICE, "src", address, "table", DELAY_TABLE],
    ]


def delay_route(on: bool) -> list[str]:
    """Send the host's own packets (`iif lo`) through the delay line, or stop doing so."""
    return ["ip", "rule", "add" if on else "del", "iif", "lo", "lookup", DELAY_TABLE, "pref", "100"]


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


def shaping(mbit: float | None, loss_pct: float = 0.0, delay_ms: float = 0.0, netem: bool = True) -> list[list[str]]:
    """The tc commands (after `tc`) that shape eth0's egress to `mbit` (None: no limit), with optional netem.

    With netem=False the loss and delay are left to nftables and the delay line (Lab.shape).
    """
    commands = [["qdisc", "del", "dev", "eth0", "root"]]
    if mbit is None:
        return commands
    rate = int(mbit * 1_000_000)
    burst = max(3000, rate // 8 // 100)  # 10 ms at the line rate, at least two full packets
    tbf = ["tbf", "rate", f"{rate}bit", "burst", str(burst), "latency", f"{QUEUE_MS}ms"]
    if netem and (loss_pct or delay_ms):
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
    method: str | None = None  # how loss and delay are added (impairment()), found when first asked for
    impaired: dict[int, tuple[float, float]] = field(default_factory=dict)  # host: (loss, delay) without netem
    delaylines: dict[int, tuple[subprocess.Popen, float]] = field(default_factory=dict)  # host: its delay line, ms

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
        """Limit host n's uplink (what it sends) to `mbit` (None: no limit), with optional loss and delay.

        Loss and delay come with a limit only: with mbit None the host sends unhindered.
        """
        if mbit is not None and (loss_pct or delay_ms) and self.method is None:
            self.method = impairment(loss_pct, delay_ms)
        netem = self.method != "nftables"
        for i, command in enumerate(shaping(mbit, loss_pct, delay_ms, netem=netem)):
            done = _tc(self.host(n), *command)
            if done.returncode and i > 0:  # deleting a qdisc that is not there is fine
                if "qdisc kind is unknown" in done.stderr and "netem" in command:
                    raise LabError(NO_NETEM)
                raise LabError(f"tc {' '.join(command)}: {done.stderr.strip()}")
        if not netem:
            self._impair(n, *((loss_pct, delay_ms) if mbit is not None else (0.0, 0.0)))

    def _impair(self, n: int, loss_pct: float, delay_ms: float) -> None:
        """Without netem: host n's loss by an nftables rule, its delay by a delay line (p2pconf/delayline.py)."""
        host = self.host(n)
        loss_was, delay_was = self.impaired.get(n, (0.0, 0.0))
        if loss_pct != loss_was:
            if loss_was:
                _in(host, "nft", "delete", "table", "inet", NFT_TABLE)
            if loss_pct:
                _in(host, "nft", "-f", "-", input=loss_ruleset(loss_pct))
        if delay_ms != delay_was:
            if delay_was:
                _in(host, *delay_route(False))  # the host sends directly again; its delay line idles
            if delay_ms:
                line, ms = self.delaylines.get(n, (None, None))
                if line is not None and line.poll() is not None:
                    raise LabError(f"the delay line in {host} ended: {_last_line(line.stderr.read()) or 'no message'}")
                if ms != delay_ms:  # none yet, or one with another delay
                    self._stop_delayline(n)
                    if not self._has_tun(host):  # made once per host
                        for command in delay_setup(self.address(n)):
                            _in(host, *command)
                    self.delaylines[n] = (self._start_delayline(host, delay_ms), delay_ms)
                _in(host, *delay_route(True))
        self.impaired[n] = (loss_pct, delay_ms)

    @staticmethod
    def _has_tun(host: str) -> bool:
        return subprocess.run(["ip", "-n", host, "link", "show", TUN_DEVICE], capture_output=True).returncode == 0

    @staticmethod
    def _start_delayline(host: str, delay_ms: float) -> subprocess.Popen:
        """Start host's delay line and wait (bounded) until it holds the TUN device."""
        line = subprocess.Popen(["ip", "netns", "exec", host, sys.executable, "-m", DELAYLINE_MODULE,
                                 "--delay-ms", f"{delay_ms:g}", "--device", TUN_DEVICE],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with selectors.DefaultSelector() as selector:
            selector.register(line.stdout, selectors.EVENT_READ)
            ready = selector.select(READY_TIMEOUT_S) and line.stdout.readline().strip() == "ready"
        if not ready:
            line.kill()
            _, err = line.communicate(timeout=READY_TIMEOUT_S)
            raise LabError(f"the delay line in {host} did not start: {_last_line(err) or 'no answer'}")
        return line

    def _stop_delayline(self, n: int) -> None:
        line, _ = self.delaylines.pop(n, (None, None))
        if line is None:
            return
        line.terminate()
        try:
            line.wait(timeout=5)
        except subprocess.TimeoutExpired:
            line.kill()
            line.wait()
        for pipe in (line.stdout, line.stderr):
            if pipe is not None:
                pipe.close()

    def close(self) -> None:
        """Stop the delay lines, delete every namespace made (with their veths, bridge, rules and devices)."""
        for n in list(self.delaylines):
            self._stop_delayline(n)
        self.impaired.clear()
        for namespace in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self.namespaces.clear()
