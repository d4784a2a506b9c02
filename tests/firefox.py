"""Debian's Firefox ESR in the suite: in a network namespace of its own, driven by Marionette.

Firefox gathers no ICE candidates on loopback (whatever media.peerconnection.ice.loopback
says), and the suite's namespace has nothing but loopback. So a test gives Firefox a
namespace of its own, joined to the suite's by a veth pair:

    the suite's namespace:  fx<pid> 10.78.0.1/24  (the test server listens here; Chromium and bots gather it)
      -- veth --  Firefox's namespace: eth0 10.78.0.2/24, default route via 10.78.0.1

(The default route is there because real hosts have one; the tests passed without it too.)
Firefox starts in that namespace (`ip netns exec`) and its Marionette listens on 127.0.0.1
there, so every driver call runs on one thread that has entered the namespace (setns moves only
the calling thread). Playwright's Firefox and geckodriver are downloads, which CI machines
cannot make; Marionette needs none (PyPI's marionette-driver).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import shutil
import subprocess
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from p2pconf.netlab import enter

from .browser import ARTIFACTS

with warnings.catch_warnings():  # mozinfo calls the deprecated distro.linux_distribution() on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from marionette_driver.by import By
    from marionette_driver.marionette import Marionette

FIREFOX = os.environ.get("P2PCONF_FIREFOX", "/usr/bin/firefox-esr")
SUITE_ADDRESS, FIREFOX_ADDRESS = "10.78.0.1", "10.78.0.2"
MARIONETTE_PORT = 2828  # inside Firefox's namespace: nothing else listens there
PREFS = {
    "media.navigator.streams.fake": True,  # a synthetic camera and microphone
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,  # no mDNS names: there is no mDNS here
    "media.autoplay.default": 0,
    "intl.accept_languages": "de-DE",
    # The test server speaks plain http on the veth address: a secure context all the same
    # (camera, microphone, screen), as an https site or http://localhost would be.
    "dom.securecontext.allowlist": SUITE_ADDRESS,
    "security.warn_submit_secure_to_insecure": False,  # (so the guest form's post to http asks nothing)
}
# The tile whose name is exactly arguments[0] (tests/browser.py's tile(), in the page).
TILE = "[...document.querySelectorAll('.tile')].find(t => t.querySelector('.name').textContent === arguments[0])"
# Each peer connection of the page's call, for a failing test's message (as tests/browser.py's mesh_states).
MESH_STATES = """return [location.href, window.isSecureContext, window.p2pconf ? [...window.p2pconf.mesh.peers.values()]
    .map(p => [p.name, p.offerer, p.pc.connectionState, p.pc.iceConnectionState, p.stream.getTracks().length]) : []]"""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@contextmanager
def firefox_network():
    """The veth pair and Firefox's namespace (its name); both are gone afterwards, even on failure."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise AssertionError("Firefox's network namespace needs root and iproute2: run scripts/test as root")
    addresses = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout.splitlines()
    if any(line.split()[1] != "lo" for line in addresses):
        raise AssertionError("the veth pair goes into the suite's own network namespace, which has nothing "
                             "but loopback; this one has more: run scripts/test (unshare --net)")
    namespace, veth = f"p2pfx{os.getpid()}", f"fx{os.getpid()}"
    made = []
    try:
        _ip("netns", "add", namespace)
        made.append(namespace)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        made.append(veth)
        _ip("addr", "add", f"{SUITE_ADDRESS}/24", "dev", veth)
        _ip("link", "set", veth, "up")
        _ip("-n", namespace, "addr", "add", f"{FIREFOX_ADDRESS}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", namespace, "route", "add", "default", "via", SUITE_ADDRESS)
        yield namespace
    finally:
        if veth in made:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)  # takes eth0 with it
        if namespace in made:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


class Firefox:
    """One Firefox window; every Marionette call runs on a thread inside Firefox's namespace."""

    def __init__(self, namespace: str, workdir: Path):
        self.namespace, self.workdir = namespace, workdir
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="firefox", initializer=enter, initargs=(namespace,))
        self.process: subprocess.Popen | None = None
        self.client: Marionette | None = None

    async def run(self, fn, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn, *args)

    def _start(self, timeout: float = 60.0) -> None:
        profile = self.workdir / "firefox-profile"
        profile.mkdir()
        (profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
                                                 for k, v in PREFS.items()))
        with (self.workdir / "firefox.log").open("wb") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, FIREFOX, "--marionette", "--headless", "--no-remote",
                 "--profile", str(profile)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # Wait for Marionette's port ourselves: marionette_driver's own wait leaks a socket per try.
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", MARIONETTE_PORT), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"Firefox's Marionette did not listen; see {self.workdir}/firefox.log")
                time.sleep(0.1)  # bounded by the deadline
        self.client = Marionette(host="127.0.0.1", port=MARIONETTE_PORT)
        self.client.start_session()

    def _stop(self) -> None:
        try:
            if self.client and self.client.session:
                self.client.delete_session()
        finally:
            if self.process and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)  # the group of the browser we started
                    self.process.wait(timeout=15)

    async def js(self, script: str, *args: Any) -> Any:
        """Run `script` (a function body; its arguments in `arguments`) in the page; its result."""
        return await self.run(lambda: self.client.execute_script(script, script_args=list(args), sandbox=None))

    async def wait_for(self, script: str, *args: Any, timeout: float = 20.0, what: str = "") -> Any:
        """Poll `script` until it returns something truthy; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"Firefox: {what or script} not within {timeout} s; "
                                     f"{await self.js(MESH_STATES)}")
            await asyncio.sleep(0.1)

    async def goto(self, url: str) -> None:
        await self.run(self.client.navigate, url)

    async def enter_as_guest(self, link: str, name: str) -> None:
        await self.goto(link)
        await self.run(lambda: self.client.find_element(By.ID, "name").send_keys(name))
        await self.click_css("button[type=submit]")
        await self.wait_for("return location.pathname.startsWith('/r/') && window.p2pconf?.call.joined",
                            what="joining the call")

    async def type(self, element_id: str, text: str) -> None:
        await self.run(lambda: self.client.find_element(By.ID, element_id).send_keys(text))

    async def click(self, element_id: str) -> None:
        """A real click (user activation, as getDisplayMedia needs) on the element with this id."""
        await self.click_css(f"#{element_id}")

    async def click_css(self, selector: str) -> None:
        await self.run(lambda: self.client.find_element(By.CSS_SELECTOR, selector).click())

    async def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        png = await self.run(lambda: self.client.screenshot(format="binary"))
        (ARTIFACTS / f"{name}.png").write_bytes(png)

    async def wait_playing(self, name: str, timeout: float = 30.0) -> None:
        """Bounded wait until the tile named `name` shows frames and its clock advances."""
        played = await self.wait_for(f"const v = {TILE}?.querySelector('video');"
                                     "return v && v.videoWidth > 0 && v.currentTime > 0.3 && v.currentTime",
                                     name, timeout=timeout, what=f"{name!r} playing")
        await self.wait_for(f"return {TILE}.querySelector('video').currentTime > arguments[1] + 0.3",
                            name, played, timeout=timeout, what=f"{name!r} advancing")


@asynccontextmanager
async def launched_firefox(namespace: str, workdir: Path):
    """Firefox ESR in `namespace`; fails (never skips) when it is not installed."""
    if not shutil.which(FIREFOX):
        raise AssertionError(f"{FIREFOX} is missing: scripts/test installs Debian's firefox-esr")
    firefox = Firefox(namespace, workdir)
    try:
        await firefox.run(firefox._start)
        yield firefox
    finally:
        try:
            await firefox.run(firefox._stop)
        finally:
            firefox.thread.shutdown()
