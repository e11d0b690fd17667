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
   or with a ``deleted`` one: stored more than ``grace`` ago), and every object whose row is
   ``deleting`` (another gc's claim, running or interrupted: it condemned the object already, and may
   have deleted part of it). In one transaction per batch (the tombstone) it locks each row, re-checks
   that it is ``live`` and untouched since the cutoff, or not ``live`` at all, and *claims* it:
   ``deleting`` at ``generation + 1``, a row already ``deleting`` or ``deleted`` too. Every claim starts
   a generation, so a row's state and generation never come back to a pair anyone saw before it. Then,
   in one transaction per batch (the finish), it locks the rows again, keeps those still ``deleting``
   at the generation it claimed, deletes their objects from storage while it holds their locks, and
   marks them ``deleted``. A row claimed again since is the later claim's: this gc deletes neither it
   nor its object (and a row a writer made ``live`` again is at a later generation too).
3. Row locks order a writer and a tombstone. If the writer's append commits first, ``gc`` leaves the
   object: either its touch is newer than the cutoff, or (a grace shorter than the append's
   transaction, which touched the rows before its slow fsyncs and commit) the tombstone, holding the
   rows' locks, finds the new version among those recorded or restored since gc read the references
   (events past the head it read first: positions are commit-ordered). If
   the tombstone commits first, the writer's append sees ``deleting`` (or ``deleted``, or another
   generation) and does not commit; a revive after it finds another generation and does not either.
   So no committed version names a deleted object, whatever the timing (and however many gcs run, 4);
   a writer that stalls past the grace period re-uploads.
4. No lock between gcs is needed (two gcs only duplicate work). Only the latest claim of a row may
   finish it, and a gc deletes an object from storage only in its finish, holding the row's lock, with
   the row ``deleting`` at its own claim's generation; the same transaction marks it ``deleted``. So
   while any gc may still delete the object (claimed, not finished), the row is ``deleting``, or is
   locked by the finish doing it: a writer waits (``touch`` reports it busy), and a revive flips only a
   row still ``deleted`` at the generation the writer saw before it looked at storage (and uploaded):
   a row reaches ``deleted`` only in the commit of the finish that deleted the object, and every later
   claim changes the generation. An older claim (a gc that paused after its tombstone while later ones
   collected the object and a writer stored it again) finds another generation at its finish and
   leaves the row and the object alone. A ``deleting`` row left by an interrupted gc (killed, Ctrl-C, a
   storage or database error between tombstone and finish) holds writers until a gc claims it again,
   deletes what is left of the object and finishes it (``restore_version`` of a deleted version naming
   it then says its objects were reclaimed). The one assumption: a storage delete does not outlive the
   finish transaction's hold on the rows. On SQLite that hold (the write lock) ends only with the
   transaction or its process (a stopped gc holds writers meanwhile, as a stopped writer does). On
   PostgreSQL the finish turns ``idle_in_transaction_session_timeout`` off for itself, but a session
   ended otherwise (``pg_terminate_backend``, a proxy or firewall dropping the connection) while a
   delete request is still in flight frees the rows first: another gc's whole collection and a
   writer's re-upload and commit would then have to complete before that request lands.

Rows are never removed (a row's generation is what tells a writer its object was collected in
between). The table is derived: lost rows are recreated by the next touch, and ``gc`` treats an
object without a row by its age in storage. ``gc`` also removes leftovers of interrupted writes older
than ``grace``: temporary files and incomplete S3 multipart uploads.

A registry collects only its own storage: ``gc`` refuses (``StorageMismatchError``, nothing deleted)
when the registry has never recorded an object (no row in its objects table, no version ever) but its
storage holds objects stored before the registry was bound to it (made there, or moved there by
``rlreg storage move``): those are another registry's, seen through a mistyped or missing database
URL or moved onto by mistake, which a collection would delete wholesale. And it refuses
(``StorageSharedError``) a storage that another registry records itself as holding (``registry.binding``,
``storage.holders``): each registry records itself before it stores its first object and before it
collects. gc takes a lease on the storage (``collecting/<registry id>.<token>.json``, renewed while it
runs; a gc whose lease may have lapsed stops before its next delete)
before it looks at the records, and a registry that records itself asks for others' leases after its
record is written and before it stores anything (refused, ``ConflictError``, while one is live): either
gc sees the newcomer's record, or the newcomer sees gc's lease.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import storage
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from storage import listing

from registry import actor as actors
from registry import binding, db, errors, lifecycle, retention
from registry.projections import VERSION_RECORDED
from registry.schema import deleted_versions, events, objects, versions

log = logging.getLogger(__name__)

LIVE, DELETING, DELETED = "live", "deleting", "deleted"
DEFAULT_GRACE = dt.timedelta(hours=24)
# Leftovers (temporary files, incomplete multipart uploads) are removed only once this old too, whatever the
# grace: one younger may be a write in flight (a gc with grace 0 removed a snapshot's temporary file before
# its rename, and the snapshot failed with "not found").
LEFTOVER_AGE = dt.timedelta(hours=1)
# Longer than any registry has been kept: a grace past it is a typo (``--grace 1e12d``), and one near
# datetime's range would make the cutoff (the database clock minus the grace) overflow.
MAX_GRACE = dt.timedelta(days=3650)
# How much earlier than the event that bound its registry to a storage an object of that registry may seem
# stored there (S3 keeps whole seconds, and a storage's clock is not the client's): see _refuse_foreign_storage.
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
        try:
            with event_store.engine.connect() as conn:
                return conn.execute(query, {"d": object_digest}).first() is not None
        except sa.exc.SQLAlchemyError:  # (on an upload thread) a lost database: ask the object store instead;
            return True  # the append that follows reports the database's error

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
        "recorded: retry the write, or run `rlreg gc` to finish the collection an interrupted gc left"
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


# The events after a position that make a version reference its objects: a version recorded (the manifest
# is in its payload) or restored (its row's). Read by position (the log's own order): what was appended
# while gc ran, not the models' whole histories.
_REFERENCING_SINCE = sa.select(events.c.stream, events.c.type, events.c.payload).where(
    events.c.position > sa.bindparam("since"), events.c.type.in_([VERSION_RECORDED, lifecycle.VERSION_RESTORED]),
)
_MANIFEST = sa.select(versions.c.manifest).where(versions.c.name == sa.bindparam("name"),
                                                  versions.c.version == sa.bindparam("version"))


def _referenced_since(conn: Connection, since: int) -> set[str]:
    """Objects of the versions recorded or restored after position ``since`` (deleted since or not: kept)."""
    out: set[str] = set()
    for stream, kind, payload in conn.execute(_REFERENCING_SINCE, {"since": since}):
        if kind == VERSION_RECORDED:
            manifest = payload["manifest"]
        else:
            manifest = conn.execute(_MANIFEST, {"name": stream, "version": payload["version"]}).scalar()
        if manifest is not None:
            out |= set(storage.manifest_objects(manifest))
    return out


def _candidates(rows: Mapping[str, Any], stored: Mapping[str, Any], referenced: set[str],
                cutoff: dt.datetime) -> dict[str, int]:
    """The objects to delete (``{digest: bytes}``): those no kept version references and nobody touched (or,
    without a live row, stored) since ``cutoff``, and every ``deleting`` row's (see the module docstring, 4)."""
    out = {}
    for d in set(rows) | set(stored):
        row, obj = rows.get(d), stored.get(d)
        if row is not None and row.state == DELETING:  # another gc's claim, running or interrupted: condemned
            old = True
        elif d in referenced:
            continue
        elif row is None or row.state == DELETED:  # stored by a writer that died before touching it: its age
            old = obj is not None and obj.modified is not None and obj.modified < cutoff
        else:
            old = row.state == LIVE and row.touched_at < cutoff
        if old:
            out[d] = obj.nbytes if obj is not None else 0
    return out


def _tombstone(event_store: Any, batch: Mapping[str, int], cutoff: dt.datetime,
               since: int | None = None) -> dict[str, int]:
    """Claim the rows of ``batch`` that are still live and untouched since ``cutoff``, or not live (``deleting``:
    another gc's claim; ``deleted``; no row yet): ``deleting`` at ``generation + 1``. Returns ``{digest:
    generation claimed}``: what only this gc's ``_finish`` may finish (until another claim).

    ``since``: the log's head before gc read which objects are referenced. A live row is not claimed if a
    version recorded or restored after it references the object: a writer touches its rows in its append's
    transaction, before it commits (a slow fsync, a short grace): gc may have taken its cutoff after that
    touch and read the references before that commit. Once this transaction holds the rows' locks, every
    append that touched them has committed (SQLite's write lock; PostgreSQL's row locks), and its events
    are past ``since`` (positions are commit-ordered)."""
    with event_store.transaction() as conn:
        now = db_now(conn)
        new = [{"digest": d, "nbytes": n, "state": DELETED, "generation": 0, "touched_at": now}
               for d, n in batch.items()]  # (no row yet: claimed below, as a collected one)
        conn.execute(_insert(conn).values(new).on_conflict_do_nothing())
        rows = _locked_rows(conn, list(batch))
        claimed = {d: r.generation + 1 for d, r in rows.items() if r.state != LIVE or r.touched_at < cutoff}
        if since is not None and any(rows[d].state == LIVE for d in claimed):
            for d in _referenced_since(conn, since) & set(claimed):
                if rows[d].state == LIVE:
                    del claimed[d]
        # A new generation for every claim, a row another gc claimed too: its finish then leaves the row (and
        # the object) to this one, and a writer that saw the row 'deleted' before cannot take this collection's
        # 'deleted' for the one it saw (revive compares generations).
        _set(conn, claimed, state=DELETING, generation=objects.c.generation + 1)
    return claimed


def _finish(event_store: Any, claimed: Mapping[str, int],
            delete: Callable[[list[str]], Any] | None = None) -> list[str]:
    """Of the rows ``_tombstone`` claimed (``{digest: generation}``), those still ``deleting`` at that generation:
    delete their objects (``delete``, while this transaction holds the rows' locks) and mark them ``deleted``,
    in one transaction; returns them. The others were claimed again since (by a later gc, whose claim they
    are: a writer may have stored the object again after that one's finish): left alone, objects too."""
    if not claimed:
        return []
    with event_store.transaction() as conn:
        if not db.is_sqlite(conn):  # a server-side idle timeout must not end the session while storage deletes
            conn.execute(_NO_IDLE_TIMEOUT)
        rows = _locked_rows(conn, list(claimed))
        mine = sorted(d for d, g in claimed.items()
                      if d in rows and rows[d].state == DELETING and rows[d].generation == g)
        if mine:
            if delete is not None:
                delete(mine)
            _set(conn, mine, state=DELETED)
    return mine


_NO_IDLE_TIMEOUT = sa.text("SET LOCAL idle_in_transaction_session_timeout = 0")


def _refuse_foreign_storage(reg: Any) -> None:
    """``StorageMismatchError`` when the registry has never recorded an object but its storage holds some
    stored before the registry was bound to that storage (less ``CLOCK_SLACK``): the latest ``StorageBound``
    or ``StorageMoved`` event (``registry.binding``), else (a registry made before storage was recorded)
    its first event.

    Those are another registry's (its storage URL given with a mistyped or missing database URL, which
    opened a new, empty registry, or an empty registry moved onto it with ``rlreg storage move``):
    collecting would delete every one older than the grace period. Dating them from the binding, not
    from the registry's first event, covers a registry made long ago, left empty, and moved onto a
    storage in use since. The objects of this registry's first snapshot, stored while gc runs, are
    younger than the binding and are collected as ever. A registry that recorded anything (a row in its
    objects table, a version, even a deleted one) passes at the cost of two indexed reads; only an
    empty one lists its storage.
    """
    with reg._read("reading the objects table") as conn:
        if (conn.execute(sa.select(objects.c.digest).limit(1)).first() is not None
                or conn.execute(sa.select(versions.c.name).limit(1)).first() is not None):
            return
        bound = conn.execute(
            sa.select(events.c.timestamp)
            .where(events.c.stream == binding.REGISTRY_STREAM, events.c.type.in_(binding.STORAGE_EVENTS))
            .order_by(events.c.stream_version.desc()).limit(1)
        ).scalar()
        if bound is None:
            bound = conn.execute(sa.select(events.c.timestamp).order_by(events.c.position).limit(1)).scalar()
    found, _ = listing.scan(reg.store)
    older = [o for o in found if bound is None or o.modified is None or o.modified < bound - CLOCK_SLACK]
    if older:
        raise errors.StorageMismatchError(
            f"gc refused: the registry at {reg._where()} has never recorded an object, but its storage "
            f"{reg.storage_url!r} holds {len(older)} object(s) stored before the registry was bound to it (made "
            "there, or moved there by `rlreg storage move`): they belong to another registry (check --db or "
            "RLREG_DB_URL: a mistyped or missing database URL opens a new, empty registry). Nothing was "
            "deleted; if they are this registry's own (a first snapshot that failed), record a version first"
        )


def collect(reg: Any, *, grace: dt.timedelta = DEFAULT_GRACE, dry_run: bool = False,
            progress: Callable[[int, int], None] | None = None) -> GcReport:
    """Apply retention policies, then delete unreferenced objects and leftovers older than ``grace``.

    ``dry_run``: report all of it, retention's deletions included, and change nothing. Refuses a storage
    holding objects when the registry has never recorded one (``_refuse_foreign_storage``). Several gcs
    may run at once (see the module docstring, 4).
    """
    if not isinstance(grace, dt.timedelta) or not dt.timedelta(0) <= grace <= MAX_GRACE:
        raise errors.InvalidEventError(
            f"gc: grace must be a timedelta from 0 to {MAX_GRACE.days} days, got {grace!r}"
        )
    _refuse_foreign_storage(reg)
    if dry_run:  # (changes nothing: no lease, no record)
        _refuse_shared_storage(reg)
        return _collect(reg, grace, dry_run, progress)
    # The lease first, then the look (``storage.holders``): a registry that records itself after the
    # look sees the lease, and stores nothing until it ends. The look comes before this registry records
    # itself there: a storage another registry holds is left as it was.
    with binding.lease(reg.store, reg._own_id(), reg.db_url, actors.process_actor()) as lease:
        try:
            _refuse_shared_storage(reg)
            reg._hold_storage()
            return _collect(reg, grace, dry_run, progress, lease)
        except errors.StorageSharedError:  # (at either look: no object deleted yet)
            try:
                _abandon_claims(reg)
            except Exception as exc:  # noqa: BLE001 - the refusal is what to say; the next gc tries again
                log.warning("gc refused: the rows an interrupted gc left claimed stay so (%s)", exc)
            raise


def _abandon_claims(reg: Any) -> None:
    """Rows an interrupted gc left ``deleting`` (claimed, maybe partly deleted), when this gc is refused the
    storage: claimed and marked ``deleted`` without deleting their objects, so that writers of those objects
    are not held until a gc that cannot run (a ``deleted`` row makes a writer look at storage and upload
    what is missing; the objects stay, as every other object of a shared storage)."""
    with reg._read("reading the objects table") as conn:
        cutoff = db_now(conn)
        rows = {r.digest: r.nbytes for r in conn.execute(sa.select(objects.c.digest, objects.c.nbytes)
                                                          .where(objects.c.state == DELETING))}
    for order in _batches(sorted(rows)):
        _finish(reg.event_store, _tombstone(reg.event_store, {d: rows[d] for d in order}, cutoff))


def _batches(items: list[str]) -> Iterable[list[str]]:
    return (items[i : i + BATCH] for i in range(0, len(items), BATCH))


def _refuse_shared_storage(reg: Any) -> None:
    """``StorageSharedError`` when another registry records itself as a holder of the storage
    (``registry.binding``): its versions may use objects this registry's no longer do."""
    others = binding.others(reg.store, reg.registry_id)
    if others:
        raise binding.shared_refusal(reg._where(), reg.storage_url, others)


def _collect(reg: Any, grace: dt.timedelta, dry_run: bool, progress: Callable[[int, int], None] | None,
             lease: Any = None) -> GcReport:
    report = GcReport(grace.total_seconds(), dry_run)
    with reg._read("reading retention policies") as conn:
        names = retention.models_with_policies(conn)
        if dry_run:  # what apply would delete, without appending
            report.retention_deleted = {n: d for n in names if (d := retention.pending(conn, n))}
    if not dry_run:
        report.retention_deleted = {n: d for n in names if (d := retention.apply(reg, n))}
    since = reg.event_store.head()  # (before the references are read: see _tombstone)
    with reg._read("reading versions") as conn:
        cutoff = db_now(conn) - grace
        # A dry run counts retention's deletions as made now: after the cutoff unless the grace is 0.
        gone = frozenset((n, v) for n, vs in report.retention_deleted.items() for v in vs if dry_run and not grace)
        referenced = _referenced(conn, cutoff, gone)
        rows = {r.digest: r for r in conn.execute(sa.select(objects))}
    found, leftovers = listing.scan(reg.store)
    _refuse_shared_storage(reg)  # (again: the lease is what keeps a newcomer off; this stops gc early)
    stored = {o.digest: o for o in found}
    report.examined_objects, report.examined_bytes = len(stored), sum(o.nbytes for o in found)
    doomed = _candidates(rows, stored, referenced, cutoff)
    total = sum(doomed.values())
    if progress is not None:
        progress(0, total)
    order = sorted(doomed)
    for part in _batches(order):
        batch = {d: doomed[d] for d in part}
        gone_now = list(batch) if dry_run else _reclaim(reg, batch, cutoff, since, lease)
        report.reclaimed += [d for d in gone_now if d in stored]
        report.reclaimed_bytes += sum(stored[d].nbytes for d in gone_now if d in stored)
        if progress is not None:
            progress(report.reclaimed_bytes, total)
    report.reclaimed_objects = len(report.reclaimed)
    report.kept_objects = report.examined_objects - report.reclaimed_objects
    report.kept_bytes = report.examined_bytes - report.reclaimed_bytes
    _leftovers(reg, leftovers, min(cutoff, cutoff + grace - LEFTOVER_AGE), report, lease)
    return report


def _reclaim(reg: Any, batch: Mapping[str, int], cutoff: dt.datetime, since: int, lease: Any = None) -> list[str]:
    """Claim ``batch`` (``_tombstone``), then delete and finish what is still this gc's claim; returns that.
    ``lease`` (``storage.holders.Lease``) is checked before each: a lapsed one stops gc (a claim left
    ``deleting`` is the next gc's to finish)."""
    if lease is not None:
        lease.check()
    claimed = _tombstone(reg.event_store, batch, cutoff, since)

    def delete(digests: list[str]) -> Any:
        if lease is not None:
            lease.check()
        return reg.store.delete(digests)

    return _finish(reg.event_store, claimed, delete)


def _leftovers(reg: Any, found: list[listing.Leftover], cutoff: dt.datetime, report: GcReport,
               lease: Any = None) -> None:
    report.leftovers_examined = len(found)
    if lease is not None and not report.dry_run:
        lease.check()
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
