"""Who references a store's objects from outside it: one small JSON file per holder, ``<url>/holders/<id>.json``;
and who is deleting unreferenced objects now: one lease per collector, ``<url>/collecting/<id>.<token>.json``.

A store does not know what its objects are for: a registry's database says which of them its
versions use. Several databases may record objects in one store; one that deleted the objects its
own versions no longer use would then delete objects another still uses. So a holder records itself
in the store before it stores an object (``hold``), and one about to delete asks who else holds the
store first (``holders``): ``registry.gc`` refuses a store another holder holds.

That look and the deletes after it are apart in time: a holder that records itself in between, and
then finds an object it needs already stored (one the collector is about to delete), would lose it.
So a collector takes a lease (``Lease``) before its first look and keeps it, renewed, until its last
delete; a holder that records itself, or a client of it that has not stored anything yet, asks for
the others' live leases after its record is written and before it stores (``collecting``). Either
the collector's look comes after the record (it sees the holder and refuses), or the holder's ask
comes after the lease (it sees the lease and is refused until the collector ends): in both orders no object the new
holder counted on is deleted. A lease not renewed for ``LEASE_SECONDS`` (its collector was killed)
no longer counts, and a collector whose renewals fail stops deleting before then (``Lease.check``).
Machines' clocks are taken to agree within ``MARGIN_SECONDS`` (NTP).

Each file is its holder's own, named by its id: recording one never reads or rewrites another's, so
holders need no lock between them, on a folder or a bucket alike. A record is written whole (renamed
into place and fsynced on a local folder, one PUT on S3) and removed only by ``release``. A record
that cannot be read or parsed still names a holder: it is reported with ``"damaged"`` set, never
skipped. Files whose names are no holder id (not written here) are ignored.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import posixpath
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from storage import filesystems, jsondepth, listing
from storage.errors import StorageUnavailableError

log = logging.getLogger(__name__)

FOLDER = "holders"
LEASES = "collecting"
SUFFIX = ".json"
LEASE_SECONDS = 600  # a lease not renewed for this long counts no more (its collector is gone)
RENEW_SECONDS = 60
MARGIN_SECONDS = 120  # a collector stops deleting this long before others may take its lease for lapsed
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_id(holder: str) -> str:
    """``holder`` when it is a valid holder id (a file name: letters, digits, ``_.-``; 1-128), else ``ValueError``."""
    if not isinstance(holder, str) or not _is_id(holder):
        raise ValueError(f"{holder!r} is not a holder id: 1-128 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return holder


def _is_id(name: str) -> bool:
    return bool(_ID.fullmatch(name)) and not name.endswith(SUFFIX)


def _path(store: Any, holder: str, folder: str = FOLDER) -> str:
    return posixpath.join(store.location.path, folder, check_id(holder) + SUFFIX)


def _write(store: Any, path: str, record: dict[str, Any], durable: bool) -> None:
    data = json.dumps(record, sort_keys=True).encode()
    if store.is_local:
        filesystems.local_atomic_write(path, [data], durable=durable)
    else:
        filesystems.atomic_write(store.fs, path, [data], size=len(data))


def hold(store: Any, holder: str, record: dict[str, Any]) -> bool:
    """Record ``holder`` (with ``record``, JSON-able) in ``store`` unless it is recorded; True if written now.

    Durable before it returns (a local folder: the file and its folder fsynced, the folder also when
    the file was there: another client's rename may not be durable yet), so that a store holding an
    object this holder stored after this call also holds its record.
    """
    path = _path(store, holder)
    store._require_online("recording a holder")
    with filesystems.translate_errors(store.url):
        if _exists(store, path):
            if store.is_local and store.durable:
                filesystems.fsync_folder(posixpath.dirname(path))
            return False
        _write(store, path, {**record, "holder": holder}, store.durable)
    return True


def recorded(store: Any, holder: str) -> bool:
    """Whether ``store`` holds ``holder``'s record (a stat on a local folder, a HEAD on S3)."""
    store._require_online("looking for a holder")
    with filesystems.translate_errors(store.url):
        return _exists(store, _path(store, holder))


def _exists(store: Any, path: str) -> bool:
    if store.is_local:  # (each snapshot asks: os.stat, not fsspec's info, 2 us against 15)
        return os.path.isfile(path)
    return filesystems.size_of(store.fs, path) is not None


def _listed(store: Any, folder: str, check: bool = True) -> dict[str, dict[str, Any]]:
    """``{holder id: listing info}`` of the files of ``folder`` named by a holder id (``check``: a missing
    bucket raises, not listed as empty)."""
    root = posixpath.join(store.location.path, folder)
    try:
        # (refresh: a listings cache turned on must not hide a file written since)
        found = store.fs.ls(root, detail=True, refresh=True)
    except FileNotFoundError:
        found = []
    if not found and check:  # a missing bucket is an error, not "none"
        filesystems.check_bucket(store.fs, store.location.path, store.url)
    out = {}
    for info in found:
        name = posixpath.basename(info["name"].rstrip("/"))
        if name.endswith(SUFFIX) and _is_id(name[: -len(SUFFIX)]):
            out[name[: -len(SUFFIX)]] = info
    return out


def holders(store: Any, *, unread: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """``{holder id: its record}`` of every holder recorded in ``store`` (``{}`` for none); a file that
    cannot be read or parsed gives ``{"damaged": reason}``, so that it still counts as a holder. The
    records of ``unread`` holders are listed, not read (``{}``: one request less each on S3)."""
    unread = set(unread)
    store._require_online("listing the holders")
    with filesystems.translate_errors(store.url):
        return {name: {} if name in unread else _read(store, info["name"])
                for name, info in sorted(_listed(store, FOLDER).items())}


def _read(store: Any, path: str) -> dict[str, Any]:
    try:
        record = jsondepth.loads(store.fs.cat_file(path), path)  # (a shared bucket's file: depth-checked)
    except FileNotFoundError:  # released meanwhile: read as damaged, a holder that was there
        return {"damaged": "removed while it was read"}
    except (ValueError, OSError) as exc:
        return {"damaged": f"{type(exc).__name__}: {exc}"}
    return record if isinstance(record, dict) else {"damaged": "not a JSON object"}


def release(store: Any, holder: str, folder: str = FOLDER) -> bool:
    """Remove ``holder``'s record (or, ``folder=LEASES``, lease) from ``store``; True if there was one."""
    path = _path(store, holder, folder)
    store._require_online("removing a holder")
    with filesystems.translate_errors(store.url):
        try:
            if store.is_local:
                os.unlink(path)
                if store.durable:
                    filesystems.fsync_folder(posixpath.dirname(path))
            else:
                if filesystems.size_of(store.fs, path) is None:
                    return False
                store.fs.rm_file(path)
        except FileNotFoundError:
            return False
    return True


def collecting(store: Any, now: dt.datetime | None = None) -> dict[str, dt.datetime]:
    """``{holder id: when its lease was last renewed}`` of the leases renewed less than ``LEASE_SECONDS``
    before ``now`` (default: this machine's clock), by the store's clock (a bucket's ``LastModified``)."""
    store._require_online("listing the leases")
    now = now or dt.datetime.now(dt.timezone.utc)
    with filesystems.translate_errors(store.url):
        found = _listed(store, LEASES, check=False)  # (asked before a put, which says a bucket is missing)
    out: dict[str, dt.datetime] = {}
    for name, info in found.items():  # (named <holder>.<token>: a holder's gcs may run at once)
        when = listing.modified(info) or now
        if now - when < dt.timedelta(seconds=LEASE_SECONDS):
            holder = name.rsplit(".", 1)[0]
            out[holder] = max(when, out.get(holder, when))
    return out


def _clock() -> float:
    """Seconds that keep counting while the machine sleeps (a lease lapses meanwhile for the others too)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


class Lease:
    """A collector's lease on ``store`` (``collecting``), written at ``__enter__``, renewed every
    ``RENEW_SECONDS`` by a thread of its own, removed at ``__exit__``; named ``<holder>.<token>``, so
    that two collectors of one holder each remove only their own.

    ``check()``, before each delete: ``StorageUnavailableError`` once the last renewal that succeeded
    began more than ``LEASE_SECONDS - MARGIN_SECONDS`` ago (renewals failing, or this process stopped
    meanwhile): others may take the lease for lapsed by then, and record themselves unseen.
    """

    def __init__(self, store: Any, holder: str, record: dict[str, Any]) -> None:
        self.store, self.holder, self.record = store, check_id(holder), record
        self.name = f"{holder}.{os.urandom(8).hex()}"  # its own: another gc of the holder has another
        self._path = _path(store, self.name, LEASES)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._renewed = 0.0  # _clock() when the last renewal that succeeded began
        self._failure: BaseException | None = None

    def renew(self) -> None:
        """Write the lease anew (its modification time is when it was last renewed)."""
        began = _clock()
        with filesystems.translate_errors(self.store.url):
            _write(self.store, self._path, {**self.record, "holder": self.holder}, durable=False)
        self._renewed, self._failure = began, None

    def check(self) -> None:
        """Raise unless the lease still holds, with a margin (see the class docstring)."""
        age = _clock() - self._renewed
        if age > LEASE_SECONDS - MARGIN_SECONDS:
            why = f" (renewing it failed: {self._failure})" if self._failure is not None else ""
            raise StorageUnavailableError(
                f"stopped deleting from {self.store.url}: this collector's lease there was last renewed "
                f"{age:.0f} s ago{why}, and another registry may take it for lapsed after {LEASE_SECONDS} s; "
                "what was deleted is recorded, run it again"
            )

    def _keep_renewing(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                self.renew()
                if self._stop.is_set():  # (a renewal that outlasted __exit__ wrote the lease back: removed again)
                    self._release()
            except Exception as exc:  # noqa: BLE001 - retried at the next turn; check() stops the collector
                if self._failure is None:
                    log.warning("renewing the lease %s on %s failed (%s): retrying every %d s",
                                self.name, self.store.url, exc, RENEW_SECONDS)
                self._failure = exc

    def __enter__(self) -> Lease:
        self.store._require_online("taking a lease")
        self.renew()
        self._renewer = threading.Thread(target=self._keep_renewing, name="rlreg-lease", daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=RENEW_SECONDS)  # (a renewal still hung removes the lease when it ends)
        self._release()

    def _release(self) -> None:
        try:
            release(self.store, self.name, LEASES)
        except Exception as exc:  # noqa: BLE001 - the collector's work is done; the lease lapses by itself
            log.warning("could not remove the lease %s from %s (%s): it lapses %d s after its last renewal",
                        self.name, self.store.url, exc, LEASE_SECONDS)
