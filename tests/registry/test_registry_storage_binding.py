"""The storage location belongs to the registry: recorded by its database, used, refused, adopted, moved."""

from __future__ import annotations

import shutil
import threading

import pytest
import registry_toys as toys

from registry import Registry
from registry.binding import REGISTRY_STREAM, normalize
from registry.errors import ConflictError, StorageMismatchError, StorageMoveError
from registry.eventstore import EventStore
from registry.projections import Projections


def test_equivalent_spellings_normalise_to_one_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = f"file://{tmp_path}/blobs"
    assert {normalize(u) for u in (f"{tmp_path}/blobs", f"{tmp_path}/blobs/", f"file://{tmp_path}/blobs/",
                                   f"{tmp_path}//blobs", f"{tmp_path}/./blobs", "blobs", "./blobs/")} == {local}
    assert normalize("s3://team-bucket/blobs/") == normalize("s3://team-bucket/blobs") == "s3://team-bucket/blobs"
    assert normalize("s3://team-bucket/other") != normalize("s3://team-bucket/blobs")


def test_a_new_registry_records_its_storage_and_clients_without_a_url_use_it(db_url, tmp_path, monkeypatch):
    first = Registry(db_url, str(tmp_path / "blobs") + "/")
    first.snapshot("m", toys.spec().build())
    [bound] = first.storage_history()
    assert (bound.stream, bound.type, bound.payload) == (
        REGISTRY_STREAM, "StorageBound", {"url": f"file://{tmp_path}/blobs", "how": "created"})
    assert bound.actor["pid"] is not None
    first.close()
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "elsewhere"))  # the default folder is not where they are
    with Registry(db_url) as second:
        assert second.storage_url == f"file://{tmp_path}/blobs"
        assert toys.states_equal(second.load("m"), second.load("m", 1))
    with Registry(db_url, f"file://{tmp_path}/blobs") as same:  # another spelling of the same place
        assert same.storage_url == f"file://{tmp_path}/blobs"
    assert not (tmp_path / "elsewhere" / "blobs").exists()


def test_a_client_given_another_url_is_refused_before_anything_is_written(db_url, tmp_path, monkeypatch):
    with Registry(db_url, str(tmp_path / "blobs")) as reg:
        reg.snapshot("m", toys.spec().build())
        head = reg.head()
    monkeypatch.setenv("RLREG_STORAGE_URL", str(tmp_path / "laptop"))
    for make in (lambda: Registry(db_url), lambda: Registry(db_url, str(tmp_path / "laptop"), create=False)):
        with pytest.raises(StorageMismatchError) as refused:
            make()
        message = str(refused.value)
        assert f"keeps its objects at 'file://{tmp_path}/blobs'" in message
        assert f"was given 'file://{tmp_path}/laptop' (--storage or RLREG_STORAGE_URL)" in message
        assert f"run `rlreg storage move file://{tmp_path}/laptop`" in message
    assert isinstance(refused.value, ValueError)
    monkeypatch.delenv("RLREG_STORAGE_URL")
    with Registry(db_url) as reg:
        assert reg.head() == head
    assert not (tmp_path / "laptop").exists()


def test_a_registry_from_before_adopts_the_first_url_named(db_url, tmp_path):
    with EventStore(db_url, Projections()) as old:  # written before storage was recorded
        old.append("legacy", [toys_spec_event()])
    with Registry(db_url) as unnamed:  # no URL named: the default is used, nothing recorded
        assert unnamed.storage_history() == [] and unnamed.head() == 1
    with Registry(db_url, str(tmp_path / "team")) as adopter:
        [adopted] = adopter.storage_history()
        assert adopted.payload == {"url": f"file://{tmp_path}/team", "how": "adopted"}
    with pytest.raises(StorageMismatchError, match="keeps its objects at"):
        Registry(db_url, str(tmp_path / "other"))


def toys_spec_event():
    from registry.eventstore import NewEvent
    from registry.projections import SPEC_RECORDED, spec_digest

    spec = {"kind": "legacy"}
    return NewEvent(SPEC_RECORDED, {"spec": spec, "spec_digest": spec_digest(spec)})


def test_move_checks_every_object_then_records_and_refuses_the_old_url(db_url, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    reg = Registry(db_url, str(old))
    module = toys.spec().build()
    for step in (1, 2):
        toys.train_step(module, step)
        reg.snapshot("m", module)
    stale = Registry(db_url)  # a trainer still running on the old location
    stale.snapshot("trainer", module)  # it has checked the binding once: later checks read only what came after
    new.mkdir()
    with pytest.raises(StorageMoveError, match=rf"storage move to 'file://{new}' refused: \d+ of the \d+ objects"):
        reg.move_storage(str(new))
    assert len(reg.storage_history()) == 1 and reg.storage_url == f"file://{old}"
    shutil.rmtree(new)
    shutil.copytree(old, new)
    moved = reg.move_storage(str(new) + "/")
    assert (moved.type, moved.payload) == ("StorageMoved", {"url": f"file://{new}", "previous": f"file://{old}"})
    assert reg.storage_url == f"file://{new}"
    shutil.rmtree(old)
    with Registry(db_url) as fresh:
        assert toys.states_equal(fresh.load("m"), module)
    with pytest.raises(StorageMismatchError, match=rf"was given 'file://{old}'"):
        Registry(db_url, str(old))
    with pytest.raises(StorageMismatchError, match=rf"now keeps its objects at 'file://{new}'.*open the registry again"):
        stale.snapshot("m", module)
    assert not old.exists() and reg.version("m").version == 2
    with pytest.raises(StorageMismatchError, match="is already at"):
        reg.move_storage(str(new))
    stale.close()
    reg.close()


@pytest.mark.s3
def test_move_to_a_bucket(db_url, tmp_path, s3_bucket):
    import fsspec

    reg = Registry(db_url, str(tmp_path / "blobs"))
    module = toys.spec().build()
    reg.snapshot("m", module)
    fsspec.filesystem("s3").put(str(tmp_path / "blobs"), f"{s3_bucket}/blobs", recursive=True)
    reg.move_storage(f"{s3_bucket}/blobs/")
    reg.close()
    with Registry(db_url) as client:
        assert client.storage_url == f"{s3_bucket}/blobs"
        assert toys.states_equal(client.load("m"), module)


def test_concurrent_first_opens_bind_one_url(db_url, tmp_path):
    EventStore(db_url).close()  # the schema exists; the log is empty
    barrier, results = threading.Barrier(4), {}

    def open_with(i: int) -> None:
        barrier.wait()
        try:
            results[i] = Registry(db_url, str(tmp_path / f"b{i}"))
        except (StorageMismatchError, ConflictError) as exc:
            results[i] = exc

    threads = [threading.Thread(target=open_with, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    opened = [r for r in results.values() if isinstance(r, Registry)]
    assert len(opened) == 1 and all(isinstance(r, StorageMismatchError) for r in results.values() if r not in opened)
    assert len(opened[0].storage_history()) == 1
    opened[0].close()
