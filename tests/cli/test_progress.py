"""The byte progress bar of export, import and verify: on stderr only, past a second, on a terminal."""

from __future__ import annotations

import io

import pytest
from clihelpers import small_module
from tqdm import tqdm

from rlreg import exitcodes
from rlreg import session as session_module
from rlreg.errors import InvalidSettingError
from rlreg.session import Session


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def feed(session: Session, stream, total: int = 3_000_000) -> None:
    """Report three objects of a transfer of ``total`` bytes, as the store does."""
    with session.progress("verifying", stream=stream) as progress:
        for done in (0, total // 3, 2 * total // 3, total):
            progress(done, total)


def test_quick_operations_show_nothing_on_a_terminal(monkeypatch):
    monkeypatch.delenv("RLREG_PROGRESS", raising=False)
    terminal = Terminal()
    feed(Session(None, None, False), terminal)  # done well within the one second delay
    assert terminal.getvalue() == ""


def test_a_terminal_shows_a_byte_bar_once_the_delay_is_past(monkeypatch):
    monkeypatch.delenv("RLREG_PROGRESS", raising=False)
    monkeypatch.setattr(session_module, "PROGRESS_AFTER", 0.0)
    terminal, pipe = Terminal(), io.StringIO()
    feed(Session(None, None, False), terminal)
    assert "verifying: 100%" in terminal.getvalue() and "3.00M/3.00M " in terminal.getvalue()
    feed(Session(None, None, False), pipe)  # not a terminal: nothing
    assert pipe.getvalue() == ""


@pytest.mark.parametrize(("mode", "as_json", "shown"),
                         [("always", False, True), ("always", True, False), ("never", False, False),
                          ("auto", False, False)])
def test_rlreg_progress_forces_or_hides_the_bar(monkeypatch, mode, as_json, shown):
    monkeypatch.setenv("RLREG_PROGRESS", mode)
    pipe = io.StringIO()
    feed(Session(None, None, as_json), pipe)
    assert ("verifying: 100%" in pipe.getvalue()) is shown, pipe.getvalue()


def test_an_unknown_rlreg_progress_is_named(monkeypatch):
    monkeypatch.setenv("RLREG_PROGRESS", "sometimes")
    with pytest.raises(InvalidSettingError, match=r"^RLREG_PROGRESS='sometimes' is not one of auto, always, never$"):
        feed(Session(None, None, False), io.StringIO())
    assert exitcodes.classify(InvalidSettingError("x")) == exitcodes.INVALID


def test_errors_of_the_operation_propagate():
    with pytest.raises(FileNotFoundError, match="no checkpoint at /nowhere"):
        with Session(None, None, False).progress("importing", stream=io.StringIO()):
            raise FileNotFoundError("no checkpoint at /nowhere")


def test_the_bar_goes_to_stderr_never_stdout(rlreg, home_registry, tmp_path):
    home_registry.snapshot("pol", small_module(1, hidden=64))
    stored = tqdm.format_sizeof(sum(o["nbytes"] for o in home_registry.manifest("pol", 1)["objects"].values()))
    rlreg.env["RLREG_PROGRESS"] = "always"
    verify = rlreg("verify")
    last = verify.err.strip().splitlines()[-1]  # (the run's newlines: "\r" read in text mode)
    assert last.startswith("verifying: 100%|") and f"| {stored}/{stored} [" in last, verify.err  # every byte
    assert "verifying" not in verify.out and "\r" not in verify.out
    exported = rlreg("export", "pol:1", str(tmp_path / "ckpt"))
    assert "exporting pol:1: 100%" in exported.err and exported.out.startswith("exported pol:1 to ")
    imported = rlreg("import", "copy", str(tmp_path / "ckpt"))
    assert f"importing {tmp_path / 'ckpt'}: 100%" in imported.err and imported.out.startswith("imported ")
    as_json = rlreg("verify", "--json")
    assert as_json.err == "" and as_json.json()["ok"] is True


def test_an_unknown_rlreg_progress_exits_4_in_one_line(rlreg):
    rlreg.env["RLREG_PROGRESS"] = "sometimes"
    result = rlreg("verify", code=exitcodes.INVALID)
    assert result.err.strip() == "rlreg: invalid input: RLREG_PROGRESS='sometimes' is not one of auto, always, never"
