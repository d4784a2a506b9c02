"""Calls through a TURN relay in the capacity lab (`p2pconf capacity --relay`).

Guests on mobile networks and behind strict firewalls reach the others only through a
relay. In the lab (p2pconf/netlab.py) a real coturn (Debian's `turnserver`, TURN REST
credentials: `use-auth-secret`) runs in the hub next to the signaling server, which
hands its address and time-limited credentials to every client in `welcome`; and every
host gets a strict firewall: it may reach the hub and nothing else, so no two peers can
talk directly and every call goes through the relay.

What the relay forwards is counted on the hub's bridge: in a relayed mesh of N, each of
the N participants sends its N - 1 streams to the relay, which sends each on, so the
relay's own uplink carries N (N - 1) streams.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path

from . import netlab
from .netlab import LabError

TURN_PORT = 3478
FIREWALL_TABLE = "p2pconf_firewall"
READY_TIMEOUT_S = 10.0


def firewall_ruleset() -> str:
    """The nftables table (for `nft -f -` in a host) that lets the host reach the hub only."""
    return (f"table inet {FIREWALL_TABLE} {{\n"
            f"  chain out {{\n"
            f"    type filter hook output priority 0; policy accept;\n"
            f"    ip daddr {netlab.SUBNET}.0/24 ip daddr != {netlab.HUB_ADDRESS} drop\n"
            f"  }}\n"
            f"}}\n")


def check_can_relay() -> None:
    """LabError saying what is missing for a relayed lab."""
    if not shutil.which("turnserver"):
        raise LabError("--relay needs coturn's turnserver: apt-get install coturn")
    if not shutil.which("nft"):
        raise LabError("--relay needs nftables for the hosts' firewalls: apt-get install nftables")


class Relay:
    """coturn in the lab's hub and a firewall in each host (a context manager)."""

    def __init__(self, lab: netlab.Lab, folder: Path):
        self.lab, self.folder = lab, folder
        self.secret = secrets.token_urlsafe(24)
        self.urls = [f"turn:{netlab.HUB_ADDRESS}:{TURN_PORT}?transport=udp"]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Relay":
        check_can_relay()
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
            for n in range(1, self.lab.hosts + 1):
                netlab._in(self.lab.host(n), "nft", "-f", "-", input=firewall_ruleset())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        log = self.folder / "turnserver.log"
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.hub, "turnserver", "-n", "--listening-ip", netlab.HUB_ADDRESS,
             "--relay-ip", netlab.HUB_ADDRESS, "--listening-port", str(TURN_PORT), "--use-auth-secret",
             "--static-auth-secret", self.secret, "--realm", "p2pconf-lab", "--no-tls", "--no-dtls", "--no-cli",
             "--no-rfc5780", "--min-port", "49152", "--max-port", "65535", "--userdb", str(self.folder / "turndb"),
             "--pidfile", str(self.folder / "turnserver.pid"), "--log-file", str(log), "--simple-log"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise LabError(f"turnserver did not start: {netlab._last_line(log.read_text()) if log.exists() else ''}")
            time.sleep(0.1)  # bounded by the deadline

    def _listening(self) -> bool:
        done = subprocess.run(["ip", "netns", "exec", self.lab.hub, "ss", "-Hlun", f"sport = :{TURN_PORT}"],
                              capture_output=True, text=True)
        return bool(done.stdout.strip())

    def forwarded_bytes(self) -> int:
        """Bytes the hub's bridge has sent so far: what the relay sent on (and a little signaling)."""
        done = subprocess.run(["ip", "netns", "exec", self.lab.hub, "cat", "/sys/class/net/br0/statistics/tx_bytes"],
                              capture_output=True, text=True)
        return int(done.stdout.strip() or 0)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
