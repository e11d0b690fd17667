"""``Store``: a content-addressed, deduplicated, verified and cached tensor store on any fsspec URL."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import posixpath
import stat
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storage import config, digest, filesystems, manifest, objects
from storage.cache import Filling, ObjectCache, default_cache_dir, default_max_bytes
from storage.errors import (
    IntegrityError,
    InvalidDigestError,
    InvalidManifestError,
    NotAFileError,
    NotCachedError,
    ObjectNotFoundError,
    OfflineError,
    REPAIR_HINT,
    TensorNotInManifestError,
)
from storage.location import Location
from storage.packing import ALONE_FROM, packs
from storage.progress import Progress, ProgressCallback
from storage.dtypes import RawTensor, check_name, format_dtype

if TYPE_CHECKING:  # torch is imported where tensors are made or read, not to list or delete objects
    import torch

    from storage.tensors import BufferView

log = logging.getLogger(__name__)
_UPLOAD_THREADS = 8  # remote uploads in flight (each buffers at most one part in s3fs)
_PROGRESS_STEP = 8 << 20  # a remote upload reports progress every this many bytes
_THREADED_PUT_FROM = 8 << 20  # below this a writer thread costs more than it overlaps (unless begin_put)
# Local objects written at once: concurrent fsyncs share the journal's commits. 100 MiB in 48 objects on
# this 2-core VM, medians of 12 snapshots, six runs each: 8 threads 64-78 ms, 6: 84-87, 4: 73-91, 2: 88-100
# (1 GiB: 8 threads 588-593 ms, 4: 613-656; 2,000 small tensors in packs: the same).
_LOCAL_WRITERS = 8
_WRITERS_LOCK = threading.Lock()  # a store's writer threads are made once (Store._local_writers)


def _new_writers_lock() -> None:
    """In a forked child: the lock may have been held by another thread of the parent at the fork."""
    global _WRITERS_LOCK
    _WRITERS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_writers_lock)


class _Inline:
    """A stand-in for a one-thread executor that runs each call at once (small puts)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Any, *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - re-raised by future.result(), as from a thread
            future.set_exception(exc)
        return future


class PendingPut:
    """A put whose manifest is known while its objects are still being written (``Store.begin_put``)."""

    def __init__(self, built: dict[str, Any], writes: list[Future], prog: Progress, url: str,
                 second_names: int = 0) -> None:
        self.manifest = built
        self.nbytes = prog.total  # the tensors' bytes
        self._writes, self._prog, self._url = writes, prog, url
        self._second_names = second_names  # bytes of small tensors stored under a second name, counted at the end

    def wait(self) -> dict[str, Any]:
        """The manifest, once every object is stored (durably for a durable store); a write's error else.

        Progress is reported here, on the caller's thread, as the writes end (the callback's error
        raised from here, the writes not started cancelled)."""
        with filesystems.translate_errors(self._url):
            try:
                if self._prog.reports:  # (else the results are waited for in order: the first error raised)
                    self._prog.wait(self._writes)
                for future in self._writes:
                    future.result()
            except BaseException:
                self.settle()
                raise
        second, self._second_names = self._second_names, 0
        self._prog.add(second)
        return self.manifest

    def settle(self) -> None:
        """Cancel the writes not started and wait for the others, raising nothing (after another failure)."""
        if all(f.done() for f in self._writes):
            return
        _cancel(self._prog, self._writes)
        concurrent.futures.wait(self._writes)


def _second_names(raws: Mapping[str, RawTensor], digests: Mapping[str, str],
                  packed: list[objects.EncodedObject]) -> int:
    """Bytes of the small tensors the packs hold under a second name: counted once the packs are stored
    (``PendingPut.wait``; not in a write's done-callback, which may run after ``wait`` returned)."""
    held: dict[str, int] = defaultdict(int)
    for name, r in raws.items():
        if r.nbytes < ALONE_FROM:
            held[digests[name]] += r.nbytes
    return sum(sum(held[d] for d in obj.raws) - sum(r.nbytes for r in obj.raws.values()) for obj in packed)


class _Digests(dict):
    """``{name: tensor digest}`` of ``raws``, each hashed when first asked."""

    def __init__(self, raws: Mapping[str, RawTensor]) -> None:
        super().__init__()
        self._raws = raws

    def __missing__(self, name: str) -> str:
        r = self._raws[name]
        d = self[name] = digest.tensor_digest(r.dtype, r.shape, r.data)
        return d


def _hand_over(under_way: list[threading.Event], prog: Progress) -> None:
    """Wait (letting the GIL go) until each of these writes has its bytes going out, or has ended.

    A writer thread needs the GIL between its system calls (taking the next write, the dedup check,
    the temporary file, each fsync), and a caller going on in Python lets it go only for moments the
    writer seldom wins: a 1 MiB snapshot's object write started only once its SQL statements were
    done, 1.9 ms after it was handed over, and of a 2,000-tensor snapshot's packs the last five
    waited for them, the writer threads idle. From ``started()`` on, a write needs the GIL no more
    until its bytes are stored (``local_atomic_write``), and it overlaps what the caller does next.
    Progress is reported meanwhile (each event's setter pokes ``prog``).
    """
    if prog.reports:
        at = [0]  # the first event not yet set (each is looked at until set, not at every wake)

        def all_under_way() -> bool:
            while at[0] < len(under_way) and under_way[at[0]].is_set():
                at[0] += 1
            return at[0] == len(under_way)

        prog.wait_until(all_under_way)
        return
    for event in under_way:
        event.wait()


def _cancel(prog: Progress, writes: list[Future]) -> None:
    prog.cancel.set()
    for future in writes:
        future.cancel()


@dataclass
class StoreStats:
    """What this Store instance has transferred (for tests and benchmarks)."""

    objects_written: int = 0
    bytes_written: int = 0
    objects_read: int = 0
    bytes_read: int = 0
    cache_hits: int = 0


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of ``Store.verify()``: how many objects were checked and which are damaged.

    ``damaged`` maps each damaged (or missing) object to what is wrong with it; ``damaged_tensors``
    maps it to the digests of the tensors it holds, as its header names them (``[]`` when the header
    itself is damaged or the object is missing); ``quarantined`` maps each object moved aside by
    ``verify(quarantine=True)`` to the URL it was moved to. ``cache_damaged`` maps each damaged
    entry of the local read cache to what is wrong with it (``get`` would discard and fetch it
    again); ``verify(quarantine=True)`` discards them at once (``cache_discarded``). Neither makes
    the store damaged: ``ok`` is about the stored objects.
    """

    checked: int
    damaged: dict[str, str] = field(default_factory=dict)
    damaged_tensors: dict[str, list[str]] = field(default_factory=dict)
    quarantined: dict[str, str] = field(default_factory=dict)
    cache_damaged: dict[str, str] = field(default_factory=dict)
    cache_discarded: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "checked": self.checked,
            "damaged": dict(sorted(self.damaged.items())),
            "damaged_tensors": {k: list(v) for k, v in sorted(self.damaged_tensors.items())},
            "quarantined": dict(sorted(self.quarantined.items())),
            "cache_damaged": dict(sorted(self.cache_damaged.items())),
            "cache_discarded": sorted(self.cache_discarded),
            "ok": self.ok,
        }


class Store:
    """Tensors stored once by content in safetensors objects under ``<url>/objects/``."""

    def __init__(
        self,
        url: str | Any,
        cache_dir: str | None = None,
        *,
        cache_max_bytes: int | None = None,
        durable: bool = True,
        offline: bool | None = None,
        **storage_options: Any,
    ) -> None:
        """``durable=False`` skips the fsyncs of local objects (faster; a power loss may then tear one).

        ``offline`` (default: ``RLREG_OFFLINE``): a remote store is never contacted; ``get`` reads
        the cache alone (``NotCachedError`` for an object it lacks) and every other operation on a
        remote store is an ``OfflineError``. A local folder is read as usual.
        """
        self.location = Location(url, **storage_options)
        self.url = self.location.url
        self.fs = self.location.fs
        self._local = filesystems.is_local(self.fs)
        self._remote = not self._local and self.fs.protocol not in ("memory", ("memory",))
        self.cache: ObjectCache | None = None
        if self._remote:
            self.cache = ObjectCache(cache_dir or default_cache_dir(), cache_max_bytes or default_max_bytes())
        self.stats = StoreStats()
        self.durable = durable
        self._fanned_out = False
        self._writers: ThreadPoolExecutor | None = None  # local object writers (Store._local_writers)
        self._writers_pid = 0
        self.offline = config.offline() if offline is None else bool(offline)

    @property
    def is_local(self) -> bool:
        """Whether this store is a folder on this machine (not an object store, not memory)."""
        return self._local

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _require_online(self, what: str) -> None:
        """``OfflineError`` when this store is remote and offline (``RLREG_OFFLINE=1``)."""
        if self.offline and self._remote:
            raise OfflineError(
                f"{what} of {self.url}: RLREG_OFFLINE=1, so the bucket is not contacted; offline, only "
                "versions already in the cache load: unset RLREG_OFFLINE to reach the bucket"
            )

    # -- paths ---------------------------------------------------------------------------------------

    def _path(self, object_digest: str) -> str:
        h = digest.hex_of(object_digest)
        return posixpath.join(self.location.path, "objects", h[:2], h)

    def _where(self, object_digest: str) -> str:
        h = digest.hex_of(object_digest)
        return f"{self.url}/objects/{h[:2]}/{h}"

    # -- put -----------------------------------------------------------------------------------------

    def put(self, tensors: Mapping[str, Any], *, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Store ``{name: tensor or ndarray}``; return its JSON-able manifest. Unchanged bytes are not rewritten.

        ``progress(done, total)`` counts tensor bytes (``total``: the sum of the manifest's tensor
        ``nbytes``), called on this thread as objects are written or found already stored.
        """
        return self._begin_put(tensors, progress, overlap=False).wait()

    def begin_put(self, tensors: Mapping[str, Any], *, progress: ProgressCallback | None = None,
                  may_be_stored: Callable[[str], bool] | None = None) -> PendingPut:
        """``put``, returning once the manifest is known (every tensor hashed), while writer threads still
        store the objects: ``PendingPut.wait()`` returns the manifest once every object is stored (and
        fsynced, for a durable store), or raises the write's error. Nothing that names the manifest may
        be committed before ``wait()`` returned; the tensors must stay unchanged until then. ``progress``
        is called on this thread while hashing, then on the thread in ``wait()``.

        ``may_be_stored(object_digest)``: False for an object the caller knows it never stored (a
        registry: no row for it). On an object store such an object is written without asking first
        whether it is there (a HEAD each): writing it again, if it were, writes the same bytes.
        """
        return self._begin_put(tensors, progress, overlap=True, may_be_stored=may_be_stored)

    def _begin_put(self, tensors: Mapping[str, Any], progress: ProgressCallback | None, overlap: bool,
                   may_be_stored: Callable[[str], bool] | None = None) -> PendingPut:
        if not isinstance(tensors, Mapping):
            raise TypeError(f"put() takes a dict of name -> tensor, not a {type(tensors).__name__}")
        self._require_online("put")
        from storage.tensors import to_raw

        raws = {check_name(name): to_raw(name, value) for name, value in tensors.items()}
        prog = Progress(progress, sum(r.nbytes for r in raws.values()))
        prog.start()
        if self._local:  # writer threads (their fsyncs overlap the hashing); none for small puts nobody overlaps
            self._fan_out()
            threads = _LOCAL_WRITERS if overlap or prog.total >= _THREADED_PUT_FROM else 0
            return self._put_pipelined(raws, prog, threads, self._keep_local, "rlreg-put")
        # Twice as many threads as uploads in flight: a thread's HEAD (the dedup check) happens outside
        # its turn to upload, so it does not hold back the uploads. An upload is not written into the
        # read cache (as `hf upload`): a trainer's snapshots are mostly read elsewhere, and on a
        # 2-core machine the local copy of a 1 GiB snapshot cost 1.0 s of CPU, the upload itself 1.4 s.
        keep = functools.partial(self._keep_remote, threading.BoundedSemaphore(_UPLOAD_THREADS), may_be_stored)
        return self._put_pipelined(raws, prog, 2 * _UPLOAD_THREADS, keep, "rlreg-upload")

    def _put_pipelined(
        self, raws: dict[str, RawTensor], prog: Progress, threads: int, keep: Any, thread_name: str
    ) -> PendingPut:
        """Hash the tensors while ``threads`` writers ``keep(obj, prog, weight, started)`` the objects made:
        the large ones first (an object each), then the small ones in name order, each pack handed to a
        writer as soon as its boundary is found, while the next is hashed (``packing.packs``). Local
        writer threads are given the GIL until each pack's write, and at the end every write, is under
        way (``_hand_over``)."""
        digests = _Digests(raws)  # name -> tensor digest, hashed when first asked
        planned: dict[str, objects.EncodedObject] = {}
        pending: list[Future] = []
        under_way: list[threading.Event] = []
        own = threads and not self._local  # local writes go to this store's own threads, started once
        reports = prog.reports
        writers = (ThreadPoolExecutor(threads, thread_name_prefix=thread_name) if own
                   else self._local_writers() if threads else _Inline())
        hand_over = bool(threads and not own)

        def submit(obj: objects.EncodedObject, weight: int) -> Future:
            started = threading.Event()
            under_way_now = started.set if not reports else lambda: (started.set(), prog.poke())
            try:
                future = writers.submit(keep, obj, prog, weight, under_way_now)
            except RuntimeError:  # the interpreter is exiting (a checkpoint taken at exit): concurrent.futures
                future = _Inline().submit(keep, obj, prog, weight, under_way_now)  # takes no new work
            future.add_done_callback(lambda _: under_way_now())  # (not written, failed or cancelled)
            pending.append(future)
            under_way.append(started)
            return future

        with filesystems.translate_errors(self.url):
            try:
                for name in sorted((n for n in raws if raws[n].nbytes >= ALONE_FROM), key=lambda n: -raws[n].nbytes):
                    r = raws[name]
                    obj = objects.encode({digests[name]: r})
                    if obj.digest in planned:
                        prog.add(r.nbytes)  # a second name of a tensor already on its way
                    else:
                        planned[obj.digest] = obj
                        submit(obj, r.nbytes)
                    if reports:
                        prog.pump()  # (what writers stored meanwhile)
                packed = []
                for obj in packs(raws, digests):  # each pack is written while the next is hashed
                    planned[obj.digest] = obj
                    packed.append(obj)
                    submit(obj, sum(r.nbytes for r in obj.raws.values()))
                    if reports:
                        prog.pump()
                    if hand_over and sum(not f.done() for f in pending) <= threads:  # (a writer free to take it)
                        _hand_over(under_way[-1:], prog)
                second_names = _second_names(raws, digests, packed)
                if hand_over:
                    _hand_over(under_way, prog)
            except BaseException:  # (a Ctrl-C while handing over too: no write outlives the call)
                _cancel(prog, pending)
                concurrent.futures.wait(pending)  # no write in flight outlives the call
                raise
            finally:
                if own:
                    writers.shutdown(wait=False)  # the threads end once the writes submitted have
        object_of = {t: o.digest for o in planned.values() for t in o.raws}
        built = manifest.build(raws, digests, object_of, {o: obj.nbytes for o, obj in planned.items()})
        return PendingPut(built, pending, prog, self.url, second_names)

    def _local_writers(self) -> ThreadPoolExecutor:
        """The threads that write this store's local objects (made again in a forked child, which has none)."""
        with _WRITERS_LOCK:  # (background snapshots' first puts come at once)
            if self._writers is None or self._writers_pid != os.getpid():
                self._writers = ThreadPoolExecutor(_LOCAL_WRITERS, thread_name_prefix="rlreg-put")
                self._writers_pid = os.getpid()
            return self._writers

    def _fan_out(self) -> None:
        """Make the 256 folders ``objects/00`` .. ``objects/ff`` at the first local put (durable, with the
        folders above them): a later write then fsyncs its object and its folder, never a new folder's parent."""
        if self._fanned_out:
            return
        root = posixpath.join(self.location.path, "objects")
        with filesystems.translate_errors(self.url):
            if not os.path.isdir(posixpath.join(root, "ff")) or len(os.listdir(root)) < 256:
                filesystems.make_folders(root, [f"{i:02x}" for i in range(256)], durable=self.durable)
            if self.durable:  # (some or all made by another process, which may not have fsynced them yet)
                filesystems.fsync_folder(root)
                filesystems.fsync_folder(self.location.path)
        self._fanned_out = True

    def _keep_local(self, obj: objects.EncodedObject, prog: Progress, weight: int, started: Callable[[], None]) -> None:
        path = self._path(obj.digest)
        if not self._intact_local(obj):
            filesystems.local_atomic_write(path, obj.buffers(), durable=self.durable, direct=True, started=started)
            self._count_write(obj)
        elif self.durable:  # another write's rename, maybe not yet durable (it fsyncs the folder next): the
            with filesystems.translate_errors(self.url):  # put returns once the name is (40 us if it was)
                filesystems.fsync_folder(posixpath.dirname(path))
        prog.add(weight)

    def _keep_remote(self, uploads: threading.Semaphore, may_be_stored: Callable[[str], bool] | None,
                     obj: objects.EncodedObject, prog: Progress, weight: int, started: Callable[[], None]) -> None:
        maybe = may_be_stored is None or may_be_stored(obj.digest)
        size = filesystems.size_of(self.fs, self._path(obj.digest)) if maybe else None
        if size != obj.nbytes:
            if size is not None:
                log.warning("object %s at %s holds %d bytes, not %d: rewriting it", obj.digest,
                            self._where(obj.digest), size, obj.nbytes)
            sent, unsent = [0], [0]

            def wrote(nbytes: int) -> None:  # a large object advances per chunk, not once at its end
                unsent[0] += nbytes
                if unsent[0] >= _PROGRESS_STEP:
                    step = min(unsent[0], weight - sent[0])
                    sent[0], unsent[0] = sent[0] + step, 0
                    prog.add(step)

            with uploads:
                started()
                self._write_one(obj, cancelled=prog.cancel.is_set, wrote=wrote)
            weight -= sent[0]
        prog.add(weight)

    # A dedup hit proves only that a regular file (an object) of the right size is stored under the
    # digest; its bytes are checked when it is read (and by verify), not here: re-hashing every
    # reused object would cost a full read per snapshot.

    def _intact_local(self, obj: objects.EncodedObject) -> bool:
        """Whether ``obj`` is stored as a regular file of its size; a damaged entry is made ready to rewrite."""
        path = self._path(obj.digest)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISREG(st.st_mode) and st.st_size == obj.nbytes:
            return True
        what = f"a regular file of {st.st_size} bytes" if stat.S_ISREG(st.st_mode) else "not a regular file"
        log.warning("object %s at %s is %s, not %d bytes: rewriting it", obj.digest, self._where(obj.digest),
                    what, obj.nbytes)
        if stat.S_ISDIR(st.st_mode):
            self._quarantine(obj.digest)  # a rename cannot replace a folder: move it aside
        return False

    def _write_one(self, obj: objects.EncodedObject, **watch: Any) -> None:
        filesystems.atomic_write(self.fs, self._path(obj.digest), obj.buffers(), size=obj.nbytes, **watch)
        self._count_write(obj)

    def _count_write(self, obj: objects.EncodedObject) -> None:
        self.stats.objects_written += 1
        self.stats.bytes_written += obj.nbytes

    # -- get -----------------------------------------------------------------------------------------

    def get(
        self, manifest_: Mapping[str, Any], names: Iterable[str] | None = None, *, progress: ProgressCallback | None = None,
        aligned: bool = False, checked: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The tensors of ``manifest_`` (or only ``names``), every byte verified against its digest.

        Each is a view of the verified buffer (a private memory map of a local or cached object, a
        remote one being downloaded into the cache; the bytes downloaded of one larger than the
        cache), except a tensor equal to another one returned (a copy: they must not
        alias) and, with ``aligned``, one that does not start on a 64-byte boundary there (a copy,
        where torch would allocate it: its kernels may round differently on less aligned data).
        ``progress(done, total)`` counts the bytes of the objects read (``total``: their sizes in the
        manifest), called on this thread as each is fetched (remote), verified (local) or found in the cache.
        ``checked``: this very manifest passed an earlier ``get`` unchanged (its form is not checked
        again; every byte it names still is).
        """
        entries = (manifest_ if checked else manifest.check(manifest_))["tensors"]
        wanted = sorted(entries) if names is None else [self._wanted(entries, n) for n in names]
        users: dict[str, list[str]] = defaultdict(list)  # object -> manifest names
        for name in wanted:
            users[entries[name]["object"]].append(name)
        sizes = _object_sizes(manifest_)
        prog = Progress(progress, sum(sizes.get(o, 0) for o in users))
        prog.start()
        loaded = self._read_objects(users, entries, sizes, prog)
        out = {}
        seen: set[str] = set()
        for name in wanted:
            e = entries[name]
            buf, found = loaded[e["object"]]
            t = self._view(name, e, buf, found, aligned)
            out[name] = t.clone() if e["digest"] in seen else t  # equal tensors must not alias
            seen.add(e["digest"])
        return out

    @staticmethod
    def _wanted(entries: Mapping[str, Any], name: Any) -> str:
        check_name(name)
        if name not in entries:
            raise TensorNotInManifestError(f"tensor {name!r} is not in the manifest")
        return name

    def _view(self, name: str, e: Mapping[str, Any], buf: BufferView, found: Mapping[str, objects.Entry],
              aligned: bool = False) -> torch.Tensor:
        entry = found.get(e["digest"])
        if entry is None or entry.dtype != format_dtype(e["dtype"]) or entry.shape != e["shape"]:
            raise InvalidManifestError(
                f"manifest entry {name!r} does not match object {e['object']}: no tensor {e['digest']} "
                f"of dtype {e['dtype']} and shape {e['shape']} in it"
            )
        return buf.tensor(entry.start, entry.stop, entry.dtype, entry.shape, aligned)

    def _read_objects(
        self, users: Mapping[str, list[str]], entries: Mapping[str, Any], sizes: Mapping[str, int], prog: Progress
    ) -> dict[str, tuple[Any, dict[str, objects.Entry]]]:
        out: dict[str, tuple[Any, dict[str, objects.Entry]]] = {}
        missing = []
        for obj in users:
            got = self._from_cache(obj, users, entries) if self.cache is not None else None
            if got is not None:
                out[obj] = got
                prog.add(sizes.get(obj, 0))
            else:
                missing.append(obj)
        if missing and self.offline and self._remote:
            raise self._not_cached(missing, users)
        accepted: dict[str, Future] = {}
        # Remote: each object is verified and cached by one thread as it arrives, while the others
        # are still downloading (blake3 and file writes release the GIL); local: read in place.
        with ThreadPoolExecutor(1, thread_name_prefix="rlreg-verify") as verifier:

            def arrived(obj: str, data: Any) -> None:  # called from the download loop's thread
                prog.add(sizes.get(obj, 0))
                accepted[obj] = verifier.submit(self._accept, obj, data, users, entries)

            with filesystems.translate_errors(self.url):
                fetched = self._fetch(missing, sizes, None if self._local else arrived, prog, into_cache=True)
            prog.wait(accepted.values())
            for obj in missing:
                future = accepted.get(obj)
                data, found = future.result() if future is not None else self._accept(obj, fetched[obj], users, entries)
                if self._local:  # read in place: the verification is the work
                    prog.add(sizes.get(obj, 0))
                self.stats.objects_read += 1
                self.stats.bytes_read += len(data)
                out[obj] = (_buffer_view(data), found)
        return out

    def _accept(self, obj: str, data: Any, users: Mapping[str, list[str]], entries: Mapping[str, Any]):
        """A fetched object's bytes, verified (and cached): ``(buffer, {tensor digest: entry})``."""
        if isinstance(data, BaseException):
            self._raise_fetch_error(obj, data, users[obj])
        if isinstance(data, Filling):  # downloaded into the cache folder: verified before it is an entry
            return self._accept_filled(obj, data, users, entries)
        if isinstance(data, bytes):  # not S3 (read into a bytearray) or a local memory map
            data = bytearray(data)  # writable (the tensors are views of it), copied before verifying
        found = self._decode(obj, data, users, entries)
        if self.cache is not None:
            self.cache.add(obj, [data], len(data))
        return data, found

    def _accept_filled(self, obj: str, filling: Filling, users: Mapping[str, list[str]], entries: Mapping[str, Any]):
        try:
            data = filling.mapped()
            found = self._decode(obj, data, users, entries)
        except BaseException:
            filling.drop()
            raise
        filling.keep()
        return data, found

    def _not_cached(self, missing: list[str], users: Mapping[str, list[str]]) -> NotCachedError:
        names = sorted(n for obj in missing for n in users[obj])
        shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        where = self.cache.folder if self.cache is not None else "(no cache)"
        unreadable = {o: self.cache.unreadable[o] for o in missing if self.cache is not None and o in self.cache.unreadable}
        if unreadable:
            first = next(iter(unreadable))
            return NotCachedError(
                f"{len(unreadable)} object(s) of {self.url} are in the cache {where} but cannot be read (first "
                f"{first}: {unreadable[first]}), and RLREG_OFFLINE=1 forbids fetching them: fix the cache "
                "folder's permissions, or unset RLREG_OFFLINE"
            )
        return NotCachedError(
            f"{len(missing)} object(s) of {self.url} (first {missing[0]}; tensors {shown}) are not in the "
            f"cache {where}, and RLREG_OFFLINE=1 forbids fetching them: load this version once online "
            "with this cache (RLREG_CACHE_DIR), or unset RLREG_OFFLINE"
        )

    def _from_cache(self, obj: str, users: Mapping[str, list[str]], entries: Mapping[str, Any]):
        buf = self.cache.read(obj)  # type: ignore[union-attr]
        if buf is None:
            return None
        try:
            found = self._decode(obj, buf, users, entries, where=self.cache.path(obj))  # type: ignore[union-attr]
        except IntegrityError as exc:
            log.warning("discarding a damaged cache entry: %s", exc)
            self.cache.discard_quietly(obj)  # type: ignore[union-attr]
            return None
        self.stats.cache_hits += 1
        return _buffer_view(buf), found

    def _fetch(
        self, objs: list[str], sizes: Mapping[str, int] | None, fetched: Any, prog: Progress, into_cache: bool = False,
    ) -> dict[str, Any]:
        """``{object: its bytes or the exception reading it}``; ``fetched(object, result)`` as each remote read
        ends (on another thread: it must not block), ``prog`` reported on this thread meanwhile.

        ``into_cache``: a remote object of known size that fits the cache is written into it as it
        arrives, and given as a ``cache.Filling`` to verify and keep (no buffer and copy of it).
        """
        if not objs:
            return {}
        if self._local:
            out: dict[str, Any] = {}
            for obj in objs:
                try:
                    out[obj] = filesystems.map_file(self._path(obj))
                except (FileNotFoundError, NotAFileError) as exc:
                    out[obj] = exc
            return out
        known = [(sizes or {}).get(o) for o in objs]
        on_done = None if fetched is None else (lambda i, result: fetched(objs[i], result))
        cache = self.cache if into_cache else None
        into = None if cache is None else (lambda i: None if known[i] is None else cache.filling(objs[i], known[i]))
        got = filesystems.cat_many(self.fs, [self._path(o) for o in objs], known, on_done, into,  # concurrent GETs
                                   wait=prog.wait)
        return dict(zip(objs, got))

    def _raise_fetch_error(self, obj: str, exc: BaseException, names: list[str]) -> None:
        tensors = ", ".join(repr(n) for n in names)
        if isinstance(exc, FileNotFoundError):
            with filesystems.translate_errors(self.url):
                filesystems.check_bucket(self.fs, self.location.path, self.url)  # a missing bucket: exit 7
            raise ObjectNotFoundError(f"object {obj} (tensors {tensors}) is not in {self.url}") from exc
        if isinstance(exc, NotAFileError):
            raise IntegrityError(
                f"object {obj} at {self._where(obj)} is damaged (tensors {tensors}): {exc}; {REPAIR_HINT}"
            ) from None
        with filesystems.translate_errors(self.url):
            raise exc

    def _decode(self, obj: str, buf: Any, users: Mapping[str, list[str]], entries: Mapping[str, Any], where: str = ""):
        def names_of(tensor_digest: str) -> list[str]:
            named = [n for n in users.get(obj, []) if entries[n]["digest"] == tensor_digest]
            return named or list(users.get(obj, []))

        hint = "" if where else REPAIR_HINT  # a damaged cache entry is discarded and fetched again
        return objects.decode(buf, obj, where or self._where(obj), names_of, hint)

    # -- housekeeping --------------------------------------------------------------------------------

    def list_digests(self) -> list[str]:
        """Every object digest stored, sorted.

        An empty list for a store nothing was put into yet (its folder or prefix is created by the
        first ``put``); ``StorageUnavailableError`` naming the bucket when an S3 bucket does not exist.
        """
        return sorted(self._listing())

    def _listing(self) -> dict[str, int]:
        """``{object digest: size in bytes}`` of every stored object (one listing)."""
        self._require_online("listing")
        root = posixpath.join(self.location.path, "objects")
        with filesystems.translate_errors(self.url):
            try:
                found = self.fs.find(root, detail=True, withdirs=True)  # a folder in place of an object too
            except FileNotFoundError:
                found = {}
            if not found:  # an empty listing: tell an empty bucket or prefix from a missing bucket
                filesystems.check_bucket(self.fs, self.location.path, self.url)
        out = {}
        for p, info in found.items():
            candidate = digest.PREFIX + posixpath.basename(p)
            if digest.is_digest(candidate):
                out[candidate] = int(info.get("size") or 0)
        return out

    def exists(self, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` that are stored (asked concurrently on S3)."""
        ds = _checked_digests(digests)
        self._require_online("exists")
        with filesystems.translate_errors(self.url):
            return set(self._exists(ds))

    def _exists(self, ds: list[str]) -> list[str]:
        flags = filesystems.exists_many(self.fs, [self._path(d) for d in ds])
        return [d for d, ok in zip(ds, flags) if ok]

    def delete(self, digests: Iterable[str]) -> set[str]:
        """Delete objects by digest (from storage and the cache); returns those that were stored."""
        ds = _checked_digests(digests)
        present = self.exists(ds)
        with filesystems.translate_errors(self.url):
            if present:
                self.fs.rm([self._path(d) for d in sorted(present)])
        if self.cache is not None:  # (deleted from storage already: a cache folder that refuses is only said)
            for d in ds:
                self.cache.discard_quietly(d)
        return present

    def verify(
        self,
        digests: Iterable[str] | None = None,
        *,
        quarantine: bool = False,
        progress: ProgressCallback | None = None,
    ) -> VerifyReport:
        """Re-hash every stored object (or ``digests``), bypassing the cache; report the damaged ones.

        With ``quarantine=True`` each damaged object is moved to ``<url>/quarantine/<hex>`` (never
        deleted), so that the next ``put`` of its tensors writes it again. ``progress(done, total)``
        counts the bytes of the objects checked (``total`` from one listing), at most once per object.
        """
        ds = _checked_digests(digests) if digests is not None else []
        self._require_online("verify")
        sizes = self._listing() if digests is None or progress is not None else {}
        if digests is None:
            ds = sorted(sizes)
        prog = Progress(progress, sum(sizes.get(d, 0) for d in ds))
        prog.start()
        fetched_remote = None if self._local else (lambda o, _: prog.add(sizes.get(o, 0)))
        damaged: dict[str, str] = {}
        held: dict[str, list[str]] = {}
        moved: dict[str, str] = {}
        for start in range(0, len(ds), 64):
            chunk = ds[start : start + 64]
            with filesystems.translate_errors(self.url):
                fetched = self._fetch(chunk, None, fetched_remote, prog)
            for obj in chunk:
                data = fetched.pop(obj)
                if isinstance(data, NotAFileError):
                    damaged[obj], held[obj] = f"object {obj} is damaged: {data}", []
                    if quarantine:
                        moved[obj] = self._quarantine(obj)
                elif isinstance(data, BaseException):
                    damaged[obj], held[obj] = f"missing: {data}", []
                else:
                    try:
                        objects.decode(data, obj, self._where(obj), lambda _: [])
                    except IntegrityError as exc:
                        damaged[obj], held[obj] = str(exc), objects.held_tensors(data, obj)
                        if quarantine:
                            del data  # (a local memory map) before the file is moved
                            moved[obj] = self._quarantine(obj)
                if self._local:  # read in place: the hash is the read
                    prog.add(sizes.get(obj, 0))
        cache_damaged = {} if self.cache is None or digests is not None else self.cache.verify(discard=quarantine)
        return VerifyReport(len(ds), damaged, held, moved, cache_damaged, sorted(cache_damaged) if quarantine else [])

    def _quarantine(self, obj: str) -> str:
        """Move a damaged object aside, under ``quarantine/``; return the URL it was moved to."""
        h = digest.hex_of(obj)
        name = h
        with filesystems.translate_errors(self.url):
            if self.fs.exists(posixpath.join(self.location.path, "quarantine", name)):
                name = f"{h}.{uuid.uuid4().hex[:12]}"  # damaged before: keep both copies
            dest = posixpath.join(self.location.path, "quarantine", name)
            if self._local:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.replace(self._path(obj), dest)
            else:
                self.fs.mv(self._path(obj), dest)
        if self.cache is not None:
            self.cache.discard(obj)
        log.warning("moved damaged object %s to %s/quarantine/%s", obj, self.url, name)
        return f"{self.url}/quarantine/{name}"


def _object_sizes(manifest_: Mapping[str, Any]) -> dict[str, int]:
    objs = manifest_.get("objects")
    if not isinstance(objs, Mapping):
        return {}
    return {d: o["nbytes"] for d, o in objs.items() if isinstance(o, Mapping) and isinstance(o.get("nbytes"), int)}


def _checked_digests(digests: Iterable[str]) -> list[str]:
    if isinstance(digests, str):
        raise InvalidDigestError(f"expected an iterable of digests, got the single string {digests!r}")
    ds = list(dict.fromkeys(digests))
    for d in ds:
        if not digest.is_digest(d):
            raise InvalidDigestError(f"{d!r} is not a digest (expected 'blake3:' and 64 hex digits)")
    return ds


def _buffer_view(buf: Any) -> BufferView:
    """Tensors over a verified buffer (torch is imported on the first read)."""
    from storage.tensors import BufferView

    return BufferView(buf)
