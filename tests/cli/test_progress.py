"""The progress display of long operations: nothing for quick ones, elapsed time on a terminal."""

from __future__ import annotations

import io
import threading

import pytest

from rlreg import session as session_module
from rlreg.session import Session


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_quick_operations_show_nothing_and_return_their_value():
    stream = Terminal()
    assert Session(None, None, False).with_progress("quick", lambda x: x * 2, 21, stream=stream) == 42
    assert stream.getvalue() == ""


def test_slow_operations_show_elapsed_time_on_a_terminal_only(monkeypatch):
    monkeypatch.setattr(session_module, "PROGRESS_AFTER", 0.01)
    done = threading.Event()
    slow = lambda: done.wait(0.6) or "finished"  # noqa: E731
    terminal, pipe = Terminal(), io.StringIO()
    assert Session(None, None, False).with_progress("verifying", slow, stream=terminal) == "finished"
    assert "verifying: 00:0" in terminal.getvalue()
    assert Session(None, None, False).with_progress("verifying", slow, stream=pipe) == "finished"
    assert pipe.getvalue() == ""


def test_errors_of_the_operation_propagate():
    def fail():
        raise FileNotFoundError("no checkpoint at /nowhere")

    with pytest.raises(FileNotFoundError, match="no checkpoint at /nowhere"):
        Session(None, None, False).with_progress("importing", fail)
