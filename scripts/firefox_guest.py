"""A manual check: drive Debian's Firefox into a call as a guest; print its tiles as JSON.

Usage: firefox_guest.py FIREFOX LINK NAME MARIONETTE_PORT
Needs: apt-get install firefox-esr; pip install marionette-driver

Marionette talks to the browser directly (Playwright's Firefox and geckodriver are
downloads, which CI machines cannot make). Waits, bounded, until every remote
tile plays, then leaves and prints [[name, videoWidth, currentTime], ...].

Not part of the suite: Firefox gathers no loopback ICE candidates (whatever
media.peerconnection.ice.loopback says), so it cannot join the loopback-only
network namespace the tests run in; run this on a machine with an interface.
"""

import json
import sys
import time

from marionette_driver.by import By
from marionette_driver.marionette import Marionette

PREFS = {
    "media.navigator.streams.fake": True,  # a synthetic camera and microphone
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.loopback": True,  # ICE over 127.0.0.1, like the bots
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.autoplay.default": 0,
    "intl.accept_languages": "de-DE",
    # A machine (or network namespace) with nothing but loopback is not "offline".
    "network.manage-offline-status": False,
}
TILES = ("return [...document.querySelectorAll('.tile')].map(t => [t.querySelector('.name').textContent,"
         " t.querySelector('video').videoWidth, t.querySelector('video').currentTime])")


def main(firefox: str, link: str, name: str, port: int, seconds: float = 40.0) -> list:
    client = Marionette(bin=firefox, headless=True, prefs=PREFS, host="127.0.0.1", port=port)
    try:
        client.start_session()
        client.navigate(link)
        client.find_element(By.ID, "name").send_keys(name)
        client.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        tiles: list = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            tiles = client.execute_script(TILES)
            remote = [t for t in tiles if t[0] != name]
            if remote and all(width > 0 and played > 1.0 for _, width, played in remote):
                time.sleep(1.0)  # let the other side count a few more frames
                break
            time.sleep(0.25)  # bounded by the deadline
        return tiles
    finally:
        client.delete_session()
        client.cleanup()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))
