"""Garbage collection of storage objects, safe while other processes snapshot on the same database and storage.

The objects table (``rlreg_objects``: digest, size, state, generation, last touched by the database
clock) is what writers and ``gc`` coordinate on. The safety argument:

1. A writer stores its objects (upload, or dedup: the object is already there), then, in the
   transaction that appends the event naming them, touches their rows (``touched_at`` = now; a
   missing row is created ``live`` at generation 0), locking them; if every row is ``live`` the event
   commits with the touch, in one transaction. Otherwise (a row is ``deleting`` or ``deleted``: gc
   collected or is collecting the object since it was stored) that transaction rolls back and the
   writer takes the slow path: it touches the rows in a transaction of their own (a ``deleting`` row
   makes it wait), noting the generation of each ``deleted`` one; for those it re-checks storage and
   re-uploads what is missing, and only then turns a row ``live`` again with ``generation + 1``, and
   only if it is still ``deleted`` at the generation noted: else a gc collected it again after that
   look at storage, and the writer looks again (so a ``live`` row always names a stored object: a
   writer killed between reviving and re-uploading cannot leave one that another writer's
   one-transaction append would trust, and one whose look at storage went stale cannot make one);
   then it appends, checking in the append's transaction that each row is still ``live`` at the
   generation it touched and touching them again; otherwise the append rolls back and the writer
   starts over (touch, re-upload, append).
2. ``gc`` picks objects no live version references (nor a version deleted less than ``grace`` ago, so
   ``restore_version`` works) whose row was touched more than ``grace`` ago (an object without a row,
   or with a ``deleted`` one: stored more than ``grace`` ago). In one transaction per batch it locks
   each row, re-checks that it is ``live`` and untouched since the cutoff (or already collected) and
   marks it ``deleting`` at ``generation + 1`` (the tombstone: every collection starts a generation,
   so a row's state and generation never come back to a pair a writer saw before it); then it
   deletes the objects from storage, then marks the rows ``deleted``.
3. Row locks order the two transactions. If the writer's append commits first, its touch is newer than
   the cutoff (for a grace longer than one append transaction) and ``gc`` leaves the object. If the
   tombstone commits first, the writer's append sees ``deleting`` (or ``deleted``, or another
   generation) and does not commit; a revive after it finds another generation and does not either.
   So no committed version names a deleted object, whatever the timing; a writer that stalls past
   the grace period re-uploads.
4. Collecting runs hold the registry's gc lock (``_collecting``: a file beside a SQLite database, an
   advisory lock on PostgreSQL; released by the system when a process dies), so they run one at a
   time and a ``deleting`` row that a collecting ``gc`` finds was left by an interrupted one (killed,
   Ctrl-C, a storage error between tombstone and finish). ``gc`` settles it first: if a version it
   keeps references the object and storage still holds it whole, the row turns ``live`` again at
   ``generation + 1`` (so ``restore_version`` and writers of the same bytes work again); otherwise it
   finishes the delete (a deleted version naming the object can no longer be restored, and
   ``restore_version`` says the objects were reclaimed).

Rows are never removed (a row's generation is what tells a writer its object was collected in
between). The table is derived: lost rows are recreated by the next touch, and ``gc`` treats an
object without a row by its age in storage. ``gc`` also removes leftovers of interrupted writes older
than ``grace``: temporary files and incomplete S3 multipart uploads.

A registry collects only its own storage: ``gc`` refuses (``StorageMismatchError``, nothing deleted)
when the registry has never recorded an object (no row in its objects table, no version ever) but its
storage holds objects stored before the registry was made: those are another registry's, seen through
a mistyped or missing database URL, which a collection would delete wholesale.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import storage
from filelock import FileLock, Timeout
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from storage import listing

from registry import db, errors, lifecycle, retention
from registry.schema import deleted_versions, events, objects, versions

log = logging.getLogger(__name__)

LIVE, DELETING, DELETED = "live", "deleting", "deleted"
DEFAULT_GRACE = dt.timedelta(hours=24)
# Longer than any registry has been kept: a grace past it is a typo (``--grace 1e12d``), and one near
# datetime's range would make the cutoff (the database clock minus the grace) overflow.
MAX_GRACE = dt.timedelta(days=3650)
# How much earlier than its registry's first event an object of that registry may seem stored (S3 keeps
# whole seconds, and a storage's clock is not the client's): see _refuse_foreign_storage.
CLOCK_SLACK = dt.timedelta(minutes=1)
ATTEMPTS = 60  # touch/append rounds of one write before it gives up on objects gc keeps collecting
BATCH = 200  # objects per tombstone transaction


class ObjectsCollectedError(errors.ConflictError):
    """Objects a write names were (or are being) collected by ``gc`` since the write touched them."""


class _Stale(errors.RegistryError):
    """Raised inside an append whose objects changed generation: roll back, touch again, retry."""


# --- the database clock ------------------------------------------------------------------------


def db_now(conn: Connection) -> dt.datetime:
    """The database's current time (UTC), so that every process measures ages with one clock."""
    if db.is_sqlite(conn):
        text = conn.execute(_SQLITE_NOW).scalar_one()
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
    return conn.execute(_POSTGRESQL_NOW).scalar_one().astimezone(dt.timezone.utc)


_SQLITE_NOW = sa.text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
_POSTGRESQL_NOW = sa.text("SELECT statement_timestamp()")


# Insert rows ``live`` at generation 0, or touch the existing ones, stamped with the database's clock;
# returns each row's state. Driver SQL, not SQLAlchemy's ``on_conflict_do_update``: a dialect's insert
# has no cache key, so that construct was compiled again at every snapshot.
_TOUCH_NOW = {True: "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'",  # SQLAlchemy's SQLite format (UTC)
              False: "statement_timestamp()"}


@functools.lru_cache(maxsize=64)
def _touch_sql(sqlite_: bool, rows: int) -> str:
    mark = "?" if sqlite_ else "%s"
    values = ", ".join([f"({mark}, {mark}, '{LIVE}', 0, {_TOUCH_NOW[sqlite_]})"] * rows)
    return (f"INSERT INTO {objects.name} (digest, nbytes, state, generation, touched_at) VALUES {values} "
            "ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at RETURNING digest, state")


def _touch_upsert(conn: Connection, sizes: Mapping[str, int]) -> dict[str, str]:
    """Create the missing rows and touch all of ``sizes``' (in digest order, as rows are locked); their states."""
    states: dict[str, str] = {}
    for part in _chunks(sorted(sizes)):
        params = tuple(x for d in part for x in (d, int(sizes[d])))
        states.update(conn.exec_driver_sql(_touch_sql(db.is_sqlite(conn), len(part)), params).tuples().all())
    return states


def _insert(conn: Connection) -> Any:
    return (sqlite.insert if db.is_sqlite(conn) else postgresql.insert)(objects)


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _locked_rows(conn: Connection, digests: list[str]) -> dict[str, Any]:
    out = {}
    for part in _chunks(sorted(digests)):
        query = sa.select(objects).where(objects.c.digest.in_(part)).order_by(objects.c.digest).with_for_update()
        out.update({r.digest: r for r in conn.execute(query)})
    return out


def _set(conn: Connection, digests: Iterable[str], **values: Any) -> None:
    for part in _chunks(sorted(digests)):
        conn.execute(objects.update().where(objects.c.digest.in_(part)).values(**values))


# --- writers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Touched:
    """What a touch found: the generation of each ``live`` object; the ``deleted`` ones, with the generation
    they were deleted at (``touch``; ``revive``: those it turned ``live``); those gc is deleting (``busy``);
    those ``revive`` left because gc collected them again since they were touched (``stale``)."""

    generations: dict[str, int]
    revived: dict[str, int] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)
    stale: set[str] = field(default_factory=set)


def _insert_missing(conn: Connection, sizes: Mapping[str, int], now: dt.datetime) -> None:
    """Rows (``live``, generation 0) for the objects that have none, in digest order (as rows are locked)."""
    rows = [{"digest": d, "nbytes": int(sizes[d]), "state": LIVE, "generation": 0, "touched_at": now} for d in sorted(sizes)]
    for i in range(0, len(rows), 500):
        conn.execute(_insert(conn).values(rows[i : i + 500]).on_conflict_do_nothing())


def touch_live(sizes: Mapping[str, int]) -> Callable[[Connection], None]:
    """The common case's check, in the append's own transaction: create missing rows, lock them and touch
    them; ``_Stale`` (roll back, take the slow path) unless every one is ``live``."""

    def check(conn: Connection) -> None:
        if not sizes:
            return
        # One upsert creates, locks and touches the rows and returns their states; a touch of a row that
        # is not live rolls back with the rest (_Stale).
        states = _touch_upsert(conn, sizes)
        collected = sorted(d for d in sizes if states.get(d) != LIVE)
        if collected:
            raise _Stale(f"{len(collected)} object(s) were collected by gc since they were stored (e.g. {collected[0]})")

    return check


def touch(event_store: Any, sizes: Mapping[str, int]) -> Touched:
    """Touch the live rows of the objects a write will reference (creating missing rows).

    ``deleted`` rows are reported (``revived``, with their generations), not changed: a row turns
    ``live`` at a new generation only in ``revive``, once the object is back in storage, so that no
    other writer takes a ``live`` row for proof of an object a killed reviver never stored again.
    """
    if not sizes:
        return Touched({})
    with event_store.transaction() as conn:
        now = db_now(conn)
        _insert_missing(conn, sizes, now)
        found = _locked_rows(conn, list(sizes))
        busy = {d for d, r in found.items() if r.state == DELETING}
        revived = {d: r.generation for d, r in found.items() if r.state == DELETED}
        _set(conn, [d for d, r in found.items() if r.state == LIVE], touched_at=now)
    generations = {d: r.generation for d, r in found.items() if r.state == LIVE}
    return Touched(generations, revived, busy)


def revive(event_store: Any, seen: Mapping[str, int]) -> Touched:
    """Turn ``live`` at ``generation + 1`` the rows still ``deleted`` at the generation ``seen`` (what ``touch``
    reported before the caller found their objects stored again); touch the live ones.

    A row ``deleted`` at another generation (or without a row) was collected again after that look at
    storage (each tombstone starts a generation): it is left as it is and reported ``stale``, and the
    caller looks at storage again. Flipping it would make a ``live`` row of an object gc just deleted.
    """
    with event_store.transaction() as conn:
        now = db_now(conn)
        found = _locked_rows(conn, list(seen))
        busy = {d for d, r in found.items() if r.state == DELETING}
        back = {d for d, r in found.items() if r.state == DELETED and r.generation == seen[d]}
        stale = {d for d in seen if d not in found or (found[d].state == DELETED and d not in back)}
        _set(conn, [d for d, r in found.items() if r.state == LIVE], touched_at=now)
        for d in back:
            conn.execute(objects.update().where(objects.c.digest == d)
                         .values(state=LIVE, generation=found[d].generation + 1, touched_at=now))
    generations = {d: r.generation + (d in back) for d, r in found.items() if r.state == LIVE or d in back}
    return Touched(generations, {d: generations[d] for d in back}, busy, stale)


def still_live(generations: Mapping[str, int]) -> Callable[[Connection], None]:
    """The append's check: every object still ``live`` at the generation touched; touch them again."""

    def check(conn: Connection) -> None:
        rows = _locked_rows(conn, list(generations))
        stale = sorted(d for d, g in generations.items()
                       if d not in rows or rows[d].state != LIVE or rows[d].generation != g)
        if stale:
            raise _Stale(f"{len(stale)} object(s) were collected by gc since they were touched (e.g. {stale[0]})")
        _set(conn, generations, touched_at=db_now(conn))

    return check


def _also(first: Callable[[Connection], None], then: Callable[[Connection], None] | None) -> Callable[[Connection], None]:
    if then is None:
        return first

    def both(conn: Connection) -> None:
        first(conn)
        then(conn)

    return both


def may_be_stored(event_store: Any) -> Callable[[str], bool]:
    """``Store.begin_put``'s ``may_be_stored``: whether the registry has a row for an object, in any state.

    An object is stored before the append that names it creates its row, so an object without a row
    was never stored by a write that committed (a write that failed after storing it may have left
    it: writing the same bytes again is harmless). One indexed read per object, instead of a request
    to the object store for each: only objects with a row are asked for there.
    """
    query = sa.select(objects.c.digest).where(objects.c.digest == sa.bindparam("d"))

    def check(object_digest: str) -> bool:
        with event_store.engine.connect() as conn:
            return conn.execute(query, {"d": object_digest}).first() is not None

    return check


def object_sizes(manifest: Mapping[str, Any], fresh: bool = False) -> dict[str, int]:
    """``{object digest: bytes}`` of the objects a manifest references.

    ``fresh``: ``manifest`` is the one this process's ``Store.put`` just made, whose ``objects`` lists
    every object it references (not checked again: 2,000 entries took 4-5 ms).
    """
    sizes = {d: int(o.get("nbytes", 0)) for d, o in (manifest.get("objects") or {}).items()}
    return sizes if fresh else {d: sizes.get(d, 0) for d in storage.manifest_objects(manifest)}


def append_referencing(reg: Any, name: str, manifest: Mapping[str, Any], make_events: Any,
                       reupload: Callable[[], Any] | None, check: Callable[[Connection], None] | None = None,
                       before_commit: Callable[[], Any] | None = None, fresh: bool = False) -> list:
    """Append ``make_events``'s events, which name ``manifest``'s objects, with the touch protocol.

    ``reupload()`` stores the objects again (a snapshot puts its tensors again); without it, objects
    that gc reclaimed make this raise ``ObjectsCollectedError``. ``check(conn)`` also runs in the
    append's transaction, after the protocol's own check. ``before_commit()`` returns once the
    objects are durably stored (a snapshot's writes still in flight): the append's transaction calls
    it just before committing, and the slow path before it looks at storage or revives a row.
    ``fresh``: ``manifest`` is the one this process's ``Store.put`` just made (``object_sizes``).
    """
    sizes = object_sizes(manifest, fresh)
    try:  # the common case: one transaction touches the objects and appends the events
        return reg._append_with_retry(name, make_events, check=_also(touch_live(sizes), check),
                                      before_commit=before_commit)
    except _Stale as exc:
        log.info("model %r: %s; touching them first", name, exc)
    if before_commit is not None:
        before_commit()  # what storage holds is known (and durable) before rows turn live again
    for attempt in range(ATTEMPTS):
        touched = touch(reg.event_store, sizes)
        generations = dict(touched.generations)
        again = bool(touched.busy)
        if not again and touched.revived:
            missing = set(touched.revived) - reg.store.exists(set(touched.revived))
            if missing and reupload is None:
                raise ObjectsCollectedError(
                    f"model {name!r}: {len(missing)} of the {len(sizes)} objects it names were reclaimed by gc "
                    f"(e.g. {sorted(missing)[0]})"
                )
            if missing:
                log.info("model %r: re-uploading %d object(s) gc reclaimed meanwhile", name, len(missing))
                reupload()
            back = revive(reg.event_store, touched.revived)  # only now, with the objects stored again
            generations.update(back.generations)
            again = bool(back.busy or back.stale)  # stale: collected again since that look at storage
        if not again:
            try:
                return reg._append_with_retry(name, make_events, check=_also(still_live(generations), check),
                                              before_commit=before_commit)
            except _Stale as exc:
                log.info("model %r: %s; touching them again", name, exc)
        time.sleep(random.uniform(0, min(0.01 * 2 ** min(attempt, 6), 0.5)))
    raise ObjectsCollectedError(
        f"model {name!r}: gc kept collecting the objects this write names ({ATTEMPTS} attempts); nothing was "
        "recorded: retry the write, or run `rlreg gc` to settle an interrupted collection"
    )


# --- gc -----------------------------------------------------------------------------------------


@dataclass
class GcReport:
    """What ``gc`` examined, kept and reclaimed (objects and bytes), the leftovers it removed and the
    versions retention policies deleted (in a dry run: all of it as it would be, nothing done)."""

    grace_seconds: float
    dry_run: bool
    examined_objects: int = 0
    examined_bytes: int = 0
    kept_objects: int = 0
    kept_bytes: int = 0
    reclaimed_objects: int = 0
    reclaimed_bytes: int = 0
    leftovers_examined: int = 0
    leftovers_reclaimed: int = 0
    leftover_bytes_reclaimed: int = 0
    retention_deleted: dict[str, list[int]] = field(default_factory=dict)
    reclaimed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {k: (sorted(v) if k == "reclaimed" else v) for k, v in self.__dict__.items()}


def _referenced(conn: Connection, cutoff: dt.datetime, gone: frozenset[tuple[str, int]] = frozenset()) -> set[str]:
    """Objects of live versions and of versions deleted after ``cutoff``, but for the versions ``gone``."""
    recent = sa.select(deleted_versions.c.version).where(
        deleted_versions.c.name == versions.c.name, deleted_versions.c.version == versions.c.version,
        deleted_versions.c.deleted_at <= cutoff,
    )
    out: set[str] = set()
    query = sa.select(versions.c.name, versions.c.version, versions.c.manifest).where(~recent.exists())
    for name, version, manifest in conn.execute(query):
        if (name, version) not in gone:
            out |= set(storage.manifest_objects(manifest))
    return out


def _whole(row: Any, obj: Any) -> bool:
    """Whether storage holds the object of ``row`` whole (its size, when the row knows it)."""
    return obj is not None and (not row.nbytes or obj.nbytes == row.nbytes)


def _candidates(rows: Mapping[str, Any], stored: Mapping[str, Any], referenced: set[str],
                cutoff: dt.datetime) -> tuple[dict[str, int], dict[str, int]]:
    """The objects to delete (``{digest: bytes}``), and the ``deleting`` rows of an interrupted gc to turn
    ``live`` again (``{digest: generation}``): those a kept version references, whose object is whole."""
    out, back = {}, {}
    for d in set(rows) | set(stored):
        row, obj = rows.get(d), stored.get(d)
        if row is not None and row.state == DELETING:  # left by an interrupted gc (see _collecting)
            if d in referenced and _whole(row, obj):
                back[d] = row.generation
            else:  # finish its delete
                out[d] = obj.nbytes if obj is not None else 0
            continue
        if d in referenced:
            continue
        if row is None or row.state == DELETED:  # stored by a writer that died before touching it: its age
            old = obj is not None and obj.modified is not None and obj.modified < cutoff
        else:
            old = row.state == LIVE and row.touched_at < cutoff
        if old:
            out[d] = obj.nbytes if obj is not None else 0
    return out, back


def _tombstone(event_store: Any, batch: Mapping[str, int], cutoff: dt.datetime) -> list[str]:
    """Mark ``deleting``, at the next generation, the rows of ``batch`` that are still live and untouched since
    ``cutoff`` or collected already; returns those (with the ``deleting`` ones an interrupted gc left)."""
    with event_store.transaction() as conn:
        now = db_now(conn)
        new = [{"digest": d, "nbytes": n, "state": DELETING, "generation": 0, "touched_at": now} for d, n in batch.items()]
        conn.execute(_insert(conn).values(new).on_conflict_do_nothing())
        rows = _locked_rows(conn, list(batch))
        doomed = [d for d, r in rows.items() if r.state != LIVE or r.touched_at < cutoff]  # untouched since
        # A new generation, so that a writer that saw the row 'deleted' before cannot take this collection's
        # 'deleted' for the one it saw (revive compares generations).
        _set(conn, [d for d in doomed if rows[d].state != DELETING], state=DELETING, generation=objects.c.generation + 1)
    return doomed


def _finish(event_store: Any, digests: list[str]) -> None:
    with event_store.transaction() as conn:
        _set(conn, digests, state=DELETED)


def _bring_back(event_store: Any, back: Mapping[str, int]) -> list[str]:
    """Turn ``live`` at ``generation + 1`` the rows of ``back`` still ``deleting`` at the generation read."""
    if not back:
        return []
    with event_store.transaction() as conn:
        now = db_now(conn)
        rows = _locked_rows(conn, list(back))
        done = sorted(d for d, r in rows.items() if r.state == DELETING and r.generation == back[d])
        _set(conn, done, state=LIVE, generation=objects.c.generation + 1, touched_at=now)
    return done


@contextlib.contextmanager
def _collecting(reg: Any) -> Iterator[None]:
    """Hold the registry's gc lock: collecting runs one at a time (a second one waits for the first).

    So a ``deleting`` row that a collecting ``gc`` reads was left by an interrupted one, and turning it
    ``live`` again cannot race a running gc's delete of the object. A file lock beside a SQLite
    database, a session advisory lock on PostgreSQL: either is released when its process dies.
    """
    engine = reg.event_store.engine
    if db.is_sqlite(engine):
        database = engine.url.database
        if database in (None, "", ":memory:"):  # one process's database: nobody else collects it
            yield
            return
        lock = FileLock(f"{database}.gc.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.warning("another gc is collecting on %s: waiting for it to end", reg._where())
            lock.acquire()
        try:
            yield
        finally:
            lock.release()
        return
    with db.translate_errors("taking the gc lock"):
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        with db.translate_errors("taking the gc lock"):
            if not conn.execute(_TRY_LOCK, {"k": _GC_LOCK_KEY}).scalar():
                log.warning("another gc is collecting on %s: waiting for it to end", reg._where())
                conn.execute(_LOCK, {"k": _GC_LOCK_KEY})
        try:
            yield
        finally:
            try:
                conn.execute(_UNLOCK, {"k": _GC_LOCK_KEY})
            except sa.exc.SQLAlchemyError:
                conn.invalidate()  # not back to the pool still holding the lock: its session ends instead
    finally:
        conn.close()


_GC_LOCK_KEY = zlib.crc32(b"rlreg.gc") & 0x7FFFFFFF  # (the schema lock's key is rlreg.schema's)
_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(:k)")
_LOCK = sa.text("SELECT pg_advisory_lock(:k)")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(:k)")


def _refuse_foreign_storage(reg: Any) -> None:
    """``StorageMismatchError`` when the registry has never recorded an object but its storage holds some
    stored before the registry was made (its first event, less ``CLOCK_SLACK``).

    Those are another registry's (its storage URL given with a mistyped or missing database URL, which
    opened a new, empty registry): collecting would delete every one older than the grace period. The
    objects of this registry's first snapshot, stored while gc runs, are younger than the registry and
    are collected as ever. A registry that recorded anything (a row in its objects table, a version,
    even a deleted one) passes at the cost of two indexed reads; only an empty one lists its storage.
    """
    with reg._read("reading the objects table") as conn:
        if (conn.execute(sa.select(objects.c.digest).limit(1)).first() is not None
                or conn.execute(sa.select(versions.c.name).limit(1)).first() is not None):
            return
        born = conn.execute(sa.select(events.c.timestamp).order_by(events.c.position).limit(1)).scalar()
    found, _ = listing.scan(reg.store)
    older = [o for o in found if born is None or o.modified is None or o.modified < born - CLOCK_SLACK]
    if older:
        raise errors.StorageMismatchError(
            f"gc refused: the registry at {reg._where()} has never recorded an object, but its storage "
            f"{reg.storage_url!r} holds {len(older)} object(s) stored before the registry was made: they belong "
            "to another registry (check --db or RLREG_DB_URL: a mistyped or missing database URL opens a new, "
            "empty registry). Nothing was deleted; if they are this registry's own (a first snapshot that "
            "failed), record a version first"
        )


def collect(reg: Any, *, grace: dt.timedelta = DEFAULT_GRACE, dry_run: bool = False,
            progress: Callable[[int, int], None] | None = None) -> GcReport:
    """Apply retention policies, then delete unreferenced objects and leftovers older than ``grace``.

    ``dry_run``: report all of it, retention's deletions included, and change nothing. Refuses a storage
    holding objects when the registry has never recorded one (``_refuse_foreign_storage``).
    """
    if not isinstance(grace, dt.timedelta) or not dt.timedelta(0) <= grace <= MAX_GRACE:
        raise errors.InvalidEventError(
            f"gc: grace must be a timedelta from 0 to {MAX_GRACE.days} days, got {grace!r}"
        )
    _refuse_foreign_storage(reg)
    with contextlib.nullcontext() if dry_run else _collecting(reg):
        return _collect(reg, grace, dry_run, progress)


def _collect(reg: Any, grace: dt.timedelta, dry_run: bool, progress: Callable[[int, int], None] | None) -> GcReport:
    report = GcReport(grace.total_seconds(), dry_run)
    with reg._read("reading retention policies") as conn:
        names = retention.models_with_policies(conn)
        if dry_run:  # what apply would delete, without appending
            report.retention_deleted = {n: d for n in names if (d := retention.pending(conn, n))}
    if not dry_run:
        report.retention_deleted = {n: d for n in names if (d := retention.apply(reg, n))}
    with reg._read("reading versions") as conn:
        cutoff = db_now(conn) - grace
        # A dry run counts retention's deletions as made now: after the cutoff unless the grace is 0.
        gone = frozenset((n, v) for n, vs in report.retention_deleted.items() for v in vs if dry_run and not grace)
        referenced = _referenced(conn, cutoff, gone)
        rows = {r.digest: r for r in conn.execute(sa.select(objects))}
    found, leftovers = listing.scan(reg.store)
    stored = {o.digest: o for o in found}
    report.examined_objects, report.examined_bytes = len(stored), sum(o.nbytes for o in found)
    doomed, back = _candidates(rows, stored, referenced, cutoff)
    if back and not dry_run:
        settled = _bring_back(reg.event_store, back)
        log.info("gc: %d object(s) an interrupted gc was deleting are live again (a kept version names them)",
                 len(settled))
    total = sum(doomed.values())
    if progress is not None:
        progress(0, total)
    order = sorted(doomed)
    for i in range(0, len(order), BATCH):
        batch = {d: doomed[d] for d in order[i : i + BATCH]}
        gone_now = list(batch) if dry_run else _reclaim(reg, batch, cutoff)
        report.reclaimed += [d for d in gone_now if d in stored]
        report.reclaimed_bytes += sum(stored[d].nbytes for d in gone_now if d in stored)
        if progress is not None:
            progress(report.reclaimed_bytes, total)
    report.reclaimed_objects = len(report.reclaimed)
    report.kept_objects = report.examined_objects - report.reclaimed_objects
    report.kept_bytes = report.examined_bytes - report.reclaimed_bytes
    _leftovers(reg, leftovers, cutoff, report)
    return report


def _reclaim(reg: Any, batch: Mapping[str, int], cutoff: dt.datetime) -> list[str]:
    doomed = _tombstone(reg.event_store, batch, cutoff)
    if doomed:
        reg.store.delete(doomed)
        _finish(reg.event_store, doomed)
    return doomed


def _leftovers(reg: Any, found: list[listing.Leftover], cutoff: dt.datetime, report: GcReport) -> None:
    report.leftovers_examined = len(found)
    for item in found:
        if item.modified is None or item.modified >= cutoff:
            continue
        if not report.dry_run:
            listing.remove_leftover(reg.store, item)
        report.leftovers_reclaimed += 1
        report.leftover_bytes_reclaimed += item.nbytes


def reupload(store: Any, tensors: Mapping[str, Any], manifest: Mapping[str, Any]) -> None:
    """Store ``tensors`` again; ``ObjectsCollectedError`` unless they still make exactly ``manifest``."""
    again = store.put(tensors)
    if set(storage.manifest_objects(again)) != set(storage.manifest_objects(manifest)):
        raise ObjectsCollectedError(
            "gc reclaimed objects of this write and its tensors changed since they were stored: nothing was recorded"
        )
