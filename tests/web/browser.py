"""Debian's chromium driven by Playwright, for the browser tests (Playwright's own browsers never used).

``chromium_path()`` finds ``/usr/bin/chromium``; when it is missing and we run as root with apt-get
(a fresh CI machine), it installs Debian's ``chromium`` package. Otherwise the tests skip with the
reason, except with ``CI=true``, where they fail: in CI the browser tests must run.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run, not skip)")
    pytest.skip(reason)


def _apt_install() -> str | None:
    """Install Debian's chromium; the error output when that fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            return proc.stderr[-2000:]
    return None


def chromium_path() -> str:
    """The chromium executable, installed from Debian's packages when missing and possible."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.geteuid() == 0 and shutil.which("apt-get"):
        error = _apt_install()
        if os.path.exists(CHROMIUM):
            return CHROMIUM
        unavailable(f"{CHROMIUM} is missing and `apt-get install -y chromium` failed: {error}")
    unavailable(f"{CHROMIUM} is missing (install Debian's chromium package: apt-get install chromium)")
    raise AssertionError("unreachable")


def launch(playwright):
    """Headless chromium with the options that keep it off the network and quiet."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=ARGS, headless=True)
