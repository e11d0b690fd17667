"""``rlreg cache ls | verify | prune``: the local read cache of remote stores (like ``hf cache``).

The cache lives in ``RLREG_CACHE_DIR`` (``--cache-dir``); it holds verified copies of objects read
from a remote store, keyed by digest, so it needs neither the database nor the bucket, and the
records of loaded versions that ``RLREG_OFFLINE=1`` loads from (``registry.offline``).
"""

from __future__ import annotations

import click

from storage import config

from rlreg import output
from rlreg.errors import CLIError, DamageFoundError


class CacheSession:
    """The cache folder of one command and its output mode."""

    def __init__(self, cache_dir: str | None, as_json: bool) -> None:
        import os

        from storage.cache import ObjectCache
        from storage.records import RecordCache

        self.folder = cache_dir or config.cache_dir()
        self.as_json = as_json
        click.get_current_context().find_root().meta["rlreg.as_json"] = as_json  # (for a system error's line)
        self.cache = ObjectCache(self.folder, config.cache_max_bytes())
        self.records = RecordCache(os.path.join(self.folder, "offline"))  # registry.offline.FOLDER


def cache_options(func):
    """``--cache-dir`` and ``--json``, passed on as a ``CacheSession``."""
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON).")(func)
    return click.option("--cache-dir", metavar="DIR", default=None,
                        help="The cache folder.  [env var: RLREG_CACHE_DIR; default ~/.cache/rlreg]")(func)


@click.group("cache")
def cache() -> None:
    """The local read cache of remote stores: list, verify, prune."""


@cache.command("ls")
@cache_options
def cache_ls(cache_dir: str | None, as_json: bool) -> None:
    """List the cached objects, least recently used first, with their sizes."""
    session = CacheSession(cache_dir, as_json)
    entries = session.cache.entries()
    total = sum(e.nbytes for e in entries)
    if as_json:
        return output.echo_json({"folder": session.folder, "objects": [e.to_dict() for e in entries],
                                 "total_bytes": total, "max_bytes": session.cache.max_bytes,
                                 "offline_records": len(session.records.files())})
    rows = [(e.digest, output.size(e.nbytes), output.when(e.last_used)) for e in entries]
    if rows:
        click.echo(output.table(("OBJECT", "SIZE", "LAST USED"), rows, right=(1,)))
    click.echo(f"{len(entries)} object(s), {output.size(total)} of {output.size(session.cache.max_bytes)} "
               f"in {session.folder}; {len(session.records.files())} offline record(s)")


@cache.command("verify")
@cache_options
def cache_verify(cache_dir: str | None, as_json: bool) -> None:
    """Re-hash every cached object and offline record; damaged ones are removed (the next read fetches them again)."""
    session = CacheSession(cache_dir, as_json)
    checked = len(session.cache.entries())
    records = len(session.records.files())
    damaged = session.cache.verify()
    damaged_records = session.records.verify()
    ok = not damaged and not damaged_records
    if as_json:
        output.echo_json({"folder": session.folder, "checked": checked, "damaged": damaged, "records_checked": records,
                          "damaged_records": damaged_records, "ok": ok})
    else:
        what = f"checked {checked} cached object(s) and {records} offline record(s) in {session.folder}"
        click.echo(f"{what}: ok" if ok else f"{what}: {len(damaged)} damaged object(s) and "
                   f"{len(damaged_records)} damaged record(s) removed")
    if not ok:
        shown = [*list(damaged)[:3], *list(damaged_records)[:3]][:3]
        raise DamageFoundError(f"{len(damaged)} damaged cached object(s) and {len(damaged_records)} damaged offline "
                               f"record(s) removed: {', '.join(shown)}")


@cache.command("prune")
@cache_options
@click.option("--max-size", metavar="SIZE", default=None,
              help="Remove the least recently used objects until the cache holds at most SIZE (e.g. 10GiB).")
@click.option("--older-than", metavar="AGE", default=None,
              help="Remove objects not used for AGE (e.g. 30d, 12h).")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def cache_prune(cache_dir: str | None, as_json: bool, max_size: str | None, older_than: str | None,
                dry_run: bool) -> None:
    """Remove cached objects by age and size (without options: down to RLREG_CACHE_MAX_BYTES)."""
    session = CacheSession(cache_dir, as_json)
    limit = _parsed("--max-size", max_size, config.parse_size)
    age = _parsed("--older-than", older_than, config.parse_duration)
    if limit is None and age is None:
        limit = session.cache.max_bytes
    gone = session.cache.prune(limit, age, dry_run=dry_run)
    freed = sum(e.nbytes for e in gone)
    if as_json:
        return output.echo_json({"folder": session.folder, "removed": [e.to_dict() for e in gone],
                                 "freed_bytes": freed, "dry_run": dry_run})
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(gone)} object(s), {output.size(freed)}, from {session.folder}")


def _parsed(option: str, text: str | None, parse):
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as exc:  # (invalid input, exit 4, as gc --grace)
        raise CLIError(f"{option} {exc}") from None
