"""``rlreg rm`` and ``rlreg restore``: deleting and restoring versions and models (events too)."""

from __future__ import annotations

import sys

import click

from rlreg import output
from rlreg.cli import cli, common, parse_ref
from rlreg.errors import InvalidReferenceError
from rlreg.session import Session


def _version_ref(ref: str, command: str) -> tuple[str, int | None]:
    name, version, alias = parse_ref(ref)
    if alias is not None:
        raise InvalidReferenceError(f"rlreg {command} {ref!r}: give NAME:VERSION (a number), not an alias")
    return name, version


def _confirm_model(name: str, yes: bool) -> None:
    """Ask before deleting a whole model on a terminal (``--yes`` skips it); elsewhere do not ask."""
    if yes or not sys.stdin.isatty():
        return
    click.confirm(f"delete every version of model {name!r}?", abort=True, err=True)


@cli.command(short_help="Delete a version or a whole model (an event: rlreg restore undoes it).")
@common(writes=True)
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--reason", required=True, metavar="TEXT", help="Why it is deleted (recorded in the event).")
@click.option("--force", is_flag=True, help="Also remove the aliases pointing at it (in the same append).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation when deleting a whole model.")
def rm(session: Session, ref: str, reason: str, force: bool, yes: bool) -> None:
    """Delete NAME:VERSION, or every version of NAME; gc reclaims their storage after its grace period."""
    name, version = _version_ref(ref, "rm")
    reg = session.registry
    if version is None:
        _confirm_model(name, yes)
        event = reg.delete_model(name, reason=reason, force=force)
        what = f"model {name} ({len(event.payload['versions'])} version(s))"
    else:
        event = reg.delete_version(name, version, reason=reason, force=force)
        what = f"{name}:{version}"
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"deleted {what} (event {event.position}); rlreg restore NAME:VERSION undoes it until gc reclaims it")


@cli.command(short_help="Bring a deleted version back (while gc has kept its objects).")
@common(writes=True)
@click.argument("ref", metavar="NAME:VERSION")
def restore(session: Session, ref: str) -> None:
    """Restore the deleted version NAME:VERSION."""
    name, version = _version_ref(ref, "restore")
    if version is None:
        raise InvalidReferenceError(f"rlreg restore {ref!r}: give NAME:VERSION (restore one version at a time)")
    event = session.registry.restore_version(name, version)
    if session.as_json:
        return output.echo_json(event)
    click.echo(f"restored {name}:{version} (event {event.position})")
