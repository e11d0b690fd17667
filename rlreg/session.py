"""One command's connection to the registry: URLs, output mode, progress, error lines."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from storage import config
from storage.errors import REPAIR_HINT

from rlreg import exitcodes

PROGRESS_AFTER = 1.0  # seconds: quicker operations show no progress bar
PROGRESS_ENV = "RLREG_PROGRESS"  # auto (a terminal, after a second), always (at once, any stream), never
PROGRESS_MODES = config.PROGRESS_MODES


class Session:
    """The ``--db``/``--storage``/``--json`` of one command and the registry they open."""

    def __init__(self, db: str | None, storage: str | None, as_json: bool, *, create: bool = True):
        self.db = db or None
        self.storage = storage or None
        self.as_json = as_json
        self.create = create  # False: a database without a registry is an error, not a new registry
        self._registry = None

    @property
    def registry(self):
        """The ``registry.Registry`` on these URLs, opened on first use."""
        if self._registry is None:
            from registry import Registry

            self._registry = Registry(self.db, self.storage, create=self.create)
        return self._registry

    @property
    def db_display(self) -> str:
        """The database URL in use, password hidden."""
        from registry.config import default_db_url

        return exitcodes.mask_secrets(self.db or default_db_url())

    def _engine(self, what: str):
        from registry import offline
        from registry.config import default_db_url
        from registry.db import create_engine

        if config.offline():  # (as a Registry opened offline: the database is not contacted, nor made)
            raise offline.refused(self.db_display, what)
        return create_engine(self.db or default_db_url())

    def schema_status(self) -> Any:
        """The database's schema revision next to this package's, without upgrading anything."""
        from registry.db import schema_status

        engine = self._engine("db current")
        try:
            return schema_status(engine)
        finally:
            engine.dispose()

    def upgrade_schema(self) -> Any:
        """Upgrade the schema to this package's head revision; returns the status afterwards."""
        from registry.db import upgrade

        engine = self._engine("db upgrade")
        try:
            return upgrade(engine)
        finally:
            engine.dispose()

    @contextlib.contextmanager
    def progress(self, label: str, stream: Any = None) -> Iterator[Callable[[int, int], None]]:
        """A ``progress(done_bytes, total_bytes)`` callback drawing a byte bar on stderr.

        By default (``RLREG_PROGRESS=auto``) the bar shows only on a terminal, only past a second,
        and never with ``--json``; ``always`` shows it at once on any stream (still not with
        ``--json``); ``never`` hides it. Calls come on the command's own thread, at most once per object.
        """
        mode = config.progress()
        from tqdm import tqdm  # only the commands that move bytes draw a bar

        stream = sys.stderr if stream is None else stream
        shown = {"auto": _isatty(stream), "always": True, "never": False}[mode]
        delay = 0.0 if mode == "always" else PROGRESS_AFTER
        bar = tqdm(
            desc=label, total=None, unit="B", unit_scale=True, file=stream, leave=False, delay=delay,
            disable=self.as_json or not shown,
        )

        def update(done: int, total: int) -> None:
            if bar.disable:
                return
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
            if done >= total and bar.format_dict["elapsed"] >= delay:  # (shown, or due to be)
                bar.refresh()  # the last state is drawn even within tqdm's mininterval of the one before

        with bar:
            yield update

    def describe_target(self, code: int) -> tuple[str, str]:
        """What an error of class ``code`` is about: ``("database", url)``, ``("storage", url)`` or empty."""
        if code == exitcodes.DATABASE:
            return ("database", exitcodes.mask_secrets(self.db)) if self.db else ("the default database", "")
        if code == exitcodes.STORAGE:
            return ("storage", self.storage) if self.storage else ("the default storage", "")
        return "", ""

    def close(self) -> None:
        """Release the registry's connections."""
        if self._registry is not None:
            self._registry.close()
            self._registry = None


CLI_REPAIR_HINT = "run `rlreg verify --repair` to move it aside; the next snapshot of these tensors then rewrites it"


def on_error(ctx: click.Context, exc: BaseException, code: int) -> str:
    """The one line printed for an expected error of class ``code``, naming the URL it is about."""
    session = ctx.find_root().meta.get("rlreg.session")
    message = exitcodes.one_line(exc, str(exc).replace(REPAIR_HINT, CLI_REPAIR_HINT))  # (storage's names its API)
    message = message.removeprefix(f"{exitcodes.LABELS[code]}: ")  # (said once, below)
    what, url = session.describe_target(code) if session is not None else ("", "")
    if what and not (url and url in message) and "://" not in message:  # (one naming a URL is about that one)
        message = f"{what} {url}: {message}" if url else f"{what}: {message}"
    if session is not None and session.as_json:  # --json: the error is JSON too
        return json.dumps({"error": exitcodes.LABELS[code], "exit_code": code, "message": message})
    return f"rlreg: {exitcodes.LABELS[code]}: {message}"


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
