"""Ctrl-C at the very start of a command, while Python still imports the command line."""

from __future__ import annotations

import signal
import time

import pytest


@pytest.mark.parametrize("after", [0.05, 0.15])
def test_a_ctrl_c_while_the_command_line_is_still_imported_is_one_line(rlreg, after):
    """The console script's handler is in place before rlreg.cli (click, SQLAlchemy) is imported:
    a Ctrl-C then is 'rlreg: interrupted' and exit 130, not a traceback of the import."""
    for attempt in range(1, 6):
        proc = rlreg.popen("models")
        time.sleep(after * attempt)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        if "init_import_site" not in err:
            break
        # (on a loaded machine the signal can land before Python's own start-up has imported its site
        # module, before any code of rlreg's runs: CPython's fatal error, not ours; later, then)
    assert "Traceback" not in err, err
    assert (proc.returncode, err) in ((130, "rlreg: interrupted\n"), (0, "")), (proc.returncode, err)  # (or done)
