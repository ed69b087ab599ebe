"""Storage bounds of the exchange, attacked over real HTTP (tornado app, real SQLite/PostgreSQL).

Each test uploads what a hostile learner (or a careless instructor) could send and checks the
answer names the limit that refused it, and that nothing of the upload stays on disk.
"""

from __future__ import annotations

import functools
import gzip
import io
import subprocess
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from tornado import web

from grader.exchange.auth import StaticAuthorizer
from grader.exchange.server import exchange_routes
from grader.exchange.storage import ExchangeLimits, ExchangeStorage
from hub.store import Database
from tests.billing.conftest import start_app
from tests.exchange.conftest import CALLERS, COURSE, LIMITS, PREFIX, Exchange, targz

NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def tar_of(add: Callable[[tarfile.TarFile], None]) -> bytes:
    """A gzip'd tar built by ``add``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        add(archive)
    return buffer.getvalue()


def leftovers(storage: ExchangeStorage) -> list[Path]:
    """Files and folders an upload left in staging or as a stored submission."""
    staged = [p for p in (storage.root / ".staging").rglob("*") if p.is_file() or p.is_dir()]
    staged = [p for p in staged if p.parent != storage.root / ".staging"]  # instance dirs, locks
    return staged + list(storage.root.glob(f"{COURSE}/submissions/*"))


@asynccontextmanager
async def serve(db: Database, root: Path, limits: ExchangeLimits) -> AsyncIterator[Exchange]:
    """The exchange with ``limits`` on a free port."""
    storage = ExchangeStorage(root, db, courses={COURSE}, limits=limits)
    routes = exchange_routes(PREFIX, storage=storage, authorizer=StaticAuthorizer(CALLERS))
    server, url = await start_app(web.Application(routes, xsrf_cookies=True, cookie_secret=b"x"))
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            yield Exchange(f"{url}{PREFIX}exchange/v1/courses/", storage, http)
    finally:
        server.stop()
        await server.close_all_connections()


async def release(ex: Exchange) -> None:
    response = await ex.call("PUT", "assignments/ps1", "tok-inst", content=targz({"a.ipynb": NB}))
    assert response.status_code == 201, response.text


async def submit(ex: Exchange, token: str, files: dict[str, bytes]) -> httpx.Response:
    return await ex.call("POST", "assignments/ps1/submissions", token, content=targz(files))


def assert_refused(response: httpx.Response, status: int, limit: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["limit"] == limit, body
    assert limit in body["error"] and body["allowed"] >= 0, body


def _ustar_dir_header(name: str) -> bytes:
    """A tar header of a folder, built directly: ``tarfile`` takes ~0.1 ms per header."""
    head = (
        name.encode().ljust(100, b"\0")
        + b"0000755\0"
        + b"0000000\0" * 2
        + b"00000000000\0" * 2
        + b" " * 8
        + tarfile.DIRTYPE
        + b"\0" * 100
        + b"ustar\x0000"
    ).ljust(512, b"\0")
    checksum = b"%06o\0 " % sum(head)
    return head[:148] + checksum + head[156:]


@functools.cache
def hundred_thousand_directories() -> bytes:
    """The archive of the reproduced attack: 100 000 folder entries, gzip'd."""
    body = b"".join(_ustar_dir_header(f"d{i}") for i in range(100_000)) + b"\0" * 1024
    return gzip.compress(body, compresslevel=6)


def test_directory_bomb_is_a_valid_tar() -> None:
    """GNU tar reads the hand-made archive as 100 000 folders (tarfile is slow at it)."""
    listing = subprocess.run(
        ["tar", "-tvzf", "-"], input=hundred_thousand_directories(), capture_output=True, check=True
    ).stdout.splitlines()
    assert len(listing) == 100_000
    assert all(line.startswith(b"d") for line in listing)
    assert listing[-1].endswith(b" d99999/") or listing[-1].endswith(b" d99999")


async def test_hundred_thousand_directories_refused_fast(db: Database, tmp_path: Path) -> None:
    """The reproduced attack: 100 000 directory entries in a ~0.5 MiB archive."""
    bomb = hundred_thousand_directories()
    # Well within the default archive limit (20 MiB): only counting entries can catch it.
    limits = replace(LIMITS, archive_bytes=2 * 2**20)
    assert len(bomb) < 2**20
    async with serve(db, tmp_path / "ex", limits) as ex:
        await release(ex)
        started = time.monotonic()
        response = await ex.call("POST", "assignments/ps1/submissions", "tok-alice", content=bomb)
        elapsed = time.monotonic() - started
        assert_refused(response, 413, "exchange.max_entries")
        assert elapsed < 3, f"refusing took {elapsed:.1f} s"
        assert leftovers(ex.storage) == []


async def test_directories_and_files_count_together(exchange: Exchange) -> None:
    await release(exchange)
    half = LIMITS.entries // 2 + 1

    def mixed(archive: tarfile.TarFile) -> None:
        for i in range(half):
            info = tarfile.TarInfo(f"d{i}")
            info.type = tarfile.DIRTYPE
            archive.addfile(info)
            data = tarfile.TarInfo(f"d{i}/f")
            archive.addfile(data, io.BytesIO(b""))

    response = await exchange.call(
        "POST", "assignments/ps1/submissions", "tok-alice", content=tar_of(mixed)
    )
    assert_refused(response, 413, "exchange.max_entries")
    assert leftovers(exchange.storage) == []


async def test_single_file_cap(exchange: Exchange) -> None:
    await release(exchange)
    response = await submit(
        exchange, "tok-alice", {"ps1.ipynb": NB, "big.bin": b"\0" * (LIMITS.file_bytes + 1)}
    )
    assert_refused(response, 413, "exchange.max_file_mib")
    assert leftovers(exchange.storage) == []


async def test_huge_member_name_is_not_read_into_memory(exchange: Exchange) -> None:
    """A GNU long name of many MiB (compresses to almost nothing) counts as unpacked bytes."""
    await release(exchange)

    def longname(archive: tarfile.TarFile) -> None:
        # Past what the bounded stream lets through: file data plus headers of every entry.
        info = tarfile.TarInfo("a" * (LIMITS.unpacked_bytes + (LIMITS.entries + 8) * 2048 + 1))
        archive.addfile(info, io.BytesIO(b""))

    data = tar_of(longname)
    assert len(data) < LIMITS.archive_bytes
    response = await exchange.call("POST", "assignments/ps1/submissions", "tok-alice", content=data)
    assert_refused(response, 413, "exchange.max_unpacked_mib")


def _hardlink(archive: tarfile.TarFile) -> None:
    archive.addfile(tarfile.TarInfo("ps1.ipynb"), io.BytesIO(b""))
    info = tarfile.TarInfo("copy.ipynb")
    info.type = tarfile.LNKTYPE
    info.linkname = "ps1.ipynb"
    archive.addfile(info)


def _dir_symlink_then_file(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("out")
    info.type = tarfile.SYMTYPE
    info.linkname = "/tmp"
    archive.addfile(info)
    archive.addfile(tarfile.TarInfo("out/planted"), io.BytesIO(b"x"))


def _device(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("dev")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    archive.addfile(info)


def _fifo(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("pipe")
    info.type = tarfile.FIFOTYPE
    archive.addfile(info)


def _dotdot_dir(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("a/../../escape")
    info.type = tarfile.DIRTYPE
    archive.addfile(info)


def _absolute_dir(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("/tmp/escape")
    info.type = tarfile.DIRTYPE
    archive.addfile(info)


@pytest.mark.parametrize(
    "build", [_hardlink, _dir_symlink_then_file, _device, _fifo, _dotdot_dir, _absolute_dir]
)
async def test_links_devices_and_escapes_refused(
    exchange: Exchange, build: Callable[[tarfile.TarFile], None]
) -> None:
    await release(exchange)
    response = await exchange.call(
        "POST", "assignments/ps1/submissions", "tok-alice", content=tar_of(build)
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(("unsafe", "archive member"))
    assert leftovers(exchange.storage) == []
    assert not (exchange.storage.root.parent / "escape").exists()


async def test_kept_submissions_per_learner_and_assignment(db: Database, tmp_path: Path) -> None:
    async with serve(db, tmp_path / "ex", replace(LIMITS, kept_submissions=2)) as ex:
        await release(ex)
        for _ in range(2):
            assert (await submit(ex, "tok-alice", {"ps1.ipynb": NB})).status_code == 201
        third = await submit(ex, "tok-alice", {"ps1.ipynb": NB})
        assert_refused(third, 422, "exchange.max_kept_submissions")
        assert "instructor" in third.json()["error"]
        # Someone else's quota is their own.
        assert (await submit(ex, "tok-bob", {"ps1.ipynb": NB})).status_code == 201
        mine = (await ex.call("GET", "my/submissions", "tok-alice")).json()["submissions"]
        assert len(mine) == 2
        assert not list((ex.storage.root / ".staging").rglob("*.ipynb"))


async def test_bytes_per_learner_and_assignment(db: Database, tmp_path: Path) -> None:
    piece = b"x" * 10_000
    limits = replace(LIMITS, learner_assignment_bytes=25_000)
    async with serve(db, tmp_path / "ex", limits) as ex:
        await release(ex)
        for _ in range(2):
            assert (await submit(ex, "tok-alice", {"ps1.ipynb": piece})).status_code == 201
        third = await submit(ex, "tok-alice", {"ps1.ipynb": piece})
        assert_refused(third, 422, "exchange.max_learner_assignment_mib")
        assert (await submit(ex, "tok-bob", {"ps1.ipynb": piece})).status_code == 201
        assert not list((ex.storage.root / ".staging").rglob("*.ipynb"))


async def test_bytes_per_course(db: Database, tmp_path: Path) -> None:
    piece = b"x" * 10_000
    limits = replace(LIMITS, course_bytes=35_000)
    async with serve(db, tmp_path / "ex", limits) as ex:
        await release(ex)
        for token in ("tok-alice", "tok-bob", "tok-dave"):
            assert (await submit(ex, token, {"ps1.ipynb": piece})).status_code == 201
        fourth = await submit(ex, "tok-alice", {"ps1.ipynb": piece})
        assert_refused(fourth, 422, "exchange.max_course_mib")
        # An instructor's release counts towards the course, too.
        again = await ex.call(
            "PUT", "assignments/ps2", "tok-inst", content=targz({"a.ipynb": piece})
        )
        assert_refused(again, 422, "exchange.max_course_mib")


async def test_uploads_unpack_on_their_own_executor(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpacking never runs on the default executor that the service's other work shares."""
    await release(exchange)
    threads: list[str] = []
    original = exchange.storage.submit

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(exchange.storage, "submit", recording)
    assert (await submit(exchange, "tok-alice", {"ps1.ipynb": NB})).status_code == 201
    assert len(threads) == 1 and threads[0].startswith("exchange-upload"), threads
