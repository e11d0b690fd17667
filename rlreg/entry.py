"""The ``rlreg`` console script's first step, before the command line is imported (a few tenths of a
second): a Ctrl-C meanwhile ends it as one later does, ``rlreg: interrupted`` and exit 130, not with a
traceback of the import it stopped."""

from __future__ import annotations

import os
import signal


def _interrupted(signum: int, frame: object) -> None:
    os.write(2, b"rlreg: interrupted\n")
    os._exit(130)  # (exitcodes.INTERRUPTED: nothing started, nothing to clean up)


def main() -> None:
    """Entry point of the ``rlreg`` console script (``rlreg.cli.main`` puts its own handler in place)."""
    signal.signal(signal.SIGINT, _interrupted)
    from rlreg.cli import main as run

    run()
