"""``Registry``: record RLModule specs and state snapshots as events, and replay them."""

from __future__ import annotations

import datetime
import functools
import inspect
import json
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import rlmodule
import sqlalchemy as sa
import storage
from storage import config as storage_config
from storage import forklocks, holders
from storage.jsondepth import check_value as check_json_depth
from storage.progress import ProgressCallback

from registry import actor as actors
from registry import binding, config, db, deleting, errors, lifecycle, query, retention, storage_ops, uri
from registry import tags as labels
from registry import offline as offline_cache
from registry import gc as collector
from registry.eventstore import Event, EventStore, NewEvent, closed_message, encode_json
from registry.modeldiff import ModelDiff, diff_versions
from registry.names import (
    MAX_INTEGER, did_you_mean, nul_in, validate_alias, validate_name, validate_position, validate_version,
)
from registry.projections import (
    ALIAS_REMOVED, ALIAS_SET, DESCRIPTION_SET, SPEC_RECORDED, TAGS_REMOVED, TAGS_SET, VERSION_RECORDED,
    Projections, canonical_json, text_digest,
)
from registry.records import ModelInfo, ModelVersion
from registry.schema import PROJECTION_TABLES, aliases, models, specs, version_fields, versions

if TYPE_CHECKING:
    from registry.pending import PendingVersion, SnapshotQueue

VERSION_FIELDS = [c for c in versions.c if c.name not in ("manifest", "state")]  # what a listing reads

_ALIAS_VERSION = sa.select(aliases.c.version).where(aliases.c.name == sa.bindparam("name"),
                                                     aliases.c.alias == sa.bindparam("alias"))
_HEAD_MODEL = sa.select(models.c.latest_version, models.c.spec_digest).where(models.c.name == sa.bindparam("name"))
# A snapshot's append overlaps the writing of its objects only up to this size (local storage): the
# transaction waits for the writes while it holds the registry's write lock
OVERLAP_MAX_BYTES = 16 << 20
HOLD_RECHECK = 300  # seconds between a client's looks that its registry's record is still in a bucket
MAX_ATTEMPTS = 200  # optimistic-concurrency retries of one append before ConflictError escapes
LOST_REPLY_ATTEMPTS = 4  # resends of the same events after the database stopped answering


class Registry:
    """Models recorded as events in a database (SQLite or PostgreSQL), tensors in a ``storage.Store``."""

    def __init__(
        self,
        db_url: str | None = None,
        storage_url: str | None = None,
        *,
        cache_dir: str | None = None,
        upgrade: bool = False,
        trusted_modules: Any = None,
        create: bool = True,
        actor: str | Mapping[str, Any] | None = None,
        pending_snapshots: int | None = None,
        offline: bool | None = None,
    ) -> None:
        """Open the registry; ``create=False`` refuses a database that holds no registry yet.

        ``offline`` (default: ``RLREG_OFFLINE``): neither the database nor the bucket is contacted;
        versions loaded once online with this cache load from it (``registry.offline``), aliases
        resolve to their last sighting with an ``OfflineAliasWarning``, and anything else is an
        ``OfflineError`` (``NotCachedError`` for what the cache lacks).

        Every event records its actor (``registry.actor``): this process (OS user, host, pid, rlreg
        version, ``RLREG_ACTOR``, ``RLREG_RUN_ID``), with the fields of ``actor`` (a name, or a
        mapping of fields) and of ``acting_as(...)`` put over it.

        With ``create=True`` (the default, and what the module-level helpers use) an empty database,
        or a SQLite file that does not exist yet, becomes an empty registry on first use. Read-only
        callers pass ``create=False`` so that a mistyped URL raises ``NotFoundError`` naming it.
        ``pending_snapshots``: how many ``snapshot(block=False)`` may be in flight before the next waits
        (default ``registry.pending.DEFAULT_LIMIT``).
        """
        self.db_url = str(db_url) if db_url else config.default_db_url()
        self.trusted_modules = trusted_modules
        self.offline = storage_config.offline() if offline is None else bool(offline)
        self._actor = actors.override(actor)
        self._acting_as: ContextVar[dict[str, Any]] = ContextVar(f"rlreg_actor_{id(self)}", default={})
        self._joined: ContextVar[sa.Connection | None] = ContextVar(f"rlreg_joined_{id(self)}", default=None)
        self._specs = _Remembered()  # spec texts by digest (content-addressed, immutable) and resolved specs
        self._versions_json = _Remembered(16)  # _ParsedVersion by (name, version, position); 2,000 tensors: ~1 MB
        self._templates: Any = None  # registry.templates.Templates (torch), made on the first load
        self._checkpoints = _Remembered(16)  # registry.fs: the rlreg:// checkpoints of versions restored lately
        self._loaded_rows = _Remembered(64)  # _stored's reads, kept while the database is unchanged (SQLite)
        self._changes: db.ChangeCounter | None = None
        self._closing = False  # close() was called: only the snapshots it waits for still use the registry
        # makes the snapshot queue, or (close()) takes the last look at it; made again in a forked child
        self._queue_lock = forklocks.new_lock(self, "_queue_lock")
        # The store and the snapshot queue are made on first use: reads of the log need no torch.
        self._cache_dir = cache_dir
        self._store: storage.Store | None = None
        self._checked_binding: binding.Binding | None = None  # what _check_binding last read
        self._id: str | None = None  # binding.registry_id, once read
        self._held: str | None = None  # the storage URL this client recorded the registry as a holder of
        self._held_at = 0.0  # when it last saw the record there (time.monotonic())
        self._hold_lock = forklocks.new_lock(self, "_hold_lock")
        self._remembered: offline_cache.OfflineCache | None = None
        if pending_snapshots is not None:
            from registry.pending import check_limit  # no torch: refused here, not at the first snapshot

            check_limit(pending_snapshots)  # (before anything is opened that would need closing)
        if self.offline:  # never connects: the records of the cache stand in for the database
            self._events = offline_cache.Unreachable(self._where())
            self._pending_limit, self._queue = pending_snapshots, None
            given = str(storage_url) if storage_url else config.storage_url_setting()
            url = binding.normalize(given) if given else self._offline_cache.storage_url()
            self._binding, self.storage_url = binding.Binding(url, 0), url
            return
        self._events = EventStore(self.db_url, Projections(), upgrade=upgrade, create=create, actor=self.current_actor)
        self._changes = db.change_counter(self._events.engine)
        self._pending_limit = pending_snapshots
        self._queue: SnapshotQueue | None = None
        try:
            given = str(storage_url) if storage_url else config.storage_url_setting()
            self._bind(binding.bind(self._events, given, config.default_storage_url, record=create, where=self._where()))
        except BaseException:
            self._events.close()
            raise

    def _where(self) -> str:
        return db.normalize_url(self.db_url).render_as_string(hide_password=True)

    def _bind(self, bound: binding.Binding) -> None:
        self._binding = bound
        self.storage_url = bound.url
        self._store = None  # opened on first use, at this URL

    def __repr__(self) -> str:
        return f"Registry({self._where()!r}, {self.storage_url!r})"

    def close(self) -> None:
        """Wait for pending snapshots, release database connections; raise a pending snapshot's uncollected error.

        From the call on, any other use raises ``ClosedError`` (a ``snapshot(block=False)`` too: it
        would not be waited for); only the snapshots already pending still run, and commit.
        """
        if self._queue is not None:
            self._queue.refuse_within_job("close()")  # (before anything is closed)
        with self._queue_lock:  # a snapshot queue made after this look would not be waited for: none is
            self._closing = True
            queue = self._queue
        try:
            if queue is not None:
                queue.close(lambda: errors.ClosedError(closed_message(self._where())))
        finally:
            self._events.close()  # first: the counter cannot connect again once it is closed
            if self._changes is not None:
                self._changes.close()

    @property
    def closed(self) -> bool:
        """``close()`` was called (it may still be waiting for pending snapshots): any later use raises
        ``ClosedError`` (open a new ``Registry``)."""
        return self._closing or self._events.closed

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def current_actor(self) -> dict[str, Any]:
        """The actor the next event appended here (in this thread or task) records."""
        return {**actors.process_actor(), **self._actor, **self._acting_as.get()}

    @contextmanager
    def acting_as(self, actor: str | Mapping[str, Any] | None = None, **fields: Any) -> Iterator[dict[str, Any]]:
        """Within the block (this thread or task only), events record ``actor`` (a name, or fields).

        E.g. a server recording a request on behalf of a token's owner:
        ``with reg.acting_as("alice", via="web"): reg.set_alias(...)``.
        """
        token = self._acting_as.set({**self._acting_as.get(), **actors.override(actor, **fields)})
        try:
            yield self.current_actor()
        finally:
            self._acting_as.reset(token)

    def _check_binding(self) -> None:
        """Refuse to write objects when another client has moved (or bound) the storage since we opened
        (or since the last check: only the ``$registry`` events after it are read)."""
        now = self._checked_binding = binding.recorded(self._events, self._checked_binding)
        if now.url is not None and now.url != self.storage_url:
            raise binding.moved_away(self._where(), self.storage_url, now.url)

    def storage_history(self) -> list[Event]:
        """The events that bound or moved this registry's storage, oldest first (the last one holds)."""
        return [e for e in self._log.read_stream(binding.REGISTRY_STREAM) if e.type in binding.STORAGE_EVENTS]

    def storage_events(self) -> list[Event]:
        """``storage_history()`` and the ``StorageHolderForgotten`` events among them, oldest first."""
        kinds = (*binding.STORAGE_EVENTS, binding.HOLDER_FORGOTTEN)
        return [e for e in self._log.read_stream(binding.REGISTRY_STREAM) if e.type in kinds]

    @property
    def registry_id(self) -> str | None:
        """This registry's id: its database's first event's id, as its storage's holder records name it
        (``None`` while nothing was recorded)."""
        if self._id is None:
            self._id = binding.registry_id(self._log)
        return self._id

    def _own_id(self) -> str:
        """``registry_id``, binding an empty log first (a database made by `rlreg db upgrade`) so it has one."""
        if self.registry_id is None:
            binding.bind(self._events, self.storage_url, config.default_storage_url, record=True, where=self._where())
        return self.registry_id  # type: ignore[return-value]

    def _hold_storage(self) -> None:
        """Record this registry as a holder of its storage (``storage.holders``) before it stores an object,
        and refuse (``ConflictError``) while another registry's gc deletes objects there; warns
        (``StorageSharedWarning``) if the record made it share the storage. Once per client and URL, then
        a look that the record is still there: at each write on a local folder (a stat), every
        ``HOLD_RECHECK`` seconds on a bucket (a HEAD)."""
        with self._hold_lock:  # (a thread that finds the registry held may store at once: the look is done)
            url = self.storage_url
            if self._held == url:
                recheck = self.store.is_local or time.monotonic() - self._held_at >= HOLD_RECHECK
                if not recheck or holders.recorded(self.store, self._own_id()):
                    self._held_at = time.monotonic() if recheck else self._held_at
                    return
            held = binding.hold(self.store, self._own_id(), self.db_url, actors.process_actor())
            self._warn_shared(url, held)
            if held.collecting:  # (the record stays: it is the registry's, which other clients may count on)
                self._held = None  # (the next write asks for leases again, however it finds the record)
                raise binding.collecting_refusal(self._where(), url, held.collecting)
            self._held, self._held_at = url, time.monotonic()

    def _warn_shared(self, url: str, held: binding.Held) -> None:
        """``StorageSharedWarning`` when recording this registry at ``url`` made it share that storage."""
        if held.others:
            warnings.warn(binding.shared_warning(self._where(), url, held.others), errors.StorageSharedWarning,
                          stacklevel=3)

    def storage_holders(self) -> list[dict[str, Any]]:
        """The registries that record themselves as holders of this registry's storage (this one once it
        snapshotted, restored or collected there): ``{"holder": id, "this": bool, "database", "url", "since",
        "actor"}`` each (``"damaged"``: a record that cannot be read). gc refuses a storage held by another."""
        me = self.registry_id
        return [{**record, "holder": h, "this": h == me} for h, record in holders.holders(self.store).items()]

    def storage_collecting(self) -> dict[str, datetime.datetime]:
        """The live gc leases on this registry's storage (``storage.holders``): ``{registry id: last renewed}``
        (a gc killed leaves one that counts for 10 minutes after its last renewal)."""
        return holders.collecting(self.store)

    def forget_storage_holder(self, holder: str) -> Event:
        """Remove another registry's holder record from this registry's storage (its database is gone for
        good), recording ``StorageHolderForgotten``. gc may then delete objects only that one's versions used:
        a registry still in use records itself again at its next snapshot, import or restore (a client on a
        bucket looks every 5 minutes), and gc refuses from then on."""
        return binding.forget(self._log, self.store, self.registry_id, holder, self._where())

    def move_storage(self, url: str) -> Event:
        """Record that the objects now live at ``url``, after checking every object the versions need is there.

        Raises ``StorageMoveError`` naming the missing objects (nothing is recorded). Copy the objects
        first (``aws s3 sync``, ``rsync -a``) and pause writers during the move: a snapshot that
        opened on the old URL is refused once the move is recorded.
        """
        new = binding.normalize(url)
        current = binding.recorded(self._log)
        previous = current.url or self.storage_url
        if new == previous:
            raise errors.StorageMismatchError(f"storage move: the registry at {self._where()} is already at {new!r}")
        with self._read("reading versions") as conn:
            manifests = conn.execute(sa.select(versions.c.manifest)).scalars().all()
        needed = set().union(*(storage.manifest_objects(m) for m in manifests))
        target = storage.Store(new, cache_dir=self._cache_dir)
        me = self._own_id()
        # Held before the check (a gc of another registry there then sees this one and leaves the objects).
        held = binding.hold(target, me, self.db_url, actors.process_actor())
        try:
            if held.collecting:
                raise binding.collecting_refusal(self._where(), new, held.collecting)
            missing = sorted(needed - target.exists(needed)) if needed else []
            if missing:
                raise binding.move_refused(previous, new, missing, len(needed))
            event = binding.record_move(self._events, current, previous, new)
        except BaseException:
            if held.written:  # (nothing moved: the record goes with it)
                binding.release(target, me)
            raise
        self._bind(binding.Binding(new, event.stream_version, event))
        self._held, self._held_at = new, time.monotonic()
        self._warn_shared(new, held)
        binding.release(storage.Store(previous, cache_dir=self._cache_dir), me)
        return event

    @property
    def store(self) -> storage.Store:
        """The tensor store (opened on first use)."""
        if self._store is None:
            if self.storage_url is None:  # offline, and no load ever recorded where the objects are
                raise errors.NotCachedError(
                    f"the offline cache {self._offline_cache.folder} holds nothing of the database {self._where()}: "
                    f"load a version once online, {offline_cache.ONLINE}, first"
                )
            self._store = storage.Store(self.storage_url, cache_dir=self._cache_dir, offline=self.offline)
        return self._store

    @property
    def _offline_cache(self) -> offline_cache.OfflineCache:
        """The records of offline loads in the cache folder (``registry.offline``)."""
        if self._remembered is None:
            folder = self._cache_dir or storage_config.cache_dir()
            self._remembered = offline_cache.OfflineCache(folder, self.db_url, self._where())
        return self._remembered

    def _refuse_closed(self) -> None:
        """``ClosedError`` once ``close()`` was called (what does not reach the database checks here), but
        not to the pending snapshots ``close()`` waits for (nor their progress callbacks): they still
        read (a retention policy) and record."""
        if self._events.closed or (self._closing and not self._in_own_job()):
            raise errors.ClosedError(closed_message(self._where()))

    def _in_own_job(self) -> bool:
        """Whether this runs within one of this registry's pending snapshots (or its progress callback)."""
        queue = self._queue
        return queue is not None and queue.within_job()

    def _refuse_offline(self, what: str) -> None:
        """``OfflineError`` for a write (or a read of the log) asked offline: nothing is recorded."""
        self._refuse_closed()
        if self.offline:
            raise offline_cache.refused(self._where(), what)

    @property
    def _snapshots(self) -> SnapshotQueue:
        """The queue of ``snapshot(block=False)`` (made on first use, never once ``close()`` was called)."""
        if self._queue is None:
            from registry import pending

            with self._queue_lock:
                self._refuse_closed()
                if self._queue is None:
                    limit = pending.DEFAULT_LIMIT if self._pending_limit is None else self._pending_limit
                    self._queue = pending.SnapshotQueue(limit, inline=self._events.in_memory)
        return self._queue

    @property
    def _log(self) -> EventStore:
        """The event log, for a public method that reads or writes it directly (``ClosedError`` once closing)."""
        self._refuse_closed()
        return self._events

    @property
    def event_store(self) -> EventStore:
        """The event log (``ClosedError`` once ``close()`` was called)."""
        return self._log

    # --- recording -----------------------------------------------------------------------

    def snapshot(
        self,
        name: str,
        module: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        block: bool = True,
        progress: ProgressCallback | None = None,
    ) -> ModelVersion | PendingVersion:
        """Record ``module``'s spec (when it changed) and state as the next version of ``name``.

        ``block=False`` returns a ``PendingVersion`` as soon as the state is copied to host memory
        (``registry.pending``): hashing, writing and the commit run in the background, versions of
        one name commit in call order, and at most ``pending_snapshots`` are in flight (the next
        call waits). ``progress(done, total)``: tensor bytes stored so far (``Store.put``'s).
        """
        validate_name(name)
        self._refuse_offline(f"snapshot of {name!r}")  # (and ClosedError: before a job is queued)
        metadata = _json_metadata(name, metadata)
        if not isinstance(module, rlmodule.RLModule):
            raise TypeError(f"snapshot of {name!r}: {type(module).__name__} is not an RLModule")
        spec = self._module_spec(module)  # (make the dict, its digest)
        if block:
            tensors, rest = _split_checked(name, module)
            return self._record(name, spec, metadata, (tensors, rest, None), progress,
                                lambda: self._snapshots.wait_turn(name))

        def stage() -> tuple:
            tensors, rest = _split_checked(name, module)  # rest: new dicts and lists of immutable leaves
            staged, release = self._snapshots.staging.stage(tensors)
            return staged, rest, release

        def record(staged: tuple, wait_turn: Any) -> ModelVersion:  # on the worker, in the caller's context
            make, rest, release = staged
            try:
                tensors = make()
            except BaseException:
                release()
                raise
            # progress is called on this (the job's) thread as the store's writers store the objects, in a
            # copy of the job's context each time (what a callback leaves set there, an acting_as it never
            # left, is not the snapshot's)
            reporting = None if progress is None else (lambda *a: copy_context().run(progress, *a))
            return self._record(name, spec, metadata, (tensors, rest, release), reporting, wait_turn)

        return self._snapshots.submit(name, stage, record)

    def _after_pending(self, name: str) -> None:
        """Wait for the pending ``snapshot(block=False)`` of ``name``: a write of ``name`` made after one
        is recorded after it (a model deleted after a snapshot call stays deleted). Not from within
        one (its progress callback): that write is recorded at once. Once ``close()`` was called it is
        refused (``ClosedError``) rather than wait."""
        self._refuse_closed()
        if self._queue is not None:
            validate_name(name)  # (a name's tail is looked up by it)
            self._queue.wait_turn(name)

    def _record(self, name: str, spec: tuple, metadata: dict, staged: tuple, progress, wait_turn) -> ModelVersion:
        """Store the tensors, then (once earlier snapshots of ``name`` ended) append the events."""
        tensors, rest, release = staged
        spec, digest = spec
        with storage_ops.during(f"snapshot of {name!r}"):  # nothing is recorded when storage fails
            try:
                self._check_binding()  # (within the try: a refusal gives the staging buffer back too)
                self._hold_storage()
                # Small local objects are written (and fsynced) while the append's statements run, and it
                # commits only after put.wait(): an event never names a blob that is not stored durably.
                # Larger or remote ones are waited for first: the append's transaction holds SQLite's write
                # lock (on PostgreSQL the position counter's row lock) to its commit, and every other
                # writer of the registry, of any model, waits on it.
                remote = not self.store.is_local  # (a local object is checked by one lstat)
                ask = remote and not self._events.in_memory  # (not from upload threads: sqlite:// is for one)
                put = self.store.begin_put(tensors, progress=progress,
                                           may_be_stored=collector.may_be_stored(self._events) if ask else None)
                try:
                    # (not with a progress callback: put.wait() calls it, and one that writes to the registry
                    # from within the append's transaction would wait for that transaction's lock)
                    overlap = progress is None and self.store.is_local and put.nbytes <= OVERLAP_MAX_BYTES
                    if not overlap:
                        put.wait()
                    return self._commit(name, spec, metadata, tensors, rest, put.manifest, digest, wait_turn,
                                        put.wait if overlap else None)
                finally:
                    put.settle()  # no write outlives the call (nor the staging buffer it reads)
            finally:
                if release is not None:
                    release()  # after the commit: gc's protocol may need to upload the tensors again

    def _commit(self, name: str, spec: Callable[[], dict], metadata: dict, tensors: dict, rest: Any, manifest: dict,
                digest: str,
                wait_turn: Any, stored: Any) -> ModelVersion:
        """Append the events of a snapshot; ``stored()`` returns once its objects are durable (before the commit)."""
        size = sum(int(t["nbytes"]) for t in manifest["tensors"].values())

        def events(latest: int, last_digest: str | None) -> list[NewEvent]:
            out = [] if last_digest == digest else [NewEvent(SPEC_RECORDED, {"spec": spec(), "spec_digest": digest})]
            payload = {"version": latest + 1, "spec_digest": digest, "manifest": manifest, "state": rest,
                       "metadata": metadata, "tensor_bytes": size}
            return [*out, NewEvent(VERSION_RECORDED, payload)]

        wait_turn()
        policy: list[bool] = []

        def has_policy(conn: sa.Connection) -> None:  # read in the append: a policy set later applies itself
            policy[:] = [retention.policy_of(conn, name) is not None]

        # gc's protocol: touch the objects in the append (re-upload any it collected meanwhile); the manifest,
        # written into the event and into the versions row, is encoded once
        with db.json_encoded(manifest, encode_json(manifest)):
            recorded = collector.append_referencing(self, name, manifest, events,
                                                    lambda: collector.reupload(self.store, tensors, manifest),
                                                    has_policy, before_commit=stored, fresh=True)
        if not policy or policy[-1]:  # unknown (no check ran): apply it
            retention.apply_after_commit(self, name)  # the new version is the latest, always kept
        last = recorded[-1]
        return ModelVersion(
            name=name, version=last.payload["version"], created_at=last.timestamp, metadata=metadata,
            aliases=(), spec_digest=digest, tensor_bytes=size, position=last.position, actor=last.actor,
        )

    def register(self, name: str, spec: Any) -> str:
        """Record ``spec`` (an RLModuleSpec, MultiRLModuleSpec or its dict) for ``name``; returns its digest."""
        validate_name(name)
        self._refuse_offline(f"register of {name!r}")
        spec_dict, digest = self._spec_dict(dict(spec) if isinstance(spec, Mapping) else rlmodule.spec_to_dict(spec))
        self._after_pending(name)

        def events(latest: int, last_digest: str | None) -> list[NewEvent]:
            if last_digest == digest:
                return []
            return [NewEvent(SPEC_RECORDED, {"spec": spec_dict(), "spec_digest": digest})]

        self._append_with_retry(name, events)
        return digest

    def _module_spec(self, module: rlmodule.RLModule) -> tuple[Callable[[], dict], str]:
        """``_spec_dict`` of ``module``'s spec, remembered by ``rlmodule.spec_key`` (its classes, spaces
        and config, compared exactly): a snapshot of a module whose spec has not changed makes no JSON.
        A spec is remembered only if its key is the same after it was made (another thread may change
        the config meanwhile; a snapshot records the spec as it was while it ran)."""
        key = rlmodule.spec_key(module)
        if key is not None:
            key = ("module", key, repr(self.trusted_modules))
            kept = self._specs.get(key)
            if kept is not None:
                return kept
        kept = self._spec_dict(rlmodule.spec_to_dict(module))
        if key is not None and ("module", rlmodule.spec_key(module), key[2]) == key:  # (not changed meanwhile)
            self._specs.put(key, kept)
        return kept

    def _spec_dict(self, spec: dict) -> tuple[Callable[[], dict], str]:
        """``spec`` as it will be replayed: its classes resolved now (so a load cannot fail on them
        later) and without ``load_state_path`` (the registry supplies the state); as the function that
        makes a fresh copy of it (asked only when the spec is recorded) and its digest.

        Remembered by the canonical JSON of ``spec`` (and the trusted modules): the next snapshot of
        the same module skips the round trip through the spec object and the digest.
        """
        from registry import replay  # torch

        try:
            key = (canonical_json(spec), repr(self.trusted_modules))
        except (TypeError, ValueError):  # not JSON: let the spec object say what is wrong with it
            key = None
        kept = None if key is None else self._specs.get(key)
        if kept is None:
            text = canonical_json(rlmodule.spec_to_dict(replay.spec_object(spec, self.trusted_modules)))
            kept = (text, text_digest(text))
            if key is not None:
                self._specs.put(key, kept)
        text, digest = kept
        return lambda: json.loads(text), digest

    def _append_with_retry(self, name: str, make_events, check: Any = None, before_commit: Any = None) -> list[Event]:
        """Append ``make_events(latest_version, last_spec_digest)`` at the stream's head, retrying clashes.

        ``check(conn)`` runs first in the append's transaction (it may write, or raise to roll back);
        ``before_commit()`` runs last, before the commit (it may wait, or raise to roll back).
        """
        for attempt in range(MAX_ATTEMPTS):
            try:
                return self._append_resending(name, make_events, check, before_commit)
            except _Refused as refused:  # the write itself is refused (e.g. aliases point at it): no retry
                raise refused.error from None
            except errors.ConflictError:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, min(0.002 * 2 ** min(attempt, 6), 0.1)))
        raise AssertionError("unreachable")

    def _append_resending(self, name: str, make_events, check: Any = None, before_commit: Any = None) -> list[Event]:
        """Make the events at the stream's head and append them; when the reply is lost, resend the
        same events (same ids) at the same expected version.

        A commit whose reply never arrived is indistinguishable from one that failed; resending the
        identical events is safe because the event store returns the originally recorded events for
        ids it already holds, so a lost reply never records a version twice. With ``check`` the head is
        read in the append's transaction: on SQLite it holds the write lock from its start, so the head
        cannot move before the append; on PostgreSQL a concurrent append makes this one conflict (and
        the caller retry). Without it the head is read first, and nothing is written when no event is made.
        """
        made = None if check is not None else self._read_head(name, make_events)
        for attempt in range(LOST_REPLY_ATTEMPTS):
            try:
                if check is None:
                    expected, new = made
                    if before_commit is not None:
                        before_commit()
                    return self._events.append(name, new, expected_version=expected) if new else []
                with self._events.transaction() as conn, self._joined_reads(conn):  # check and append commit together
                    check(conn)
                    if made is None:
                        made = self._make_at_head(conn, name, make_events)
                    expected, new = made
                    recorded = self._events.append(name, new, expected_version=expected, conn=conn) if new else []
                    if before_commit is not None:
                        before_commit()  # e.g. the objects the events name are durable only now
                    return recorded
            except errors.DatabaseUnavailableError:
                if attempt == LOST_REPLY_ATTEMPTS - 1:
                    raise
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise AssertionError("unreachable")

    def _read_head(self, name: str, make_events) -> tuple[int, list[NewEvent]]:
        with self._read(f"reading model {name!r}") as conn:
            expected, latest, last_digest = self._head(conn, name)
        return expected, _refusing(make_events, latest, last_digest)

    def _make_at_head(self, conn: sa.Connection, name: str, make_events) -> tuple[int, list[NewEvent]]:
        expected, latest, last_digest = self._head(conn, name)
        return expected, _refusing(make_events, latest, last_digest)

    def _head(self, conn: sa.Connection, name: str) -> tuple[int, int, str | None]:
        """``(stream version, latest version, last spec digest)`` of ``name``."""
        # The stream version first: if it moves after this read, the append conflicts.
        expected = self._events.stream_version(name, conn)
        row = conn.execute(_HEAD_MODEL, {"name": name}).first()
        return (expected, row.latest_version, row.spec_digest) if row else (expected, 0, None)

    @contextmanager
    def _joined_reads(self, conn: sa.Connection) -> Iterator[None]:
        """Within the block, ``_read`` (in this thread or task) reads in ``conn``'s transaction: the reads of
        a ``make_events`` see what the append will build on (and an in-memory database has one connection)."""
        token = self._joined.set(conn)
        try:
            yield
        finally:
            self._joined.reset(token)

    # --- reading -------------------------------------------------------------------------

    @contextmanager
    def _read(self, what: str) -> Iterator[sa.Connection]:
        self._refuse_offline(what)
        joined = self._joined.get()
        if joined is not None:
            with db.translate_errors(what):
                yield joined
            return
        with db.translate_errors(what), self._events.engine.connect() as conn, conn.begin():
            yield conn

    def _row(self, conn: sa.Connection, name: str, version: int | None, alias: str | None) -> Any:
        """The projected version row that ``(version, alias)`` names, or ``NotFoundError``.

        ``name`` may be a whole reference (``walk:3``, ``walk@best``, ``rlreg://walk/3``).
        """
        return self._row_and_model(conn, name, version, alias)[0]

    def _row_and_model(self, conn: sa.Connection, name: str, version: int | None, alias: str | None,
                       json_text: bool = False) -> tuple[Any, Any]:
        """``_row``'s row and the model's row (``lifecycle.model_query``) it was found through;
        ``json_text``: the row's manifest and state unparsed (``lifecycle.version_query``)."""
        ref = uri.reference(name, version, alias)
        name, version, alias = ref.name, ref.version, ref.alias
        model = lifecycle.model_row(conn, name)
        if model is None:
            raise self._no_model(conn, name)
        if alias is not None:
            row = lifecycle.aliased_row(conn, name, alias, json_text)
            if row is None:
                version = conn.execute(_ALIAS_VERSION, {"name": name, "alias": alias}).scalar()
                if version is None:
                    raise errors.NotFoundError(f"model {name!r} has no alias {alias!r}")
        elif version is None:
            return lifecycle.latest_row(conn, model, json_text), model
        else:
            validate_version(version, f"model {name!r}: version")
            row = lifecycle.version_row(conn, name, version, json_text)
        if row is None:
            raise errors.NotFoundError(
                f"model {name!r} has no version {version} (latest is {model.latest_version})"
            )
        lifecycle.refuse_deleted_row(row)
        return row, model

    @staticmethod
    def _no_model(conn: sa.Connection, name: str) -> errors.NotFoundError:
        """``NotFoundError`` for an unknown model, suggesting the closest recorded names."""
        known = conn.execute(sa.select(models.c.name)).scalars().all()
        return errors.NotFoundError(f"no model named {name!r}{did_you_mean(name, known)}")

    def _aliases_of(self, conn: sa.Connection, name: str) -> dict[int, tuple[str, ...]]:
        rows = conn.execute(
            sa.select(aliases.c.alias, aliases.c.version).where(aliases.c.name == name).order_by(aliases.c.alias)
        )
        out: dict[int, tuple[str, ...]] = {}
        for alias, version in rows:
            out[version] = (*out.get(version, ()), alias)
        return out

    @staticmethod
    def _model_version(row: Any, alias_map: Mapping[int, tuple[str, ...]], deleted: Any = None) -> ModelVersion:
        return ModelVersion(
            name=row.name, version=row.version, created_at=row.created_at, metadata=row.metadata or {},
            aliases=alias_map.get(row.version, ()), spec_digest=row.spec_digest,
            tensor_bytes=row.tensor_bytes, position=row.position, actor=row.actor, tags=row.tags or {},
            description=row.description, deleted=deleted,
        )

    def version(self, name: str, version: int | None = None, *, alias: str | None = None) -> ModelVersion:
        """The version that ``version`` (default: the latest) or ``alias`` names."""
        if self.offline:
            row, _ = self._stored(name, version, alias=alias)
            return self._model_version(row, {row.version: row.aliases})
        with self._read(f"reading model {name!r}") as conn:
            row = self._row(conn, name, version, alias)
            return self._model_version(row, self._aliases_of(conn, row.name))

    def versions(
        self, name: str, where: str | None = None, order_by: str | None = None, limit: int | None = None, *,
        include_deleted: bool = False,
    ) -> list[ModelVersion]:
        """The live versions of ``name`` (by version ascending), filtered and sorted in SQL.

        ``where`` and ``order_by`` are in ``registry.query``'s language, e.g. ``where='metadata.mean_return
        > 100 and tags.stage = "eval"'``, ``order_by='-metadata.mean_return'``; ``limit`` keeps the first
        ``limit`` (>= 1). A malformed expression raises ``QueryError`` naming the offending token.
        ``include_deleted``: the deleted ones too, ``deleted`` set.
        """
        validate_name(name)
        _check_limit(limit)
        with self._read(f"reading model {name!r}") as conn:
            if conn.execute(sa.select(models.c.name).where(models.c.name == name)).first() is None:
                raise self._no_model(conn, name)
            if not include_deleted:
                lifecycle.live_model(conn, name)
            target = query.Target(name, versions.c.version, versions.c.created_at, version_fields)
            picked = query.select_versions(target, where, order_by, limit)
            if not include_deleted:
                picked = picked.where(lifecycle.not_deleted(name, versions.c.version))
            numbers = conn.execute(picked).scalars().all()
            gone = lifecycle.deletions(conn, name, numbers) if include_deleted else {}
            return self._versions_by_number(conn, name, numbers, gone)

    def numeric_metadata_keys(self, name: str, *, include_deleted: bool = False) -> list[str]:
        """The top-level metadata keys that hold a number in some live version of ``name``, sorted.

        Read from the search projection's key index (one seek per distinct key, whatever the number of
        versions). ``include_deleted``: deleted versions count too.
        """
        with self._model_read(name, include_deleted) as (conn, live):
            return query.numeric_keys(conn, version_fields, name, live)

    def metadata_series(self, name: str, key: str, *, max_points: int = 2000,
                        include_deleted: bool = False) -> query.Series:
        """``(version, value)`` of the top-level metadata number ``key`` over the live versions of ``name``.

        At most ``max_points`` points, downsampled in SQL (each bucket of versions keeps its smallest and
        largest value) when more versions hold the key; ``Series.count`` says how many do. With
        ``include_deleted``, deleted versions are points too, and ``Series.deleted`` names them.
        """
        with self._model_read(name, include_deleted) as (conn, live):
            found = query.series(conn, version_fields, name, key, max_points, live)
            if include_deleted:
                found = replace(found, deleted=frozenset(lifecycle.deletions(conn, name, (v for v, _ in found.points))))
            return found

    @contextmanager
    def _model_read(self, name: str, include_deleted: bool) -> Iterator[tuple[sa.Connection, Any]]:
        """A read of one model: ``(connection, live)``, ``live(version column)`` the condition that a version
        is not deleted (``None`` with ``include_deleted``); ``NotFoundError``/``DeletedError`` for an unknown
        or (unless ``include_deleted``) deleted model."""
        validate_name(name)
        with self._read(f"reading model {name!r}") as conn:
            if conn.execute(sa.select(models.c.name).where(models.c.name == name)).first() is None:
                raise self._no_model(conn, name)
            if not include_deleted:
                lifecycle.live_model(conn, name)
            yield conn, (None if include_deleted else functools.partial(lifecycle.not_deleted, name))

    def _versions_by_number(self, conn: sa.Connection, name: str, numbers: list[int], gone: Mapping) -> list[ModelVersion]:
        """The versions ``numbers`` of ``name`` in that order (whole rows read only for these)."""
        alias_map = self._aliases_of(conn, name)
        rows = {}
        for chunk in range(0, len(numbers), 500):
            wanted = numbers[chunk:chunk + 500]
            query_rows = sa.select(*VERSION_FIELDS).where(versions.c.name == name, versions.c.version.in_(wanted))
            rows.update((r.version, r) for r in conn.execute(query_rows))
        return [self._model_version(rows[n], alias_map, gone.get(n)) for n in numbers]

    def models(self) -> list[ModelInfo]:
        """Every model, by name."""
        with self._read("reading models") as conn:
            alias_rows = conn.execute(sa.select(aliases.c.name, aliases.c.alias, aliases.c.version))
            by_model: dict[str, dict[str, int]] = {}
            for name, alias, version in alias_rows:
                by_model.setdefault(name, {})[alias] = version
            rows = conn.execute(sa.select(models).order_by(models.c.name)).all()
            gone = lifecycle.deleted_model_names(conn)
            live = lifecycle.live_counts(conn)
        return [
            ModelInfo(
                name=r.name, latest_version=live.get(r.name, (0, None))[1], versions=live.get(r.name, (0, None))[0],
                aliases=dict(sorted(by_model.get(r.name, {}).items())),
                created_at=r.created_at, updated_at=r.updated_at, description=r.description,
            )
            for r in rows if r.name not in gone
        ]

    def exists(self, name: str) -> bool:
        """Whether a model called ``name`` has been recorded (and not deleted)."""
        validate_name(name)
        with self._read(f"reading model {name!r}") as conn:
            found = conn.execute(sa.select(models.c.name).where(models.c.name == name)).first() is not None
            return found and lifecycle.model_deletion(conn, name) is None

    def spec(self, name: str, version: int | None = None, *, alias: str | None = None) -> dict:
        """The spec dict of a version."""
        if self.offline:
            return self._stored(name, version, alias=alias)[1]
        with self._read(f"reading model {name!r}") as conn:
            row = self._row(conn, name, version, alias)
            return self._spec_of(conn, row.spec_digest)

    def _spec_of(self, conn: sa.Connection, digest: str) -> dict:
        """The recorded spec of ``digest`` (a fresh copy); specs are immutable, so each is read once."""
        text = self._specs.get(digest)
        if text is None:
            spec = conn.execute(sa.select(specs.c.spec).where(specs.c.digest == digest)).scalar()
            if spec is None:
                raise errors.NotFoundError(f"spec {digest!r} is not recorded")
            text = canonical_json(spec)
            self._specs.put(digest, text)
        return json.loads(text)

    def manifest(self, name: str, version: int | None = None, *, alias: str | None = None) -> dict:
        """The storage manifest of a version's tensors."""
        if self.offline:
            return self._stored(name, version, alias=alias)[0].manifest
        with self._read(f"reading model {name!r}") as conn:
            return self._row(conn, name, version, alias).manifest

    def state(self, name: str, version: int | None = None, *, alias: str | None = None) -> Any:
        """The non-tensor part of a version's state (JSON), as ``split_state`` left it."""
        if self.offline:
            return self._stored(name, version, alias=alias)[0].state or {}
        with self._read(f"reading model {name!r}") as conn:
            return self._row(conn, name, version, alias).state or {}

    def load(
        self, name: str, version: int | None = None, *, alias: str | None = None, progress: ProgressCallback | None = None
    ) -> rlmodule.RLModule:
        """The module of a version (default: the latest), rebuilt from its spec and state.

        ``progress(done, total)``: bytes of the version's objects read so far (``Store.get``'s).
        """
        row, spec = self._stored(name, version, alias=alias)
        with storage_ops.during(f"load of {name!r} version {row.version}"):
            tensors = self._get(row.manifest, progress=progress, aligned=True,  # the module holds them
                                parsed=getattr(row, "parsed", None))
        state = rlmodule.join_state(tensors, row.state or {})
        from registry import replay  # torch

        module = self._kept_builds.rebuild(row.spec_digest, spec, state, tensors, self.trusted_modules)
        return module if module is not None else replay.rebuild(spec, state, tensors, self.trusted_modules)

    @property
    def _kept_builds(self) -> Any:
        """``registry.templates.Templates``: the meta builds of the specs loaded here (made on first use)."""
        if self._templates is None:
            from registry.templates import Templates  # torch

            self._templates = Templates()
        return self._templates

    def _metadata_only(self, digest: str, spec: dict) -> Any:
        """The module of ``spec`` on ``meta`` (``replay.metadata_only``), to read, not to change: the kept
        build if there is one."""
        from registry import replay  # torch

        module = self._kept_builds.metadata_only(digest, spec, self.trusted_modules)
        return module if module is not None else replay.metadata_only(spec, self.trusted_modules)

    def _stored(self, name: str, version: int | None = None, *, alias: str | None = None) -> tuple[Any, dict]:
        """The projected row of a version and its spec dict, in one read transaction.

        What a load reads: online it is also recorded in the cache for offline loads, with the
        aliases seen pointing at it; offline it comes from there (``registry.offline``).
        """
        ref = uri.reference(name, version, alias)
        self._refuse_closed()  # (a read kept below, or the offline cache, never reaches the database)
        if self.offline:
            number = ref.version if ref.version is not None else self._offline_cache.resolve(ref.name, ref.alias)
            return self._offline_cache.version(ref.name, number)
        key = (ref.name, ref.version, ref.alias)
        # On SQLite, what the last read found stands while no connection has committed since (the change
        # counter is taken before the read: a commit during it makes the next call read again)
        token = self._changes.value() if self._changes is not None and self._joined.get() is None else None
        kept = self._loaded_rows.get(key) if token is not None else None
        if kept is not None and kept[0] == token:
            _, row, seen, latest = kept
            text = self._specs.get(row.spec_digest)
            if text is not None:
                spec = json.loads(text)  # a fresh copy, as _spec_of gives
                self._offline_cache.remember(row, spec, seen, latest, self.storage_url, kept=True)
                return row, spec
        with self._read(f"reading model {name!r}") as conn:
            row, model = self._row_and_model(conn, ref.name, ref.version, ref.alias, json_text=True)
            row = self._parsed(row)
            spec = self._spec_of(conn, row.spec_digest)
            if ref.alias is not None:  # the alias just resolved (no statement more: rlreg:// restores stay cheap)
                seen: tuple[str, ...] = (ref.alias,)
            else:  # the aliases pointing at it now (`rlreg export NAME@alias` loads by number)
                seen = tuple(conn.execute(sa.select(aliases.c.alias).where(
                    aliases.c.name == row.name, aliases.c.version == row.version).order_by(aliases.c.alias)).scalars())
        latest = (ref.version is None and ref.alias is None) or model.latest_version == row.version
        if token is not None:
            self._loaded_rows.put(key, (token, row, seen, latest))
        self._offline_cache.remember(row, spec, seen, latest, self.storage_url, kept=token is not None)
        return row, spec

    def _parsed(self, row: Any) -> Any:
        """A version row read with ``json_text``, its manifest and state parsed once per version (a
        version's never change, nor is its number reused): a load of many tensors spent more on parsing
        its manifest, and on checking it (``_get(checked=True)``), than on reading its bytes."""
        key = (row.name, row.version, row.position)
        kept = self._versions_json.get(key)
        if kept is None:
            kept = _ParsedVersion(json.loads(row.manifest), None if row.state is None else json.loads(row.state))
            self._versions_json.put(key, kept)
        return _VersionRow(row, kept)

    def bind(self) -> Any:
        """``with reg.bind():`` makes ``rlreg://`` URIs (``load_state_path``, ``restore_from_path``)
        resolve on this registry within the block, in this thread or task; no environment change."""
        from registry import fs

        return fs.bind(self)

    def tensors(self, name: str, version: int | None = None, names: list[str] | None = None, *,
                alias: str | None = None) -> dict:
        """Some (default: all) of a version's tensors, read and verified, without rebuilding the module."""
        manifest = self.manifest(name, version, alias=alias)
        unknown = sorted(set(names or ()) - set(manifest["tensors"]))
        if unknown:
            raise errors.NotFoundError(f"model {name!r} version {version or alias or 'latest'}: no tensor {unknown[0]!r}")
        return self._get(manifest, names=names)

    def _get(self, manifest: dict, names: list[str] | None = None, progress: ProgressCallback | None = None,
             aligned: bool = False, parsed: _ParsedVersion | None = None) -> dict:
        """``Store.get``; ``parsed``: the kept parse of a version whose manifest this is (checked once)."""
        try:
            got = self.store.get(manifest, names=names, progress=progress, aligned=aligned,
                                 checked=parsed is not None and parsed.checked)
            if parsed is not None:
                parsed.checked = True
            return got
        except storage.IntegrityError as exc:
            raise errors.IntegrityError(str(exc)) from exc

    # --- the log -------------------------------------------------------------------------

    def history(self, name: str) -> list[Event]:
        """Every event of ``name``'s stream, in order."""
        validate_name(name)
        recorded = self._log.read_stream(name)
        if not recorded:
            with self._read(f"reading model {name!r}") as conn:
                raise self._no_model(conn, name)
        return recorded

    def events(self, after: int = 0, limit: int | None = None, *, model: str | None = None,
               types: Iterable[str] | None = None) -> list[Event]:
        """Events with ``position > after``, ascending: of every model, or of ``model`` only; of ``types``
        only, if given. ``limit`` counts the events returned (the filter is applied first)."""
        return self._log.events(after, limit, stream=model, types=types)  # (``$registry`` is a stream too)

    def follow(self, after: int = 0, *, poll_interval: float | None = None, timeout: float | None = None,
               stop: Any = None) -> Iterator[Event]:
        """Yield events after ``after`` as they commit (ends after ``timeout`` idle seconds or on ``stop``).

        The arguments are checked at once: ``after`` past the log's head is a ``NotFoundError`` (the
        events up to it would be skipped without a word)."""
        return self._log.follow(after, poll_interval=poll_interval, timeout=timeout, stop=stop)

    def head(self) -> int:
        """The position of the last event (0 when the log is empty)."""
        return self._log.head()

    # --- aliases -------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> Event:
        """Point ``alias`` at ``version`` of ``name`` (moving it if it pointed elsewhere)."""
        validate_name(name)
        validate_alias(alias)
        self._refuse_offline(f"alias set of {name!r}@{alias}")
        if alias == uri.LATEST:
            raise errors.InvalidNameError(
                f"model {name!r}: alias {alias!r} is reserved (rlreg://{name}@latest is always the newest version)"
            )
        if version is None:
            raise errors.InvalidNameError(f"model {name!r}: set_alias({alias!r}) needs a version")
        self._after_pending(name)
        with self._read(f"reading model {name!r}") as conn:
            version = self._row(conn, name, version, None).version
        return self._events.append(name, [NewEvent(ALIAS_SET, {"alias": alias, "version": version})])[0]

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` of ``name``, by alias."""
        validate_name(name)
        with self._read(f"reading model {name!r}") as conn:
            if conn.execute(sa.select(models.c.name).where(models.c.name == name)).first() is None:
                raise self._no_model(conn, name)
            rows = conn.execute(
                sa.select(aliases.c.alias, aliases.c.version).where(aliases.c.name == name).order_by(aliases.c.alias)
            )
            return {alias: version for alias, version in rows}

    def remove_alias(self, name: str, alias: str) -> Event:
        """Remove ``alias`` from ``name``."""
        validate_name(name)
        self._after_pending(name)
        with self._read(f"reading model {name!r}") as conn:
            self._row(conn, name, None, alias)
        return self._events.append(name, [NewEvent(ALIAS_REMOVED, {"alias": alias})])[0]

    # --- tags and descriptions -----------------------------------------------------------

    def set_tags(self, name: str, version: int, tags: Mapping[str, str]) -> Event:
        """Set ``tags`` (key -> text) on ``version`` of ``name``, keeping its other tags."""
        tags = labels.validate_tags(tags)
        self._after_pending(name)
        self._check_version(name, version)
        return self._events.append(name, [NewEvent(TAGS_SET, {"version": version, "tags": tags})])[0]

    def remove_tags(self, name: str, version: int, keys: Iterable[str]) -> Event:
        """Remove the tags ``keys`` from ``version`` of ``name`` (``NotFoundError`` if one is not set)."""
        keys = labels.validate_keys(keys)
        self._after_pending(name)
        row = self._check_version(name, version)
        missing = [k for k in keys if k not in (row.tags or {})]
        if missing:
            raise errors.NotFoundError(
                f"model {name!r} version {version} has no tag {', '.join(map(repr, missing))} to remove"
            )
        return self._events.append(name, [NewEvent(TAGS_REMOVED, {"version": version, "keys": keys})])[0]

    def set_description(self, name: str, text: str, version: int | None = None) -> Event:
        """Describe the model ``name`` (``version=None``) or one version of it; ``""`` clears it."""
        text = labels.validate_description(text)
        self._after_pending(name)
        if version is None:
            validate_name(name)
            if not self.exists(name):
                raise errors.NotFoundError(f"no model named {name!r}")
        else:
            self._check_version(name, version)
        return self._events.append(name, [NewEvent(DESCRIPTION_SET, {"version": version, "text": text})])[0]

    def _check_version(self, name: str, version: int) -> Any:
        if version is None or isinstance(version, bool) or not isinstance(version, int):
            raise errors.InvalidNameError(f"model {name!r}: version {version!r} is not an integer")
        with self._read(f"reading model {name!r}") as conn:
            return self._row(conn, name, version, None)

    # --- deleting and restoring (registry.lifecycle) ---------------------------------------

    def delete_version(self, name: str, version: int, *, reason: str, force: bool = False) -> Event:
        """Append ``VersionDeleted``; ``force`` removes the aliases pointing at it in the same append."""
        self._after_pending(name)
        return deleting.delete_version(self, name, version, reason=reason, force=force)

    def delete_model(self, name: str, *, reason: str, force: bool = False) -> Event:
        """Append ``ModelDeleted`` (every live version); ``force`` removes the model's aliases with it."""
        self._after_pending(name)
        return deleting.delete_model(self, name, reason=reason, force=force)

    def restore_version(self, name: str, version: int) -> Event:
        """Append ``VersionRestored``, while gc has kept the version's objects."""
        self._after_pending(name)
        return deleting.restore_version(self, name, version)

    def set_retention(self, name: str, *, keep_last: int | None = None, keep_every: int | None = None,
                      keep_best: tuple | None = None) -> Event:
        """Record a ``RetentionSet`` policy for ``name`` and apply it (``keep_best=("mean_return", 5, "max")``)."""
        self._after_pending(name)
        return retention.set_policy(self, name, keep_last=keep_last, keep_every=keep_every, keep_best=keep_best)

    def clear_retention(self, name: str) -> Event:
        """Record ``RetentionCleared``: ``name`` keeps every version again."""
        self._after_pending(name)
        return retention.clear_policy(self, name)

    def apply_retention(self, name: str) -> list[int]:
        """Delete the versions ``name``'s policy does not keep (as after a snapshot); returns their numbers."""
        self._after_pending(name)
        return retention.apply(self, name)

    def retention(self, name: str) -> dict | None:
        """``name``'s retention policy (the ``RetentionSet`` payload), or ``None``."""
        return retention.get_policy(self, name)

    def gc(self, *, grace: datetime.timedelta = collector.DEFAULT_GRACE, dry_run: bool = False,
           progress: ProgressCallback | None = None) -> collector.GcReport:
        """Apply retention policies, then delete the storage objects no live version references (nor one
        deleted less than ``grace`` ago) and leftovers of interrupted writes, older than ``grace``.

        Safe while other processes snapshot (see ``registry.gc``). ``progress(done, total)``: bytes reclaimed.
        """
        return collector.collect(self, grace=grace, dry_run=dry_run, progress=progress)

    # --- comparing, exporting, importing -------------------------------------------------

    def diff(self, name: str, a: int | str, b: int | str) -> ModelDiff:
        """What changed from version (or alias) ``a`` to ``b``."""
        with self._read(f"reading model {name!r}") as conn:
            refs = [uri.parse_selector(name, x) for x in (a, b)]  # 3, "3", "best" or "@best"
            rows = [self._row(conn, ref.name, ref.version, ref.alias) for ref in refs]
            sides = [
                {"manifest": r.manifest, "spec": self._spec_of(conn, r.spec_digest), "state": r.state,
                 "metadata": r.metadata} for r in rows
            ]
        return diff_versions(name, rows[0].version, rows[1].version, sides[0], sides[1], self._get)

    def export(
        self,
        name: str,
        version: int | None,
        path: Any,
        *,
        alias: str | None = None,
        progress: ProgressCallback | None = None,
        format: str = "rlreg",
    ) -> str:
        """Write a version as a checkpoint folder that ``RLModule.from_checkpoint(path)`` loads; its URL.

        ``format="rllib"``: the folder RLlib 2.60's own ``RLModule.from_checkpoint`` loads (PPO
        modules and MultiRLModules of them; see ``rlmodule.rllib_checkpoint``).
        ``progress`` reports the read from the store (``load``'s), not the checkpoint's write.
        """
        module = self.load(name, version, alias=alias, progress=progress)
        try:
            return rlmodule.rllib_checkpoint.export_as(module, path, format)
        except storage.StorageWriteError as exc:
            raise errors.ExportTargetError(f"cannot export model {name!r} to {str(path)!r}: {exc}") from exc

    def import_checkpoint(
        self,
        name: str,
        path: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
        from_rllib: bool = False,
    ) -> ModelVersion:
        """Record the checkpoint folder at ``path`` as the next version of ``name``.

        ``from_rllib=True`` reads a checkpoint RLlib 2.35..2.60 wrote, decoding its pickles without
        unpickling (``rlmodule.rllib_checkpoint``); its metadata gains ``rllib_ray_version``.
        ``progress`` reports the write to the store (``snapshot``'s), not the checkpoint's read.
        """
        validate_name(name)
        self._refuse_offline(f"import of {name!r}")
        _json_metadata(name, metadata)
        if from_rllib:
            module = rlmodule.rllib_checkpoint.load_rllib_checkpoint(path)
            metadata = {"rllib_ray_version": rlmodule.rllib_checkpoint.rllib_metadata(path).get("ray_version"),
                        **(metadata or {})}
        else:
            module = rlmodule.RLModule.from_checkpoint(path, trusted_modules=self.trusted_modules)
        return self.snapshot(name, module, metadata, progress=progress)

    # --- housekeeping --------------------------------------------------------------------

    def rebuild_projections(self) -> int:
        """Drop and rebuild the read models from the log; returns the number of events replayed.

        On PostgreSQL the rebuilt tables are analyzed at once (``db.analyze``): a bulk fill leaves the
        planner without statistics until autovacuum comes by, and its plans for queries are bad then.
        """
        count = self._log.rebuild_projections()
        db.analyze(self._events.engine, PROJECTION_TABLES)
        return count

    def projection_rows(self) -> dict[str, list[dict]]:
        """Every read-model row, table by table (to compare a rebuild with the live rows)."""
        with self._read("reading projections") as conn:
            return Projections().dump(conn)

    def verify(self, repair: bool = False, *, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Check every version's objects exist and every stored object matches its digest.

        ``missing`` and ``damaged_versions`` name each ``model/version`` a missing or damaged object
        breaks (``damaged_versions``: tensor name -> object digest). With ``repair=True`` damaged
        objects are moved aside (storage's quarantine, listed in ``storage.quarantined``), so the
        next snapshot holding those tensors writes them again and the versions load once more.
        ``progress(done, total)``: bytes of the stored objects re-hashed so far (``Store.verify``'s).
        """
        with self._read("reading versions") as conn:
            rows = conn.execute(lifecycle.live_versions(conn)).all()
        needed = {f"{r.name}/{r.version}": set(storage.manifest_objects(r.manifest)) for r in rows}
        referenced = set().union(*needed.values()) if needed else set()
        with storage_ops.during("verify"):
            if referenced and not self.store.location.isdir():
                raise errors.StorageUnavailableError(
                    f"storage {self.store.url!r} does not exist (no such folder), yet {len(needed)} version(s) "
                    "keep their objects there: check --storage / RLREG_STORAGE_URL"
                )
            present = self.store.exists(referenced) if referenced else set()
            report = self.store.verify(quarantine=repair, progress=progress)
        missing = {key: sorted(digests - present) for key, digests in needed.items() if digests - present}
        return {
            "versions": len(rows),
            "objects_referenced": len(referenced),
            "missing": missing,
            "damaged_versions": _versions_holding(rows, set(report.damaged)),
            "storage": report.to_dict(),
            "ok": not missing and report.ok,
        }

    def schema_status(self) -> db.SchemaStatus:
        """The database's schema revision against this rlreg's migrations."""
        return db.schema_status(self._log.engine)

    def upgrade_schema(self) -> db.SchemaStatus:
        """Upgrade the database's schema to this rlreg's head revision."""
        return db.upgrade(self._log.engine)


@dataclass
class _ParsedVersion:
    """A version's manifest and state, parsed; ``checked``: the store has checked the manifest."""

    manifest: dict
    state: Any
    checked: bool = False


class _VersionRow:
    """A version row whose manifest and state are the kept parsed ones (read only)."""

    __slots__ = ("_row", "parsed")

    def __init__(self, row: Any, parsed: _ParsedVersion) -> None:
        self._row, self.parsed = row, parsed

    @property
    def manifest(self) -> dict:
        return self.parsed.manifest

    @property
    def state(self) -> Any:
        return self.parsed.state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


class _Remembered:
    """A small thread-safe map that forgets its oldest entries past ``size``."""

    def __init__(self, size: int = 256) -> None:
        self._size, self._items, self._lock = size, {}, forklocks.new_lock(self)

    def get(self, key: Any) -> Any:
        return self._items.get(key)

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                del self._items[next(iter(self._items))]


def _check_limit(limit: Any) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_INTEGER):
        raise errors.QueryError(f"limit {limit!r}: expected a whole number >= 1 and <= {MAX_INTEGER}, or None",
                                text=str(limit))


def _versions_holding(rows: list[Any], objects: set[str]) -> dict[str, dict[str, str]]:
    """``{"model/version": {tensor name: object digest}}`` for the tensors stored in ``objects``."""
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        hit = {t: e["object"] for t, e in sorted(row.manifest["tensors"].items()) if e["object"] in objects}
        if hit:
            out[f"{row.name}/{row.version}"] = hit
    return out


def _json_metadata(name: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``metadata`` if it is a JSON object, else ``InvalidEventError`` naming the bad key."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise errors.InvalidEventError(
            f"snapshot of {name!r}: metadata must be a dict of JSON values, got {type(metadata).__name__}"
        )
    _check_depth(metadata, f"snapshot of {name!r}: metadata")
    out = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise errors.InvalidEventError(f"snapshot of {name!r}: metadata key {key!r} is not a string")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise errors.InvalidEventError(
                f"snapshot of {name!r}: metadata[{key!r}] is not JSON ({exc})"
            ) from None
        out[key] = json.loads(json.dumps(value))
    bad = nul_in(out)
    if bad is not None:
        raise errors.InvalidEventError(f"snapshot of {name!r}: metadata text {bad!r:.80} holds a NUL character "
                                       "(\\0): remove it")
    return out


def _split_checked(name: str, module: rlmodule.RLModule) -> tuple[dict, Any]:
    """``split_state`` of the module's state, its JSON part checked against the depth limit first.

    A TorchRLModule whose ``get_state`` is the stock one: its ``state_dict`` tensors as they are,
    neither detached nor walked (``split_tensors``; what ``get_state(copy=False)`` would detach
    and ``split_state`` walk, one tensor after the other).
    """
    if type(module).get_state is rlmodule.TorchRLModule.get_state:
        split = rlmodule.split_tensors(module.state_dict(keep_vars=True))
        if split is not None:
            return split
    tensors, rest = rlmodule.split_state(_state_to_store(module))
    _check_depth(rest, f"snapshot of {name!r}: the module's non-tensor state")
    return tensors, rest


def _check_depth(value: Any, where: str) -> None:
    """``InvalidEventError`` for JSON nested past ``storage.MAX_JSON_DEPTH`` (before anything recurses into it)."""
    try:
        check_json_depth(value, where)
    except storage.JSONDepthError as exc:
        raise errors.InvalidEventError(str(exc)) from None


def _state_to_store(module: rlmodule.RLModule) -> Any:
    """The module's state without copying its tensors when its ``get_state`` takes ``copy=False``.

    The views are hashed and written within ``snapshot`` itself, so copying every byte first only
    costs time (a third of a 100 MB snapshot); a module must not train while it is snapshotted.
    """
    get_state = module.get_state
    own = getattr(get_state, "__func__", None)  # the class's function (asked once), unless set on the instance
    takes_copy = _takes_copy(own) if own is not None else _takes_copy.__wrapped__(get_state)
    return get_state(copy=False) if takes_copy else get_state()


@functools.lru_cache(maxsize=256)
def _takes_copy(get_state: Any) -> bool:
    """Whether a ``get_state`` accepts ``copy=`` (by name or through ``**kwargs``)."""
    params = inspect.signature(get_state).parameters
    return "copy" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class _Refused(Exception):
    """A ``ConflictError`` raised by ``make_events`` itself: the write is refused, not racing another."""

    def __init__(self, error: errors.ConflictError) -> None:
        super().__init__(str(error))
        self.error = error


def _refusing(make_events, latest: int, last_digest: str | None) -> list[NewEvent]:
    try:
        return make_events(latest, last_digest)
    except errors.ConflictError as exc:
        raise _Refused(exc) from exc
