"""Every ``RLREG_*`` setting, read here and only here (docs/configuration.md lists them).

It lives in the lowest layer so that every package can ask it; each function reads its variable
at the moment of the call, and callers pass the values down as arguments from there.
Nothing writes ``os.environ``. A value that cannot be understood is an ``InvalidSettingError``
naming the variable and what it accepts.
"""

from __future__ import annotations

import os
import re

from storage.errors import InvalidSettingError

# name -> (what it sets, its default): the docs page and its test read this table.
VARIABLES: dict[str, tuple[str, str]] = {
    "RLREG_HOME": ("the data folder of the default registry", "~/.local/share/rlreg (platform data folder)"),
    "RLREG_DB_URL": ("the registry database (as --db)", "sqlite:///<RLREG_HOME>/rlreg.db"),
    "RLREG_STORAGE_URL": ("the tensor store (as --storage)", "<RLREG_HOME>/blobs"),
    "RLREG_CACHE_DIR": ("the local read cache of a remote store", "~/.cache/rlreg ($XDG_CACHE_HOME/rlreg)"),
    "RLREG_CACHE_MAX_BYTES": ("the cache's size bound: bytes or a size such as 20GiB, 500MB", "20GiB"),
    "RLREG_TRUSTED_MODULES": ("comma-separated module prefixes whose classes checkpoints may name", "(none)"),
    "RLREG_PROGRESS": ("progress bars on stderr: auto, always or never", "auto"),
    "RLREG_OFFLINE": ("1: load cached versions without the database or the bucket", "0"),
    "RLREG_ACTOR": ("who is acting, recorded on every event this process appends (a person, a CI job)",
                    "user@host of the process"),
    "RLREG_RUN_ID": ("an experiment tracker's run id, recorded on every event this process appends", "(none)"),
    "RLREG_SERVE_TOKENS": ("who may write through `rlreg serve --allow-writes`: NAME:TOKEN or NAME:sha256:HEX, "
                           "comma-separated", "(none: no writes)"),
}
PROGRESS_MODES = ("auto", "always", "never")
DEFAULT_CACHE_MAX_BYTES = 20 << 30
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30,
          "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhdw]?)\s*")


def home() -> str | None:
    """``RLREG_HOME``: the data folder of the default registry."""
    return _text("RLREG_HOME")


def db_url() -> str | None:
    """``RLREG_DB_URL``."""
    return _text("RLREG_DB_URL")


def storage_url() -> str | None:
    """``RLREG_STORAGE_URL``."""
    return _text("RLREG_STORAGE_URL")


def cache_dir() -> str:
    """``RLREG_CACHE_DIR``, else ``rlreg`` in the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return _text("RLREG_CACHE_DIR") or os.path.join(base, "rlreg")


def cache_max_bytes() -> int:
    """``RLREG_CACHE_MAX_BYTES`` (bytes or a size such as ``20GiB``), else 20 GiB."""
    value = os.environ.get("RLREG_CACHE_MAX_BYTES", "").strip()
    if not value:
        return DEFAULT_CACHE_MAX_BYTES
    try:
        return parse_size(value)
    except ValueError as exc:
        raise InvalidSettingError(f"RLREG_CACHE_MAX_BYTES={value!r}: {exc}") from None


def trusted_modules() -> tuple[str, ...]:
    """``RLREG_TRUSTED_MODULES``: module prefixes, comma-separated."""
    return tuple(p.strip() for p in os.environ.get("RLREG_TRUSTED_MODULES", "").split(",") if p.strip())


def progress() -> str:
    """``RLREG_PROGRESS``: ``auto`` (default), ``always`` or ``never``."""
    value = os.environ.get("RLREG_PROGRESS", "").strip().lower() or "auto"
    if value not in PROGRESS_MODES:
        raise InvalidSettingError(f"RLREG_PROGRESS={value!r} is not one of {', '.join(PROGRESS_MODES)}")
    return value


def offline() -> bool:
    """``RLREG_OFFLINE``: ``1`` loads cached versions without the database or the bucket."""
    value = os.environ.get("RLREG_OFFLINE", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise InvalidSettingError(f"RLREG_OFFLINE={value!r}: expected 1 or 0 (true/false, yes/no, on/off)")


def actor() -> str | None:
    """``RLREG_ACTOR``: who is acting (recorded on every event)."""
    return (os.environ.get("RLREG_ACTOR") or "").strip() or None


def run_id() -> str | None:
    """``RLREG_RUN_ID``: an experiment tracker's run (recorded on every event)."""
    return (os.environ.get("RLREG_RUN_ID") or "").strip() or None


def serve_tokens() -> str:
    """``RLREG_SERVE_TOKENS``: the ``NAME:TOKEN`` entries of ``rlreg serve``'s writers (parsed by ``rlreg.web.auth``)."""
    return os.environ.get("RLREG_SERVE_TOKENS", "")


def parse_size(text: str) -> int:
    """``"20GiB"``, ``"20G"``, ``"500MB"``, ``"1048576"`` as bytes (GiB = 2**30, GB = 10**9)."""
    match = _SIZE.fullmatch(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: expected bytes or a number with KiB, MiB, GiB, TiB (or KB, MB, GB, TB)")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_duration(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` (or ``"90"``: seconds) as seconds: the one
    grammar of every duration rlreg reads (``gc --grace``, ``cache prune --older-than``)."""
    match = _DURATION.fullmatch(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a duration: expected a number and one of s, m, h, d, w (e.g. 90s, 24h, 30d)")
    return float(match.group(1)) * _SECONDS[match.group(2) or "s"]


def _text(name: str) -> str | None:
    return os.environ.get(name) or None
