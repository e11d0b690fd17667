"""The ``rlreg`` command line: a thin Click layer over ``registry.Registry``."""

from __future__ import annotations

import contextlib
import functools
import logging
import json
import os
import signal
import sys
import time
import warnings
from typing import Any

import click

from storage import config

from rlreg import exitcodes, output, show
from rlreg.cache_commands import cache
from rlreg.errors import DamageFoundError, InvalidMetadataError
from rlreg.session import Session, on_error

EPILOG = """\b
Exit codes: 0 ok, 1 bug, 2 usage, 3 not found, 4 invalid input, 5 conflict,
6 database unreachable, 7 storage unreachable, 8 damaged object,
9 schema out of date, 10 untrusted class, 11 offline (not cached),
130 interrupted, 141 output pipe closed."""


# Commands that only read (and alias moves): they must not import torch, so they start in a fraction
# of a second. tests/cli/test_fast_cli.py runs each in a fresh interpreter and checks sys.modules;
# every command is in READ_COMMANDS or TORCH_COMMANDS, so a new one has to choose. {name} is a model
# with versions 1 and 2, alias best on 1.
READ_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("models",), ("versions", "{name}"), ("show", "{name}:1"), ("show", "rlreg://{name}@best"),
    ("history", "{name}"), ("events",), ("alias", "set", "{name}", "prod", "@best"),
    ("alias", "rm", "{name}", "prod"), ("db", "current"), ("cache", "ls"), ("cache", "prune", "--dry-run"),
    ("tag", "{name}:1", "stage=eval"), ("untag", "{name}:1", "stage"), ("describe", "{name}", "a model"),
    ("versions", "{name}", "--where", "version > 1", "--sort", "-version"), ("storage", "show"),
    ("retention", "show", "{name}"), ("gc", "--dry-run"), ("storage", "holders"),
)
TORCH_COMMANDS = frozenset({
    "demo", "diff", "export", "import", "verify", "db upgrade", "projections rebuild", "cache verify",
    "storage move",  # checks every object at the new location through the store
    "storage forget",  # (rare: a gone registry's record)
    "rm", "restore", "retention set", "retention clear",  # (writes: may touch storage)
    "gc",  # applies retention policies first; `gc --dry-run` is a read command
    "serve",  # a long-running server: its start-up is paid once
})


class RlregGroup(click.Group):
    """A group that turns expected errors into one line on stderr and a distinct exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _warnings_as_lines():
                return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("rlreg: interrupted", err=True)
            ctx.exit(exitcodes.INTERRUPTED)
        except BrokenPipeError:  # the reader went away (`rlreg events --follow | head`): not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush to
            ctx.exit(exitcodes.PIPE_CLOSED)
        except Exception as exc:  # noqa: BLE001 - classified below; bugs are re-raised
            code = exitcodes.classify(exc)
            if code is None and isinstance(exc, OSError) and exc.errno in exitcodes.SYSTEM_ERRNOS:
                message = exc.strerror + (f": {exc.filename}" if exc.filename else "")
                with contextlib.suppress(OSError):  # (--json: the error is JSON too)
                    click.echo(json.dumps({"error": "system error", "exit_code": exitcodes.SYSTEM, "message": message})
                               if ctx.find_root().meta.get("rlreg.as_json") else f"rlreg: system error: {message}",
                               err=True)
                ctx.exit(exitcodes.SYSTEM)
            if code is None:
                raise
            click.echo(on_error(ctx, exc, code), err=True)
            ctx.exit(code)


@contextlib.contextmanager
def _warnings_as_lines():
    """The registry's warnings (offline resolutions, a retention policy that deletes nothing, a storage
    shared with another registry) and the warnings storage and registry log (a cache folder that cannot
    be written, a damaged entry discarded) as one ``rlreg: warning: ...`` line on stderr each."""
    from registry.errors import OfflineAliasWarning, RetentionWarning, StorageSharedWarning

    ours = (OfflineAliasWarning, RetentionWarning, StorageSharedWarning)

    _command_json[0] = False  # (set by the command's options, once parsed)
    with warnings.catch_warnings(), _log_lines("storage", "registry"):
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ours):
                _warning_line(str(message))
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        for category in ours:
            warnings.simplefilter("always", category)
        yield


_command_json = [False]  # --json of the command running (for warnings from threads without click's context)


def _warning_line(message: str) -> None:
    """``rlreg: warning: ...`` on stderr; with ``--json`` a JSON line, as an error is."""
    ctx = click.get_current_context(silent=True)
    if ctx.find_root().meta.get("rlreg.as_json") if ctx is not None else _command_json[0]:
        click.echo(json.dumps({"warning": message}), err=True)
    else:
        click.echo(f"rlreg: warning: {message}", err=True)


class _LineHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _warning_line(record.getMessage())


@contextlib.contextmanager
def _log_lines(*names: str):
    """Records of level WARNING and above of the loggers ``names`` as ``rlreg: warning:`` lines (not
    Python's bare last-resort output), for the command's duration."""
    handler = _LineHandler(logging.WARNING)
    loggers = [logging.getLogger(n) for n in names]
    for lg in loggers:  # (a handler found: Python's last resort stays silent)
        lg.addHandler(handler)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


def common(func=None, *, writes: bool = False, create: bool | None = None):
    """Add ``--db``, ``--storage`` and ``--json`` and pass a ``Session`` as the first argument.

    A command that only reads (``writes=False``) refuses a database URL given explicitly that
    holds no registry, so a mistyped URL is an error rather than a new, empty registry.
    ``create=False`` refuses one that holds no registry always, the default database too (``gc``:
    a new registry would take every object of the storage it is given for garbage).
    """
    if func is None:
        return functools.partial(common, writes=writes, create=create)

    @click.option(
        "--db", metavar="URL",
        help="Database URL: sqlite:///path or postgresql+psycopg://user@host/db.  [env var: RLREG_DB_URL]",
    )
    @click.option(
        "--storage", metavar="URL",
        help="Blob storage: a folder, file://, memory:// or s3://bucket/prefix.  [env var: RLREG_STORAGE_URL]",
    )
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON).")
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx, db, storage, as_json, **kwargs):
        db, storage = db or config.db_url(), storage or config.storage_url()
        session = Session(db, storage, as_json, create=(writes or not db) if create is None else create)
        ctx.find_root().meta["rlreg.session"] = session
        ctx.find_root().meta["rlreg.as_json"] = as_json  # (read, as the cache commands set it, for a system error)
        _command_json[0] = as_json
        ctx.call_on_close(session.close)
        return func(session, **kwargs)

    return wrapper


@click.group(cls=RlregGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlreg")
def cli() -> None:
    """rlreg: an event-sourced checkpoint and registry store for RL modules."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``rlreg`` console script."""
    signal.signal(signal.SIGINT, _on_interrupt)
    try:
        cli.main(args=argv, prog_name="rlreg")
    except SystemExit as exc:
        if _INTERRUPTS[0] and exc.code == exitcodes.INTERRUPTED:
            # Cleaned up (uploads aborted, transactions rolled back) on the way here: skip the
            # interpreter's teardown, which takes longer than the stop itself (torch's alone ~0.4 s).
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(exitcodes.INTERRUPTED)
        raise


_INTERRUPTS = [0]


def _on_interrupt(signum: int, frame: Any) -> None:
    """The first Ctrl-C stops the command cleanly (exit 130); another one while it cleans up exits at once."""
    _INTERRUPTS[0] += 1
    if _INTERRUPTS[0] == 1:
        raise KeyboardInterrupt
    os.write(2, b"rlreg: interrupted again: exiting now\n")
    os._exit(exitcodes.INTERRUPTED)


# ---------------------------------------------------------------------------------------- refs


REF = "NAME[:VERSION|@ALIAS]"  # or rlreg://NAME/VERSION, rlreg://NAME@ALIAS: registry.uri's grammar


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """``NAME``, ``NAME:3``, ``NAME@alias`` or an ``rlreg://`` URI as (name, version, alias)."""
    from registry.uri import parse_reference

    parsed = parse_reference(ref)
    return parsed.name, parsed.version, parsed.alias


def resolve_version(session: Session, name: str, which: str) -> int:
    """A VERSION argument (``3``, ``@best`` or ``best``) of NAME as a version number."""
    from registry.uri import parse_selector

    ref = parse_selector(name, which)
    return session.registry.version(ref.name, ref.version, alias=ref.alias).version


def not_empty(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An argument that must not be empty (a PATH or URL was taken for the current folder): a usage error."""
    if not value.strip():
        name = param.human_readable_name
        hint = ": give a folder or a URL" if name in ("PATH", "URL") else ""
        raise click.BadParameter(f"{name} is empty{hint}")
    return value


def parse_metadata(text: str | None) -> dict | None:
    """``--metadata`` as a dict (a JSON object)."""
    if text is None:
        return None
    from storage.jsondepth import JSONDepthError, check_text  # (imports torch: only import needs it)

    try:
        check_text(text, "--metadata")
        value = json.loads(text)
    except JSONDepthError as exc:
        raise InvalidMetadataError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise InvalidMetadataError(f"--metadata {text!r} is not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise InvalidMetadataError(f"--metadata {text!r}: expected a JSON object")
    return value


# ------------------------------------------------------------------------------------ commands


@cli.command(short_help="Train on CartPole, snapshot, alias the best, load it back.")
@common(writes=True)
@click.option("--name", default="cartpole-ppo", show_default=True, help="Model name to record under.")
@click.option("--iterations", default=24, show_default=True, type=click.IntRange(2, 1000),
              help="Policy-gradient updates.")
@click.option("--every", default=4, show_default=True, type=click.IntRange(1, 1000),
              help="Snapshot every N updates.")
@click.option("--seed", default=None, type=click.IntRange(0, 2**32 - 1),
              help="Random seed (default: a new one per run).")
def demo(session: Session, name: str, iterations: int, every: int, seed: int | None) -> None:
    """Train PPO's module on CartPole briefly, snapshot it, alias the best, load it back."""
    from rlreg.demo import run_demo

    run_demo(session, name=name, iterations=iterations, every=every, seed=seed)


@cli.command()
@common
def models(session: Session) -> None:
    """List the models: versions, latest version, aliases."""
    infos = session.registry.models()
    if session.as_json:
        return output.echo_json(infos)
    click.echo(show.models_table(infos))


@cli.command()
@common
@click.argument("name")
@click.option("--where", default=None, metavar="EXPR",
              help='Filter, e.g. \'metadata.mean_return > 100 and tags.stage = "eval"\' (see docs/search.md).')
@click.option("--sort", default=None, metavar="FIELDS", help="Order, e.g. -metadata.mean_return,version.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="At most this many versions.")
@click.option("--all", "include_deleted", is_flag=True, help="Also list deleted versions (marked).")
def versions(session: Session, name: str, where: str | None, sort: str | None, limit: int | None,
             include_deleted: bool) -> None:
    """List the versions of a model (filtered and sorted by metadata, tags, version, created_at)."""
    reg = session.registry
    rows = reg.versions(name, where=where, order_by=sort, limit=limit, include_deleted=include_deleted)
    if session.as_json:
        return output.echo_json(rows)
    about = next((m.description for m in reg.models() if m.name == name), None)
    click.echo(show.versions_table(rows, about=about))


@cli.command("show")
@common
@click.argument("ref", metavar=REF)
def show_cmd(session: Session, ref: str) -> None:
    """Show one version: spec, spaces, tensors, metadata, aliases."""
    name, version, alias = parse_ref(ref)
    reg = session.registry
    mv = reg.version(name, version, alias=alias)
    spec = reg.spec(name, mv.version)
    manifest = reg.manifest(name, mv.version)
    if session.as_json:
        return output.echo_json({"version": mv, "spec": spec, "tensors": manifest.get("tensors", {})})
    about = None if reg.offline else next((m.description for m in reg.models() if m.name == name), None)
    click.echo(show.version_report(mv, spec, manifest, about=about))


@cli.command()
@common
@click.argument("name")
def history(session: Session, name: str) -> None:
    """The events of one model's stream, oldest first."""
    events = session.registry.history(name)
    if session.as_json:
        return output.echo_json(events)
    click.echo(output.table(output.EVENT_HEADERS, map(output.event_row, events), right=(0, 2)))


@cli.command()
@common
@click.option("--after", default=0, show_default=True, type=click.IntRange(min=0),
              help="Start after this global position.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="At most this many events.")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new events until interrupted (JSON lines with --json).")
def events(session: Session, after: int, limit: int | None, follow: bool) -> None:
    """The global event log, by position; --follow tails it."""
    reg = session.registry
    if not follow:
        rows = reg.events(after=after, limit=limit)
        if session.as_json:
            return output.echo_json(rows)
        if not rows:
            return click.echo(f"no events after position {after}")
        return click.echo(output.table(output.EVENT_HEADERS, map(output.event_row, rows), right=(0, 2)))
    try:
        follow_events(session, after, limit)
    except KeyboardInterrupt:
        pass  # interrupting is how a tail ends


FOLLOW_BACKOFF = (0.1, 5.0)  # seconds: first wait after losing the database, longest wait


def follow_events(session: Session, after: int, limit: int | None) -> None:
    """Print events after ``after`` as they commit; when the database goes away, reconnect with backoff
    and resume after the last position printed, saying so on stderr.

    A database that cannot be reached at the start is an error (exit 6): only a tail that has
    started waits for it to come back.
    """
    from registry.errors import DatabaseUnavailableError

    reg, printed = session.registry, 0
    reg.head()  # reachable now, or exit 6 at once
    while True:
        try:
            for event in reg.follow(after=after):
                _echo_event(session, event)
                after, printed = event.position, printed + 1
                if limit is not None and printed >= limit:
                    return
            return
        except DatabaseUnavailableError as exc:
            _wait_for_database(reg, after, exc)


def _wait_for_database(reg: Any, after: int, exc: Exception) -> None:
    """Poll the database with exponential backoff until it answers again (or Ctrl-C)."""
    from registry.errors import DatabaseUnavailableError

    click.echo(
        f"rlreg: lost the database ({exitcodes.one_line(exc)}); reconnecting with backoff, "
        f"then resuming after position {after}",
        err=True,
    )
    delay = FOLLOW_BACKOFF[0]
    while True:
        time.sleep(delay)
        try:
            reg.head()
        except DatabaseUnavailableError:
            delay = min(delay * 2, FOLLOW_BACKOFF[1])
            continue
        click.echo(f"rlreg: reconnected, resuming after position {after}", err=True)
        return


def _echo_event(session: Session, event: Any) -> None:
    if session.as_json:
        output.echo_json(event, lines=True)
    else:
        click.echo(show.event_line(event))


@cli.group()
def alias() -> None:
    """Move or remove an alias (each change is an event)."""


@alias.command("set")
@common(writes=True, create=False)
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", metavar="VERSION")
def alias_set(session: Session, name: str, alias_name: str, version: str) -> None:
    """Point ALIAS of NAME at VERSION (a number, or @ALIAS for the version another alias names)."""
    version = resolve_version(session, name, version)
    event = session.registry.set_alias(name, alias_name, version)
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"{name}@{alias_name} -> version {version} (event {event.position})")


@alias.command("rm")
@common(writes=True, create=False)
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
def alias_rm(session: Session, name: str, alias_name: str) -> None:
    """Remove ALIAS of NAME."""
    event = session.registry.remove_alias(name, alias_name)
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"{name}@{alias_name} removed (event {event.position})")


@cli.command()
@common(writes=True, create=False)
@click.argument("ref", metavar="NAME:VERSION|NAME@ALIAS")
@click.argument("assignments", metavar="KEY=VALUE...", nargs=-1, required=True)
def tag(session: Session, ref: str, assignments: tuple[str, ...]) -> None:
    """Set tags on a version (an event); other tags stay."""
    from registry.tags import parse_assignments

    tags = parse_assignments(assignments)
    name, version = _one_version(session, ref, "tag")
    event = session.registry.set_tags(name, version, tags)
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"{name}:{version} tagged {output.compact(tags)} (event {event.position})")


@cli.command()
@common(writes=True, create=False)
@click.argument("ref", metavar="NAME:VERSION|NAME@ALIAS")
@click.argument("keys", metavar="KEY...", nargs=-1, required=True)
def untag(session: Session, ref: str, keys: tuple[str, ...]) -> None:
    """Remove tags from a version (an event)."""
    name, version = _one_version(session, ref, "untag")
    event = session.registry.remove_tags(name, version, keys)
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"{name}:{version} untagged {', '.join(event.payload['keys'])} (event {event.position})")


@cli.command()
@common(writes=True, create=False)
@click.argument("ref", metavar="NAME[:VERSION|@ALIAS]")
@click.argument("text")
def describe(session: Session, ref: str, text: str) -> None:
    """Describe a model (NAME) or one version (NAME:VERSION); an empty TEXT clears it."""
    name, version, alias = parse_ref(ref)
    if alias is not None:
        version = session.registry.version(name, alias=alias).version
    event = session.registry.set_description(name, text, version)
    if session.as_json:
        return output.echo_json(event)
    what = name if version is None else f"{name}:{version}"
    click.echo(f"{what} {'described' if text else 'description cleared'} (event {event.position})")


def _one_version(session: Session, ref: str, command: str) -> tuple[str, int]:
    """The (name, version) a ``NAME:V`` or ``NAME@ALIAS`` argument names (a bare NAME is refused)."""
    name, version, alias = parse_ref(ref)
    if alias is not None:
        return name, session.registry.version(name, alias=alias).version
    if version is None:
        from registry.errors import InvalidReferenceError

        raise InvalidReferenceError(f"{command} {ref!r}: name a version, e.g. {ref}:3 or {ref}@best")
    return name, version


@cli.command()
@common
@click.argument("name")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
def diff(session: Session, name: str, a: str, b: str) -> None:
    """What changed between versions A and B (numbers or @ALIAS)."""
    result = session.registry.diff(name, resolve_version(session, name, a), resolve_version(session, name, b))
    if session.as_json:
        return output.echo_json(result)
    click.echo(str(result))


@cli.command(short_help="Write a version as a checkpoint folder.")
@common
@click.argument("ref", metavar=REF)
@click.argument("path", callback=not_empty)
@click.option("--format", "fmt", type=click.Choice(["rlreg", "rllib"]), default="rlreg", show_default=True,
              help="rllib: a folder RLlib 2.60's RLModule.from_checkpoint loads (PPO modules).")
def export(session: Session, ref: str, path: str, fmt: str) -> None:
    """Write a version as an RLlib-style checkpoint folder at PATH (any fsspec URL)."""
    name, version, alias = parse_ref(ref)
    reg = session.registry
    mv = reg.version(name, version, alias=alias)
    with session.progress(f"exporting {name}:{mv.version}") as progress:
        written = reg.export(name, mv.version, path, progress=progress, format=fmt)
    if session.as_json:
        return output.echo_json({"name": name, "version": mv.version, "path": written, "format": fmt})
    click.echo(f"exported {name}:{mv.version} to {written}")


@cli.command("import")
@common(writes=True)
@click.argument("name")
@click.argument("path", callback=not_empty)
@click.option("--metadata", default=None, metavar="JSON", help="Metadata of the new version (a JSON object).")
@click.option("--from-rllib", is_flag=True,
              help="PATH is a checkpoint RLlib 2.35..2.60 wrote (read without unpickling).")
def import_cmd(session: Session, name: str, path: str, metadata: str | None, from_rllib: bool) -> None:
    """Record the checkpoint at PATH as a new version of NAME."""
    meta = parse_metadata(metadata)
    with session.progress(f"importing {path}") as progress:
        mv = session.registry.import_checkpoint(name, path, meta, progress=progress,
                                                from_rllib=from_rllib)
    if session.as_json:
        return output.echo_json(mv)
    click.echo(f"imported {path} as {name}:{mv.version}")


@cli.command()
@common
@click.option("--repair", is_flag=True,
              help="Move damaged objects aside, so the next snapshot of those tensors writes them again.")
def verify(session: Session, repair: bool) -> None:
    """Re-hash every stored object; exit 8 if any is damaged."""
    with session.progress("verifying") as progress:
        report = session.registry.verify(repair, progress=progress)
    summary = show.verify_summary(report)
    if session.as_json:
        output.echo_json(summary)
    else:
        click.echo(show.verify_text(summary))
    if not summary["ok"]:
        bad = [*summary["damaged"], *summary["missing"]]
        raise DamageFoundError(
            f"{len(summary['damaged'])} damaged object(s), {len(summary['missing'])} version(s) with "
            f"missing objects: {', '.join(bad[:3])}"
        )


@cli.command(short_help="Web pages and a JSON API over the registry.")
@common
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--allow-writes", is_flag=True,
              help="Accept alias/tag/description/delete/restore requests bearing a token of RLREG_SERVE_TOKENS.")
def serve(session: Session, host: str, port: int, allow_writes: bool) -> None:
    """Serve web pages and a JSON API (/api/v1/) over the registry; read-only unless --allow-writes."""
    from rlreg.web.cli import run_server

    run_server(session, host, port, allow_writes)


@cli.group()
def storage() -> None:
    """Where the registry keeps its objects (recorded by its database)."""


@storage.command("show")
@common
def storage_show(session: Session) -> None:
    """The storage URL the database records, and how it got there."""
    reg = session.registry
    changes = reg.storage_events()
    if session.as_json:
        return output.echo_json({"url": reg.storage_url, "events": changes})
    click.echo(show.storage_text(reg.storage_url, changes))


@storage.command("move")
@common(writes=True, create=False)
@click.argument("url", callback=not_empty)
def storage_move(session: Session, url: str) -> None:
    """Record that the objects now live at URL (every object the versions need must be there)."""
    event = session.registry.move_storage(url)
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"storage moved from {event.payload['previous']} to {event.payload['url']} (event {event.position})")


@cli.group()
def db() -> None:
    """The database schema (Alembic migrations)."""


@db.command("upgrade")
@common
def db_upgrade(session: Session) -> None:
    """Upgrade the database schema to this package's revision."""
    status = session.upgrade_schema()
    if session.as_json:
        return output.echo_json(status)
    click.echo(show.schema_text(status, session.db_display))


@db.command("current")
@common
def db_current(session: Session) -> None:
    """Show the database's schema revision and this package's."""
    status = session.schema_status()
    if session.as_json:
        return output.echo_json(status)
    click.echo(show.schema_text(status, session.db_display))


@cli.group()
def projections() -> None:
    """The read models derived from the event log."""


@projections.command("rebuild")
@common
def projections_rebuild(session: Session) -> None:
    """Drop the read models and rebuild them from the events."""
    count = session.registry.rebuild_projections()
    if session.as_json:
        return output.echo_json({"events": count})
    click.echo(f"rebuilt projections from {count} events")


cli.add_command(cache)

from rlreg import lifecycle_cmds  # noqa: E402,F401 - registers rm and restore on ``cli``

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
