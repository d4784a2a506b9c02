"""The page's ES modules: they type-check, and those that hold the call's logic never touch the DOM."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "web" / "static" / "js"
DOM_FREE = ["call.js", "chat.js", "linktest.js", "mesh.js", "protocol.js", "quality.js"]  # the DOM belongs to app.js and room.js


def test_the_page_modules_type_check():
    tsc = ROOT / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "TypeScript is missing: scripts/test installs it (npm ci)"
    checked = subprocess.run([str(tsc), "-p", str(ROOT), "--listFilesOnly"], capture_output=True, text=True,
                             timeout=300)
    assert {Path(f).name for f in checked.stdout.split()} >= {p.name for p in JS.glob("*.js")}
    done = subprocess.run([str(tsc), "-p", str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_call_logic_never_touches_the_page():
    for name in DOM_FREE:
        source = (JS / name).read_text()
        code = re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.S)  # comments may say "DOM"
        found = re.findall(r"\b(document|window|HTMLElement|querySelector\w*|getElementById)\b", code)
        assert not found, f"{name} touches the page: {sorted(set(found))}"
        assert not re.search(r"from '\./(page|room|app|i18n)\.js'", code), f"{name} imports a page module"
