"""Fixtures of the web tests: a populated registry, the app through ASGI, a real ``rlreg serve``."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from webclient import TOKENS, ASGIClient, Server
from webtoys import populate

from registry import Registry
from rlreg.web import create_app, parse_tokens



@dataclass
class Place:
    """Where a registry lives: its database URL and storage folder."""

    db_url: str
    storage: str

    def open(self) -> Registry:
        return Registry(self.db_url, self.storage)


def _populated(folder: Path) -> Place:
    folder.mkdir(parents=True, exist_ok=True)
    place = Place(f"sqlite:///{folder / 'rlreg.db'}", str(folder / "blobs"))
    with place.open() as reg:
        populate(reg)
    return place


@pytest.fixture(scope="session")
def populated(template) -> Place:
    """The session's shared registry (``webtoys.populate``): tests must not write to it."""
    return Place(f"sqlite:///{template / 'rlreg.db'}", str(template / "blobs"))


@pytest.fixture(scope="session")
def read_registry(populated):
    reg = populated.open()
    yield reg
    reg.close()


@pytest.fixture(scope="session")
def client(read_registry):
    """The read-only app over the shared registry, through its ASGI interface."""
    c = ASGIClient(create_app(read_registry))
    yield c
    c.close()


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    """A populated registry folder to copy (copying is much quicker than snapshotting again)."""
    folder = tmp_path_factory.mktemp("web-template")
    _populated(folder)
    return folder


def _copy(template: Path, folder: Path) -> Place:
    """A copy of ``template``; its database (which records the template's storage) moves to the copy's."""
    shutil.copytree(template, folder)
    place = Place(f"sqlite:///{folder / 'rlreg.db'}", str(folder / "blobs"))
    with Registry(place.db_url, str(template / "blobs")) as reg:
        reg.move_storage(place.storage)
    return place


@pytest.fixture
def fresh(tmp_path, template) -> Place:
    """A registry of this test's own (it may write): a copy of ``template``."""
    return _copy(template, tmp_path / "registry")


@pytest.fixture
def writable(fresh):
    """``(client, registry)``: an app with ``--allow-writes`` and the TOKENS, on this test's registry."""
    reg = fresh.open()
    c = ASGIClient(create_app(reg, allow_writes=True, tokens=parse_tokens(TOKENS)))
    yield c, reg
    c.close()
    reg.close()


@pytest.fixture(scope="session")
def served(tmp_path_factory, request) -> tuple[Server, Place]:
    """A real ``rlreg serve --allow-writes`` (uvicorn) on a registry of its own, for the browser, the live
    feed and writes over HTTP; one per session (each start pays for the imports again)."""
    place = _copy(request.getfixturevalue("template"), tmp_path_factory.mktemp("served") / "registry")
    server = Server(place.db_url, place.storage, "--allow-writes", env={"RLREG_SERVE_TOKENS": TOKENS})
    yield server, place
    server.stop()
