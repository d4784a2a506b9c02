"""A delay line for kernels without netem: what a lab host sends goes through a TUN device and out again later.

In a host namespace (p2pconf/netlab.py), packets the host itself sends into the
lab subnet are routed into the TUN device `dly0` (policy routing: `iif lo`). This
process reads each one, holds it for the delay and writes it back into `dly0`; the
kernel then forwards it out of eth0 as if it had just been sent, through the
uplink's tbf. Replies come in on eth0 directly, so only what the host sends is
delayed, as netem on eth0's egress would do.

Bounded: at most QUEUE_LIMIT packets wait at once (more are dropped, as a full
router queue drops), and the process ends when its parent does. Only the
standard library: it starts quickly and costs little beside the bots.

    python -m p2pconf.delayline --delay-ms 50 [--device dly0]

runs inside the host namespace (`ip netns exec`), prints "ready" once it holds
the device, and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import selectors
import signal
import struct
import sys
import time
from collections import deque

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PR_SET_PDEATHSIG = 1
QUEUE_LIMIT = 10_000  # packets held at once: 150 ms of ~65,000 packets/s
DEVICE = "dly0"


def open_tun(name: str) -> int:
    """Attach to the (persistent) TUN device `name` in this namespace; a non-blocking fd of raw IP packets."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def run(fd: int, delay_s: float, limit: int = QUEUE_LIMIT) -> None:
    """Hold every packet read from `fd` for `delay_s`, then write it back; forever."""
    held: deque[tuple[float, bytes]] = deque()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else None
        if selector.select(timeout):
            due = time.monotonic() + delay_s
            while True:
                try:
                    packet = os.read(fd, 65_535)
                except BlockingIOError:
                    break
                if len(held) < limit:
                    held.append((due, packet))
        now = time.monotonic()
        while held and held[0][0] <= now:
            try:
                os.write(fd, held.popleft()[1])
            except BlockingIOError:  # the kernel's backlog is full: that packet is lost
                pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m p2pconf.delayline", description=__doc__.split("\n")[0])
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--device", default=DEVICE)
    args = p.parse_args(argv)
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the line above
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        fd = open_tun(args.device)
    except OSError as exc:
        print(f"delayline: cannot attach to {args.device}: {exc.strerror}", file=sys.stderr)
        return 1
    try:  # netem would run in the kernel, ahead of every process: come first among the bots
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass
    print("ready", flush=True)
    run(fd, args.delay_ms / 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
