"""Where a registry lives by default: ``RLREG_DB_URL`` / ``RLREG_STORAGE_URL``, else the data folder.

The variables themselves are read by ``storage.config`` (the one module that reads ``RLREG_*``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from storage import config as settings

APP = "rlreg"


def data_dir() -> Path:
    """``RLREG_HOME``, else the platform's per-user data folder (``~/.local/share/rlreg`` on Linux)."""
    home = settings.home()
    if home:
        return Path(home).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP


def default_db_url() -> str:
    """``RLREG_DB_URL`` as it is now, else a SQLite file ``rlreg.db`` in the data folder."""
    url = settings.db_url()
    if url:
        return url
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'rlreg.db'}"


def storage_url_setting() -> str | None:
    """``RLREG_STORAGE_URL`` as it is now, or ``None`` (then the database's recorded URL is used)."""
    return settings.storage_url()


def default_storage_url() -> str:
    """``RLREG_STORAGE_URL`` as it is now, else the folder ``blobs`` in the data folder."""
    url = settings.storage_url()
    if url:
        return url
    folder = data_dir() / "blobs"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def actor_settings() -> dict[str, str]:
    """``RLREG_ACTOR`` (who, e.g. a CI job or a person) and ``RLREG_RUN_ID`` (a tracker's run), when set."""
    found = {"actor": settings.actor(), "run_id": settings.run_id()}
    return {key: value for key, value in found.items() if value}
