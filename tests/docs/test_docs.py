"""The code blocks of docs/*.md run as tests, so the docs cannot rot.

Per file, the ```python blocks run in order in one fresh namespace, in a temporary working folder,
with RLREG_HOME (and the cache) pointing at temporary folders. A file that needs the team setup says
so in its first python block's info string (```python needs=postgres,s3): the test then points
RLREG_DB_URL at a fresh PostgreSQL database and RLREG_STORAGE_URL at a fresh bucket on moto's S3
server. ```python no-run <reason> marks a block that is shown, not run; the reason is required.

```bash blocks run too, in the same order: each line must be an ``rlreg`` command (run in this
process through the same Click group as the console script, and it must exit 0) or an ``export``;
anything else must be marked ```bash no-run <reason>.
"""

from __future__ import annotations

import re
import shlex
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
NOT_OURS = {"architecture.md"}  # the lead's contract notes: sketches of signatures, not programs
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    """One fenced code block."""

    path: Path
    line: int
    lang: str
    flags: list[str]
    body: str


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with its info string split into language and flags."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        words = match.group("info").split()
        lang, flags = (words[0], words[1:]) if words else ("", [])
        found.append(Block(path, text.count("\n", 0, match.start()) + 1, lang, flags, match.group("body")))
    return found


RUN = ("python", "bash")


def run_shell_block(block: Block, monkeypatch) -> None:
    """Run a bash block's ``rlreg`` commands in this process; ``export`` lines set variables."""
    from click.testing import CliRunner

    from rlreg.cli import cli

    for offset, line in enumerate(block.body.splitlines(), start=1):
        words = shlex.split(line, comments=True)
        where = f"{block.path.name}:{block.line + offset}"
        if not words:
            continue
        if words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                monkeypatch.setenv(name, value)
            continue
        assert words[0] == "rlreg", (
            f"{where}: `{line}` is not an rlreg command; mark the block `bash no-run <reason>`"
        )
        result = CliRunner().invoke(cli, words[1:], prog_name="rlreg")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{where}: `{line}` raised {result.exception!r}") from result.exception
        assert result.exit_code == 0, f"{where}: `{line}` exited {result.exit_code}: {result.stderr}"


def doc_files() -> list[Path]:
    """The docs whose code blocks we run."""
    return sorted(p for p in DOCS.glob("*.md") if p.name not in NOT_OURS)


def needs(path: Path) -> set[str]:
    """The services a doc's python blocks need (``needs=postgres,s3`` on any of its blocks)."""
    wanted: set[str] = set()
    for block in blocks(path):
        for flag in block.flags:
            if flag.startswith("needs="):
                wanted |= set(flag.removeprefix("needs=").split(","))
    return wanted


def test_docs_exist():
    """The documentation the issue asks for is there."""
    names = {p.name for p in doc_files()}
    expected = {"index.md", "quickstart.md", "concepts.md", "team-setup.md", "experiment-tracking.md",
                "api.md", "layout.md", "from-rllib.md", "cli.md"}
    assert expected <= names, f"missing docs: {sorted(expected - names)}"


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    heads = re.findall(r"^#+\s+(.*)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_links_between_docs_resolve(path):
    """Every relative link points at an existing file, and at an existing heading if it has #anchor."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file) if file else path
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
            broken.append(target)
    assert not broken, f"{path.name}: broken links {broken}"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_no_run_blocks_say_why(path):
    """A block that is not run must say why in its info string."""
    silent = [
        f"{path.name}:{b.line}" for b in blocks(path)
        if b.lang in RUN and "no-run" in b.flags and len(b.flags) < 2
    ]
    assert not silent, f"no-run without a reason at {silent}"


def runnable(path: Path) -> list[Block]:
    """The blocks of a doc that run."""
    return [b for b in blocks(path) if b.lang in RUN and "no-run" not in b.flags]


@pytest.mark.parametrize("path", [p for p in doc_files() if runnable(p)], ids=lambda p: p.name)
def test_doc_code_runs(path, tmp_path, monkeypatch, request):
    """Run the doc's python and bash blocks in order, python in one namespace."""
    wanted = needs(path)
    if "postgres" in wanted:
        monkeypatch.setenv("RLREG_DB_URL", request.getfixturevalue("pg_url"))
    if "s3" in wanted:
        monkeypatch.setenv("RLREG_STORAGE_URL", request.getfixturevalue("s3_bucket") + "/team")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # A real module, so classes a doc defines resolve by path as a user's imported module's would.
    module = types.ModuleType(f"rlreg_docs_{path.stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for block in runnable(path):
        if block.lang == "bash":
            run_shell_block(block, monkeypatch)
            continue
        code = compile("\n" * block.line + block.body, str(path), "exec")  # tracebacks show doc lines
        try:
            exec(code, module.__dict__)  # noqa: S102 - the docs are ours; running them is the point
        except Exception as exc:
            raise AssertionError(f"{path.name}, block at line {block.line} failed: {exc!r}") from exc
