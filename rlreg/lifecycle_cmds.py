"""``rlreg rm``, ``rlreg restore``, ``rlreg retention``, ``rlreg storage holders|forget``: deleting, restoring,
keeping versions, and whose objects a storage holds (events too)."""

from __future__ import annotations

import sys

import click

from rlreg import exitcodes, output, show
from rlreg.cli import cli, common, not_empty, parse_ref, storage
from rlreg.errors import CLIError
from rlreg.session import Session



def _version_ref(ref: str, command: str) -> tuple[str, int | None]:
    name, version, alias = parse_ref(ref)
    if alias is not None:
        raise CLIError(f"rlreg {command} {ref!r}: give NAME:VERSION (a number), not an alias")
    return name, version


def _confirm(question: str, yes: bool) -> None:
    """Ask ``question`` before deleting on a terminal (``--yes`` skips it); elsewhere do not ask. A
    no (or Ctrl-C, or the end of input) deletes nothing and exits 130, as an interrupted command."""
    if yes or not sys.stdin.isatty():
        return
    try:
        confirmed = click.confirm(question, err=True)
    except click.Abort:
        confirmed = False
    if not confirmed:
        click.echo("rlreg: not confirmed: nothing was deleted", err=True)
        raise click.exceptions.Exit(exitcodes.INTERRUPTED)


@cli.command(short_help="Delete a version or a whole model (an event: rlreg restore undoes it).")
@common(writes=True, create=False)
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--reason", required=True, metavar="TEXT", help="Why it is deleted (recorded in the event).")
@click.option("--force", is_flag=True, help="Also remove the aliases pointing at it (in the same append).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation when deleting a whole model.")
def rm(session: Session, ref: str, reason: str, force: bool, yes: bool) -> None:
    """Delete NAME:VERSION, or every version of NAME; gc reclaims their storage after its grace period."""
    name, version = _version_ref(ref, "rm")
    reg = session.registry
    if version is None:
        if reg.exists(name):  # (else delete_model says what is wrong, with no question first)
            _confirm(f"delete every version of model {name!r}?", yes)
        event = reg.delete_model(name, reason=reason, force=force)
        what = f"model {name} ({len(event.payload['versions'])} version(s))"
    else:
        event = reg.delete_version(name, version, reason=reason, force=force)
        what = f"{name}:{version}"
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"deleted {what} (event {event.position}); rlreg restore NAME:VERSION undoes it until gc reclaims it")


@cli.command(short_help="Bring a deleted version back (while gc has kept its objects).")
@common(writes=True, create=False)
@click.argument("ref", metavar="NAME:VERSION")
def restore(session: Session, ref: str) -> None:
    """Restore the deleted version NAME:VERSION."""
    name, version = _version_ref(ref, "restore")
    if version is None:
        raise CLIError(f"rlreg restore {ref!r}: give NAME:VERSION (restore one version at a time)")
    event = session.registry.restore_version(name, version)
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"restored {name}:{version} (event {event.position})")


@cli.group()
def retention() -> None:
    """Which versions of a model to keep (applied after each snapshot and by gc)."""


def _keep_best(text: str | None, lowest: bool) -> tuple[str, int, str] | None:
    if text is None:
        return None
    key, sep, count = text.rpartition(":")
    if not sep or not key or not (count.isascii() and count.isdigit()):  # ('²'.isdigit(); int('٣') is 3)
        raise CLIError(f"--keep-best {text!r}: expected METADATA_KEY:COUNT, e.g. mean_return:5")
    return key, int(count), "min" if lowest else "max"


@retention.command("set")
@common(writes=True, create=False)
@click.argument("name")
@click.option("--keep-last", type=click.IntRange(min=1), help="Keep the N newest versions.")
@click.option("--keep-every", type=click.IntRange(min=1), help="Keep versions whose number is a multiple of N.")
@click.option("--keep-best", metavar="KEY:N", help="Keep the N versions with the highest metadata KEY.")
@click.option("--min", "lowest", is_flag=True, help="--keep-best keeps the lowest values instead.")
def retention_set(session: Session, name: str, keep_last: int | None, keep_every: int | None,
                  keep_best: str | None, lowest: bool) -> None:
    """Set NAME's policy and apply it now (aliased versions and the newest are always kept)."""
    reg = session.registry
    before = {v.version for v in reg.versions(name)}
    event = reg.set_retention(name, keep_last=keep_last, keep_every=keep_every, keep_best=_keep_best(keep_best, lowest))
    deleted = sorted(before - {v.version for v in reg.versions(name)})
    if session.as_json:
        return output.echo_json({"event": event, "deleted": deleted})
    from registry.retention import describe

    click.echo(f"retention of {name}: {describe(event.payload)} (event {event.position}); deleted {len(deleted)} version(s)")


@retention.command("show")
@common
@click.argument("name")
def retention_show(session: Session, name: str) -> None:
    """Show NAME's policy."""
    from registry.retention import describe

    policy = session.registry.retention(name)
    if session.as_json:
        return output.echo_json(policy)
    click.echo(describe(policy) if policy else f"model {name} has no retention policy (it keeps every version)")


@retention.command("clear")
@common(writes=True, create=False)
@click.argument("name")
def retention_clear(session: Session, name: str) -> None:
    """Remove NAME's policy (its versions are kept from now on)."""
    event = session.registry.clear_retention(name)
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"retention of {name} cleared (event {event.position})")


def parse_duration(text: str) -> float:
    """``--grace``: a duration (``storage.config.parse_duration``'s grammar: 90s, 15m, 24h, 7d, 2w) from 0
    to gc's ``MAX_GRACE``, as seconds."""
    from registry.gc import MAX_GRACE
    from storage.config import parse_duration as seconds_of

    try:
        seconds = seconds_of(text)
    except ValueError as exc:
        raise CLIError(f"--grace {exc}") from None
    if seconds > MAX_GRACE.total_seconds():  # "1e12d": timedelta would overflow
        raise CLIError(f"--grace {text!r}: at most {MAX_GRACE.days}d (10 years), e.g. 24h or 7d")
    return seconds


@cli.command(short_help="Reclaim storage no live version references (safe while others write).")
@common(writes=True, create=False)  # a mistyped --db must not become a new registry that collects this storage
@click.option("--grace", default="24h", show_default=True, metavar="DURATION",
              help="Keep objects touched, and versions deleted, less than this long ago (90s, 15m, 24h, 7d).")
@click.option("--dry-run", is_flag=True, help="Report what would be reclaimed; change nothing.")
def gc(session: Session, grace: str, dry_run: bool) -> None:
    """Apply retention policies, then delete unreferenced objects and leftovers of interrupted writes."""
    import datetime

    seconds = parse_duration(grace)
    with session.progress("collecting") as progress:
        report = session.registry.gc(grace=datetime.timedelta(seconds=seconds), dry_run=dry_run, progress=progress)
    if session.as_json:
        return output.echo_json({k: v for k, v in report.to_dict().items() if k != "reclaimed"})
    verb = "would reclaim" if dry_run else "reclaimed"
    deleted = sum(len(v) for v in report.retention_deleted.values())
    click.echo(output.fields([
        ("examined", f"{report.examined_objects} objects, {output.size(report.examined_bytes)}"),
        ("kept", f"{report.kept_objects} objects, {output.size(report.kept_bytes)}"),
        (verb, f"{report.reclaimed_objects} objects, {output.size(report.reclaimed_bytes)}"),
        ("leftovers", f"{report.leftovers_reclaimed} of {report.leftovers_examined} "
                      f"{'would be removed' if dry_run else 'removed'} "
                      f"({output.size(report.leftover_bytes_reclaimed)})"),
        ("retention", f"{deleted} version(s) {'would be deleted' if dry_run else 'deleted'}"),
    ]))


@storage.command("holders")
@common
def storage_holders(session: Session) -> None:
    """The registries that record themselves as holders of the storage (gc refuses one held by another),
    and the gcs running there."""
    reg = session.registry
    found, collecting = reg.storage_holders(), reg.storage_collecting()
    if session.as_json:
        return output.echo_json({"url": reg.storage_url, "holders": found,
                                 "collecting": [{"holder": h, "renewed": t} for h, t in collecting.items()]})
    click.echo(show.holders_text(reg.storage_url, found, collecting))


@storage.command("forget")
@common(writes=True, create=False)
@click.argument("holder", callback=not_empty)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def storage_forget(session: Session, holder: str, yes: bool) -> None:
    """Remove another registry's holder record from the storage, once its database is gone for good
    (gc may then delete objects only its versions used). Recorded as an event."""
    reg = session.registry
    _confirm(f"forget the holder {holder} of {reg.storage_url}? gc may then delete the objects its versions use", yes)
    event = reg.forget_storage_holder(holder)
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"forgot the holder {holder} of {event.payload['url']} (event {event.position})")
