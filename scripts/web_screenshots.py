"""Remake the screenshots of docs/web.md: ``python scripts/web_screenshots.py [OUT_DIR]``.

Runs ``rlreg demo`` into a temporary home, serves it with ``rlreg serve``, moves an alias, and
photographs each page in Debian's chromium (Playwright drives it). Default OUT_DIR: docs/img.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "web"))
from browser import ARGS, chromium_path  # noqa: E402

RLREG = shutil.which("rlreg", path=str(Path(sys.executable).parent)) or "rlreg"
NAME = "cartpole-ppo"
PAGES = {"web-models.png": "/", "web-model.png": f"/models/{NAME}", "web-version.png": f"/models/{NAME}@best",
         "web-diff.png": f"/diff/{NAME}?a=1&b=@best", "web-events.png": "/events"}


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="rlreg-shots-"))
    env = {**os.environ, "RLREG_HOME": str(home)}
    subprocess.run([RLREG, "demo", "--iterations", "16", "--every", "2", "--seed", "3"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([RLREG, "alias", "set", NAME, "prod", "4"], env=env, check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([RLREG, "serve", "--port", "0", "--json"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(server.stdout.readline())["url"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 640})
            for file, path in PAGES.items():
                page.goto(url + path)
                time.sleep(0.5)
                page.screenshot(path=out / file)
            browser.close()
    finally:
        server.send_signal(2)
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    for file in PAGES:
        print(f"{out / file}: {(out / file).stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img")
