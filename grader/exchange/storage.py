"""Server-side storage of the assignment exchange: files under a root folder plus a DB index.

Layout under the root (``<data_dir>/service/exchange``)::

    <course>/released/<assignment>-<random>/...     the released files of one release
    <course>/submissions/<submission uid>/...       one submission, never overwritten
    <course>/feedback/<submission uid>/<random>.html

Folder names come from validated course and assignment ids and from random ids, never from
user names or from paths a client sent, so no request can address a file it was not given by
the index. Uploads are gzip'd tar archives, unpacked with strict checks (regular files and
folders only, no absolute paths, no ``..``, bounded entry count, file size and unpacked size).
What is kept is bounded too: per learner and assignment (count and bytes) and per course.

Durability: an upload is unpacked into a private staging folder, every file and folder of it is
fsynced, then it is renamed into place and the folder holding it fsynced, and only then is the
database row committed (LearnHub's SQLite runs with ``synchronous=FULL``). So once a caller has
its 201, a power cut loses neither the files nor the row. Staging folders of a process that
died mid-upload are removed when the next storage starts (each process holds a lock on its own).

Every method blocks (file system and database); async callers run them in a thread.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import logging
import os
import re
import secrets
import shutil
import tarfile
import uuid
from collections.abc import Container, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa

from hub.errors import LearnHubError
from hub.settings import ExchangeSettings
from hub.store import Database, ExchangeFeedback, ExchangeRelease, ExchangeSubmission

log = logging.getLogger("learnhub.exchange")

#: Tar header bytes allowed per entry on top of the unpacked limit (a header block, padding, and
#: room for a pax header): the decompressed stream may not be longer than that in total.
HEADER_ALLOWANCE = 2048
#: nbgrader's timestamp format (``Exchange.timestamp_format``), always in UTC here.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"
#: Files the server writes into a collected submission; a learner's own copies are dropped.
SERVER_FILES = frozenset({"timestamp.txt", "submission_secret.txt"})

COURSE_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
ASSIGNMENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
NOTEBOOK_ID_RE = re.compile(r"^[^/\\\x00-\x1f]{1,255}$")
UID_RE = re.compile(r"^[0-9a-f]{32}$")


class ExchangeStorageError(LearnHubError):
    """A request the storage refuses; ``status`` is the HTTP status that describes it."""

    status = 400


class BadRequest(ExchangeStorageError):
    """Malformed input: bad id, broken or unsafe archive."""

    status = 400


class NotFound(ExchangeStorageError):
    """No such course, assignment, submission or feedback."""

    status = 404


class Conflict(ExchangeStorageError):
    """The assignment is already released (and ``force`` was not given)."""

    status = 409


class LimitExceeded(ExchangeStorageError):
    """A request over one of the exchange's limits.

    ``limit`` names the setting (``exchange.max_entries``), ``allowed`` is its value in bytes or
    entries; the message says what the caller can do about it.
    """

    def __init__(self, message: str, *, limit: str, allowed: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.allowed = allowed


class TooLarge(LimitExceeded):
    """One upload is over a limit of a single upload (size, entries, one file's size)."""

    status = 413


class OverQuota(LimitExceeded):
    """Storing the upload would exceed what is kept per learner and assignment or per course."""

    status = 422


@dataclass(frozen=True)
class ExchangeLimits:
    """The exchange's bounds in bytes and counts; :meth:`from_settings` holds their defaults."""

    archive_bytes: int
    entries: int
    unpacked_bytes: int
    file_bytes: int
    kept_submissions: int
    learner_assignment_bytes: int
    course_bytes: int
    upload_workers: int

    @classmethod
    def from_settings(cls, settings: ExchangeSettings | None = None) -> ExchangeLimits:
        """The limits the ``exchange`` settings section asks for (its defaults without one)."""
        s = settings or ExchangeSettings()
        mib = 2**20
        return cls(
            archive_bytes=s.max_submission_mib * mib,
            entries=s.max_entries,
            unpacked_bytes=s.max_unpacked_mib * mib,
            file_bytes=s.max_file_mib * mib,
            kept_submissions=s.max_kept_submissions,
            learner_assignment_bytes=s.max_learner_assignment_mib * mib,
            course_bytes=s.max_course_mib * mib,
            upload_workers=s.upload_workers,
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 10 * 2**20 else f"{n // 2**20} MiB"


@dataclass(frozen=True)
class ReleaseInfo:
    """A released assignment as listed to learners."""

    course_id: str
    assignment_id: str
    notebooks: list[str]
    size: int
    released_at: datetime


@dataclass(frozen=True)
class FeedbackInfo:
    """Released feedback on one notebook of a submission."""

    notebook_id: str
    checksum: str
    released_at: datetime


@dataclass(frozen=True)
class SubmissionInfo:
    """One stored submission and the feedback released on it."""

    uid: str
    course_id: str
    assignment_id: str
    student: str
    timestamp: str
    submitted_at: datetime
    size: int
    checksums: dict[str, str]
    feedback: list[FeedbackInfo]


def check_course_id(course_id: str) -> str:
    """``course_id`` if it is a well-formed course id, else :class:`BadRequest`."""
    if not COURSE_ID_RE.match(course_id):
        raise BadRequest(f"malformed course id {course_id!r}")
    return course_id


def check_assignment_id(assignment_id: str) -> str:
    """``assignment_id`` if it is a safe nbgrader assignment id, else :class:`BadRequest`."""
    if not ASSIGNMENT_ID_RE.match(assignment_id) or ".." in assignment_id:
        raise BadRequest(f"malformed assignment id {assignment_id!r}")
    return assignment_id


def check_notebook_id(notebook_id: str) -> str:
    """``notebook_id`` if it is a plain notebook name (no path), else :class:`BadRequest`."""
    if not NOTEBOOK_ID_RE.match(notebook_id) or notebook_id in (".", "..") or ".." in notebook_id:
        raise BadRequest(f"malformed notebook id {notebook_id!r}")
    return notebook_id


def nbgrader_timestamp(moment: datetime) -> str:
    """``moment`` in nbgrader's ``timestamp.txt`` format (``2025-01-02 03:04:05.000006 UTC``)."""
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def _safe_member_path(name: str) -> PurePosixPath:
    """The relative path of an archive member, or :class:`BadRequest` for anything unsafe."""
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p not in ("", ".")]
    if path.is_absolute() or not parts or any(p == ".." or "\\" in p for p in parts):
        raise BadRequest(f"unsafe path in archive: {name[:200]!r}")
    if any(ord(ch) < 32 for ch in name):
        raise BadRequest(f"unsafe path in archive: {name[:200]!r}")
    return PurePosixPath(*parts)


class _BoundedStream(io.RawIOBase):
    """The decompressed archive, refused with :class:`TooLarge` once it passes ``limit`` bytes.

    This bounds what ``tarfile`` reads, header data included: a GNU long name or a pax header of
    a gigabyte compresses to a few kilobytes and would otherwise be read into memory whole.
    """

    def __init__(self, source: gzip.GzipFile, limit: int, allowed: int) -> None:
        self.source = source
        self.limit = limit
        self.allowed = allowed
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.source.readinto(buffer)
        self.total += n
        if self.total > self.limit:
            raise TooLarge(
                f"the upload unpacks to more than {_mib(self.allowed)} "
                "(limit exchange.max_unpacked_mib); remove large files and submit again",
                limit="exchange.max_unpacked_mib",
                allowed=self.allowed,
            )
        return n


def _fsync(path: Path, *, directory: bool = False) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0) | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path, stop: Path) -> None:
    """Create ``path`` and missing parents below ``stop``, each made durable in its parent."""
    missing: list[Path] = []
    while not path.is_dir() and path != stop:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made concurrently by another upload
            continue
        _fsync(folder.parent, directory=True)


def _write_durable(target: Path, data: bytes) -> None:
    """Write a new file and fsync it and the folder that holds it."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync(target.parent, directory=True)


def _refuse_type(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` is not accepted (it is not a regular file or a folder), else None."""
    if member.isdir() or member.isreg():
        return None
    if member.issym() or member.islnk():
        return "a link"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return f"of tar type {member.type!r}"


@contextmanager
def _open_tar(data: bytes, limits: ExchangeLimits) -> Iterator[tarfile.TarFile]:
    """The archive in ``data`` as a tar stream whose decompressed length is bounded."""
    stream_limit = limits.unpacked_bytes + (limits.entries + 8) * HEADER_ALLOWANCE
    with (
        gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as unzipped,
        _BoundedStream(unzipped, stream_limit, limits.unpacked_bytes) as bounded,
        # Stream mode ("r|"): read once, front to back, never seeking, never buffering more.
        tarfile.open(fileobj=bounded, mode="r|") as archive,
    ):
        yield archive


def _checked_members(
    archive: tarfile.TarFile, limits: ExchangeLimits
) -> Iterator[tuple[tarfile.TarInfo, PurePosixPath]]:
    """Each member with its safe relative path, refused at the first one over a limit."""
    count = 0
    total = 0
    for member in archive:
        count += 1
        if count > limits.entries:
            raise TooLarge(
                f"the upload has more than {limits.entries} entries (files and folders count "
                "alike; limit exchange.max_entries); remove generated folders such as caches "
                "or data sets and submit again",
                limit="exchange.max_entries",
                allowed=limits.entries,
            )
        rel = _safe_member_path(member.name)
        why = _refuse_type(member)
        if why is not None:
            raise BadRequest(
                f"archive member {member.name[:200]!r} is {why}; only files and folders are "
                "accepted: replace links by copies of what they point to"
            )
        if member.isreg():
            if member.size > limits.file_bytes:
                raise TooLarge(
                    f"{member.name!r} is {_mib(member.size)}, over the "
                    f"{_mib(limits.file_bytes)} a single file may have (limit "
                    "exchange.max_file_mib); leave large data files out and submit again",
                    limit="exchange.max_file_mib",
                    allowed=limits.file_bytes,
                )
            total += member.size
            if total > limits.unpacked_bytes:
                raise TooLarge(
                    f"the upload unpacks to more than {_mib(limits.unpacked_bytes)} (limit "
                    "exchange.max_unpacked_mib); remove large files and submit again",
                    limit="exchange.max_unpacked_mib",
                    allowed=limits.unpacked_bytes,
                )
        yield member, rel


def unpack_archive(
    data: bytes, dest: Path, *, limits: ExchangeLimits, drop: Iterable[str] = ()
) -> int:
    """Unpack a gzip'd tar into the new folder ``dest``, durably; return the unpacked size.

    Every entry counts towards ``limits.entries`` whatever its type (a folder costs an inode and
    time like a file). Only regular files and folders are accepted: links, devices and FIFOs are
    refused, as are absolute paths and ``..``. Top-level names in ``drop`` are skipped
    (server-owned files). Each file and folder is fsynced before this returns.

    The archive is read twice: first only its headers are checked, so an archive over a limit
    is refused before anything touches the disk (making and removing 2 000 folders took 10 s on
    this machine under load; reading 2 000 headers takes a fraction of that), then unpacked.
    """
    dropped = set(drop)
    total = 0
    try:
        with _open_tar(data, limits) as archive:
            for _ in _checked_members(archive, limits):
                pass
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        # ValueError/OSError: corrupt gzip stream.
        raise BadRequest(f"not a valid .tar.gz upload: {str(exc)[:300]}") from exc
    folders = [dest]
    dest.mkdir(mode=0o700)
    try:
        with _open_tar(data, limits) as archive:
            for member, rel in _checked_members(archive, limits):
                target = dest / rel
                if member.isdir():
                    _mkdirs_in(target, dest, folders)
                    continue
                if len(rel.parts) == 1 and rel.name in dropped:
                    continue
                total += member.size
                source = archive.extractfile(member)
                if source is None:  # pragma: no cover - isreg() members always have data
                    raise BadRequest(f"archive member {member.name!r} has no data")
                _mkdirs_in(target.parent, dest, folders)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with source, os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out)
                    out.flush()
                    os.fsync(out.fileno())
        # Deepest first, so each folder's entries are on disk before its parent's.
        for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
            _fsync(folder, directory=True)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        # FileExistsError: a duplicate member name; NotADirectoryError: a file used as folder.
        shutil.rmtree(dest, ignore_errors=True)
        raise BadRequest(f"not a valid .tar.gz upload: {str(exc)[:300]}") from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return total


def _mkdirs_in(folder: Path, dest: Path, made: list[Path]) -> None:
    """Create ``folder`` (inside ``dest``) and its missing parents, remembering each."""
    missing: list[Path] = []
    while folder != dest and not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700)
        made.append(path)


def pack_folder(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """A gzip'd tar of ``folder``'s files (relative names), plus ``extra`` top-level files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            archive.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
        for name, content in sorted((extra or {}).items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _notebooks(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.ipynb") if p.is_file())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lock_is_free(lock: Path) -> int | None:
    """An fd holding ``lock`` exclusively if no live process holds it, else None."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_orphaned_staging(base: Path) -> int:
    """Remove staging folders no live process holds the lock of; return how many.

    Each storage stages under ``base/<id>/`` while holding ``base/<id>.lock`` (``flock``, so a
    crashed or killed process lets go of it). A folder without a lock file, or whose lock is
    free, is what an interrupted upload left behind.
    """
    removed = 0
    for entry in sorted(base.iterdir()):
        if entry.name.endswith(".lock"):
            if not (base / entry.name.removesuffix(".lock")).exists():
                fd = _lock_is_free(entry)
                if fd is not None:
                    entry.unlink(missing_ok=True)
                    os.close(fd)
            continue
        lock = base / f"{entry.name}.lock"
        fd = None
        if lock.exists():
            fd = _lock_is_free(lock)
            if fd is None:
                continue  # a running process's staging area
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
            if fd is not None:
                lock.unlink(missing_ok=True)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _claim_staging_area(base: Path) -> tuple[int, Path]:
    """A new staging folder of this process and the fd of the lock that marks it in use."""
    while True:
        name = uuid.uuid4().hex
        lock = base / f"{name}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # Another process's clean-up may have taken and unlinked the fresh lock file before we
        # locked it; then ours is an orphan inode, so start again with a new name.
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                area = base / name
                area.mkdir(mode=0o700)
                return fd, area
        except FileNotFoundError:
            pass
        os.close(fd)


class ExchangeStorage:
    """Released assignments, submissions and feedback of every course.

    ``courses`` says which course ids exist (e.g. the :class:`hub.courses.Catalog`); ``None``
    accepts every well-formed id. ``limits`` bound every upload and what is kept (default: the
    ``exchange`` settings' defaults). Starting a storage removes the staging folders of
    processes that died mid-upload; call :meth:`close` to give up this process's staging lock.
    """

    def __init__(
        self,
        root: Path,
        db: Database,
        *,
        courses: Container[str] | None = None,
        limits: ExchangeLimits | None = None,
    ) -> None:
        self.root = root.resolve()
        self.db = db
        self.courses = courses
        self.limits = limits or ExchangeLimits.from_settings()
        self.root.mkdir(parents=True, exist_ok=True)
        # Not readable by other local accounts: this folder holds every learner's work.
        self.root.chmod(0o700)
        base = self.root / ".staging"
        base.mkdir(mode=0o700, exist_ok=True)
        removed = _remove_orphaned_staging(base)
        if removed:
            log.warning(
                "removed staging folders of interrupted uploads",
                extra={"folders": removed, "outcome": "cleaned"},
            )
        self._lock_fd, self.staging_area = _claim_staging_area(base)

    @property
    def max_submission_bytes(self) -> int:
        """Largest accepted upload (the compressed archive), in bytes."""
        return self.limits.archive_bytes

    def close(self) -> None:
        """Release this process's staging lock (its folder is then cleaned at the next start)."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- helpers -----------------------------------------------------------------------------

    def check_course(self, course_id: str) -> str:
        """``course_id`` if the course exists; :class:`NotFound` (or :class:`BadRequest`)."""
        check_course_id(course_id)
        if self.courses is not None and course_id not in self.courses:
            raise NotFound(f"there is no course {course_id!r}")
        return course_id

    def _staging(self) -> Path:
        return self.staging_area / uuid.uuid4().hex

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.limits.archive_bytes:
            raise TooLarge(
                f"upload of {len(data)} bytes is over the limit of {self.limits.archive_bytes} "
                "bytes (exchange.max_submission_mib); remove large data files from the "
                "assignment folder and try again",
                limit="exchange.max_submission_mib",
                allowed=self.limits.archive_bytes,
            )

    def _unpack(self, data: bytes, *, drop: Iterable[str] = ()) -> tuple[Path, int]:
        self._check_size(data)
        staging = self._staging()
        size = unpack_archive(data, staging, limits=self.limits, drop=drop)
        return staging, size

    def _move_into_place(self, staging: Path, rel: str) -> Path:
        """Rename an unpacked (and fsynced) upload to ``root/rel``, durably."""
        target = self.root / rel
        _make_dirs(target.parent, self.root)
        os.replace(staging, target)
        # The rename is only on disk once the folder that now names it is.
        _fsync(target.parent, directory=True)
        return target

    def _course_bytes(self, session: sa.orm.Session, course_id: str) -> int:
        submitted = session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(ExchangeSubmission.size), 0)).where(
                ExchangeSubmission.course_id == course_id
            )
        )
        released = session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(ExchangeRelease.size), 0)).where(
                ExchangeRelease.course_id == course_id
            )
        )
        return int(submitted or 0) + int(released or 0)

    def _check_course_quota(
        self, session: sa.orm.Session, course_id: str, adding: int, freeing: int = 0
    ) -> None:
        used = self._course_bytes(session, course_id) - freeing
        if used + adding > self.limits.course_bytes:
            raise OverQuota(
                f"course {course_id} has used {_mib(used)} of the {_mib(self.limits.course_bytes)}"
                " it may keep (limit exchange.max_course_mib), so this upload cannot be stored; "
                "tell the course's instructors, who can ask the operator for more room",
                limit="exchange.max_course_mib",
                allowed=self.limits.course_bytes,
            )

    def _check_learner_quota(
        self,
        session: sa.orm.Session,
        course_id: str,
        assignment_id: str,
        student: str,
        adding: int,
    ) -> None:
        kept, used = session.execute(
            sa.select(
                sa.func.count(ExchangeSubmission.id),
                sa.func.coalesce(sa.func.sum(ExchangeSubmission.size), 0),
            ).where(
                ExchangeSubmission.course_id == course_id,
                ExchangeSubmission.assignment_id == assignment_id,
                ExchangeSubmission.student == student,
            )
        ).one()
        if kept >= self.limits.kept_submissions:
            raise OverQuota(
                f"you have {kept} submissions of {assignment_id} kept, the most allowed (limit "
                "exchange.max_kept_submissions); your latest one stands: if you must submit "
                "again, ask the course's instructors",
                limit="exchange.max_kept_submissions",
                allowed=self.limits.kept_submissions,
            )
        if int(used) + adding > self.limits.learner_assignment_bytes:
            raise OverQuota(
                f"your submissions of {assignment_id} already hold {_mib(int(used))} of the "
                f"{_mib(self.limits.learner_assignment_bytes)} kept per learner and assignment "
                "(limit exchange.max_learner_assignment_mib); submit without large files, or ask "
                "the course's instructors",
                limit="exchange.max_learner_assignment_mib",
                allowed=self.limits.learner_assignment_bytes,
            )

    def _release_row(
        self, session: sa.orm.Session, course_id: str, assignment_id: str
    ) -> ExchangeRelease | None:
        return session.scalars(
            sa.select(ExchangeRelease).where(
                ExchangeRelease.course_id == course_id,
                ExchangeRelease.assignment_id == assignment_id,
            )
        ).one_or_none()

    # -- released assignments ----------------------------------------------------------------

    def list_released(self, course_id: str) -> list[ReleaseInfo]:
        """The assignments released to ``course_id``, by id."""
        self.check_course(course_id)
        with self.db.transaction() as session:
            rows = session.scalars(
                sa.select(ExchangeRelease)
                .where(ExchangeRelease.course_id == course_id)
                .order_by(ExchangeRelease.assignment_id)
            ).all()
            return [
                ReleaseInfo(r.course_id, r.assignment_id, list(r.notebooks), r.size, r.released_at)
                for r in rows
            ]

    def release(
        self, course_id: str, assignment_id: str, archive: bytes, *, by: str, force: bool = False
    ) -> ReleaseInfo:
        """Publish an assignment's files; :class:`Conflict` if released already, unless forced."""
        self.check_course(course_id)
        check_assignment_id(assignment_id)
        with self.db.transaction() as session:
            if self._release_row(session, course_id, assignment_id) is not None and not force:
                raise Conflict(
                    f"{assignment_id!r} is already released in {course_id!r}; "
                    "release again with --force to replace it"
                )
            # Refuse before unpacking when the course is full already.
            self._check_course_quota(session, course_id, 1)
        staging, size = self._unpack(archive)
        notebooks = _notebooks(staging)
        if not notebooks:
            shutil.rmtree(staging, ignore_errors=True)
            raise BadRequest(f"the release of {assignment_id!r} contains no notebook")
        rel = f"{course_id}/released/{assignment_id}-{uuid.uuid4().hex}"
        try:
            target = self._move_into_place(staging, rel)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        old_path: str | None = None
        try:
            with self.db.transaction() as session:
                row = self._release_row(session, course_id, assignment_id)
                self._check_course_quota(
                    session, course_id, size, freeing=row.size if row is not None else 0
                )
                if row is None:
                    row = ExchangeRelease(course_id=course_id, assignment_id=assignment_id)
                    session.add(row)
                elif not force:  # released concurrently since the check above
                    raise Conflict(f"{assignment_id!r} is already released in {course_id!r}")
                else:
                    old_path = row.path
                row.path = rel
                row.size = size
                row.notebooks = notebooks
                row.released_by = by
                row.released_at = datetime.now(UTC)
                info = ReleaseInfo(course_id, assignment_id, notebooks, size, row.released_at)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        if old_path:
            shutil.rmtree(self.root / old_path, ignore_errors=True)
        return info

    def released_archive(self, course_id: str, assignment_id: str) -> bytes:
        """The released files of an assignment as a gzip'd tar; :class:`NotFound` if none."""
        self.check_course(course_id)
        check_assignment_id(assignment_id)
        with self.db.transaction() as session:
            row = self._release_row(session, course_id, assignment_id)
            if row is None:
                raise NotFound(f"no assignment {assignment_id!r} is released in {course_id!r}")
            path = self.root / row.path
        return pack_folder(path)

    # -- submissions -------------------------------------------------------------------------

    def submit(
        self, course_id: str, assignment_id: str, student: str, archive: bytes
    ) -> SubmissionInfo:
        """Store a new submission with the server's timestamp; earlier ones are kept."""
        self.check_course(course_id)
        check_assignment_id(assignment_id)
        with self.db.transaction() as session:
            if self._release_row(session, course_id, assignment_id) is None:
                raise NotFound(f"no assignment {assignment_id!r} is released in {course_id!r}")
            # Refuse before unpacking when a quota is used up already (unpacking costs most).
            self._check_learner_quota(session, course_id, assignment_id, student, 1)
            self._check_course_quota(session, course_id, 1)
        staging, size = self._unpack(archive, drop=SERVER_FILES)
        try:
            checksums = {name: _sha256(staging / name) for name in _notebooks(staging)}
            uid = uuid.uuid4().hex
            rel = f"{course_id}/submissions/{uid}"
            target = self._move_into_place(staging, rel)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        now = datetime.now(UTC)
        try:
            with self.db.transaction() as session:
                # Again with the real size; concurrent uploads of one learner may each have
                # passed the check above.
                self._check_learner_quota(session, course_id, assignment_id, student, size)
                self._check_course_quota(session, course_id, size)
                session.add(
                    ExchangeSubmission(
                        uid=uid,
                        course_id=course_id,
                        assignment_id=assignment_id,
                        student=student,
                        submitted_at=now,
                        timestamp=nbgrader_timestamp(now),
                        path=rel,
                        size=size,
                        checksums=checksums,
                        secret=secrets.token_hex(32),
                    )
                )
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        return SubmissionInfo(
            uid,
            course_id,
            assignment_id,
            student,
            nbgrader_timestamp(now),
            now,
            size,
            checksums,
            [],
        )

    def submissions(
        self,
        course_id: str,
        *,
        assignment_id: str | None = None,
        student: str | None = None,
        latest: bool = False,
    ) -> list[SubmissionInfo]:
        """Submissions of a course, oldest first; ``latest``: only each student's newest."""
        self.check_course(course_id)
        query = sa.select(ExchangeSubmission).where(ExchangeSubmission.course_id == course_id)
        if assignment_id is not None:
            check_assignment_id(assignment_id)
            query = query.where(ExchangeSubmission.assignment_id == assignment_id)
        if student is not None:
            query = query.where(ExchangeSubmission.student == student)
        query = query.order_by(ExchangeSubmission.submitted_at, ExchangeSubmission.id)
        with self.db.transaction() as session:
            rows = session.scalars(query).all()
            feedback: dict[int, list[FeedbackInfo]] = {}
            if rows:
                for fb in session.scalars(
                    sa.select(ExchangeFeedback)
                    .where(ExchangeFeedback.submission_id.in_([r.id for r in rows]))
                    .order_by(ExchangeFeedback.notebook_id)
                ):
                    feedback.setdefault(fb.submission_id, []).append(
                        FeedbackInfo(fb.notebook_id, fb.checksum, fb.released_at)
                    )
            infos = [
                SubmissionInfo(
                    r.uid,
                    r.course_id,
                    r.assignment_id,
                    r.student,
                    r.timestamp,
                    r.submitted_at,
                    r.size,
                    dict(r.checksums),
                    feedback.get(r.id, []),
                )
                for r in rows
            ]
        if latest:
            newest: dict[tuple[str, str], SubmissionInfo] = {}
            for info in infos:  # oldest first, so the last one seen wins
                newest[(info.assignment_id, info.student)] = info
            infos = sorted(newest.values(), key=lambda i: (i.submitted_at, i.uid))
        return infos

    def _submission_row(
        self, session: sa.orm.Session, course_id: str, uid: str
    ) -> ExchangeSubmission:
        if not UID_RE.match(uid):
            raise NotFound("no such submission")
        row = session.scalars(
            sa.select(ExchangeSubmission).where(
                ExchangeSubmission.course_id == course_id, ExchangeSubmission.uid == uid
            )
        ).one_or_none()
        if row is None:
            raise NotFound("no such submission")
        return row

    def submission_archive(self, course_id: str, uid: str) -> tuple[SubmissionInfo, bytes]:
        """A submission's files plus nbgrader's ``timestamp.txt`` and ``submission_secret.txt``."""
        self.check_course(course_id)
        with self.db.transaction() as session:
            row = self._submission_row(session, course_id, uid)
            info = SubmissionInfo(
                row.uid,
                row.course_id,
                row.assignment_id,
                row.student,
                row.timestamp,
                row.submitted_at,
                row.size,
                dict(row.checksums),
                [],
            )
            path = self.root / row.path
            extra = {
                "timestamp.txt": row.timestamp.encode(),
                "submission_secret.txt": row.secret.encode(),
            }
        return info, pack_folder(path, extra)

    # -- feedback ----------------------------------------------------------------------------

    def release_feedback(
        self,
        course_id: str,
        assignment_id: str,
        student: str,
        notebooks: dict[str, bytes],
        *,
        by: str,
        secret: str | None = None,
        timestamp: str | None = None,
    ) -> SubmissionInfo:
        """Attach feedback HTML (``{notebook id: html}``) to one submission of ``student``.

        The submission is the one whose ``submission_secret.txt`` is ``secret`` (what
        nbgrader's generated feedback folder carries), else the one with ``timestamp``.
        Releasing again replaces that notebook's feedback.
        """
        self.check_course(course_id)
        check_assignment_id(assignment_id)
        for notebook_id in notebooks:
            check_notebook_id(notebook_id)
        if not notebooks:
            raise BadRequest("no feedback files given")
        total = sum(len(html) for html in notebooks.values())
        if total > self.limits.archive_bytes:
            raise TooLarge(
                f"feedback of {total} bytes is over the limit of {self.limits.archive_bytes} bytes "
                "(exchange.max_submission_mib); release feedback for fewer notebooks at a time",
                limit="exchange.max_submission_mib",
                allowed=self.limits.archive_bytes,
            )
        query = sa.select(ExchangeSubmission).where(
            ExchangeSubmission.course_id == course_id,
            ExchangeSubmission.assignment_id == assignment_id,
            ExchangeSubmission.student == student,
        )
        if secret:
            query = query.where(ExchangeSubmission.secret == secret)
        elif timestamp:
            query = query.where(ExchangeSubmission.timestamp == timestamp)
        else:
            raise BadRequest("say which submission the feedback is for (secret or timestamp)")
        written: list[Path] = []
        replaced: list[Path] = []
        try:
            with self.db.transaction() as session:
                row = session.scalars(query.order_by(ExchangeSubmission.id.desc())).first()
                if row is None:
                    raise NotFound(
                        f"no submission of {assignment_id!r} by {student!r} matches this feedback"
                    )
                for notebook_id, html in sorted(notebooks.items()):
                    rel = f"{course_id}/feedback/{row.uid}/{uuid.uuid4().hex}.html"
                    target = self.root / rel
                    _make_dirs(target.parent, self.root)
                    _write_durable(target, html)
                    written.append(target)
                    fb = session.scalars(
                        sa.select(ExchangeFeedback).where(
                            ExchangeFeedback.submission_id == row.id,
                            ExchangeFeedback.notebook_id == notebook_id,
                        )
                    ).one_or_none()
                    if fb is None:
                        fb = ExchangeFeedback(submission_id=row.id, notebook_id=notebook_id)
                        session.add(fb)
                    else:
                        replaced.append(self.root / fb.path)
                    fb.path = rel
                    # md5 because nbgrader's list compares feedback files by md5.
                    fb.checksum = hashlib.md5(html, usedforsecurity=False).hexdigest()
                    fb.released_by = by
                    fb.released_at = datetime.now(UTC)
                uid = row.uid
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        for path in replaced:
            path.unlink(missing_ok=True)
        return next(
            s
            for s in self.submissions(course_id, assignment_id=assignment_id, student=student)
            if s.uid == uid
        )

    def feedback_of(
        self, course_id: str, student: str, assignment_id: str | None = None
    ) -> list[tuple[SubmissionInfo, str, bytes]]:
        """``student``'s own feedback: ``(submission, notebook id, html)`` per notebook."""
        out: list[tuple[SubmissionInfo, str, bytes]] = []
        infos = {
            s.uid: s
            for s in self.submissions(course_id, assignment_id=assignment_id, student=student)
        }
        if not infos:
            return out
        with self.db.transaction() as session:
            rows = session.execute(
                sa.select(
                    ExchangeSubmission.uid, ExchangeFeedback.notebook_id, ExchangeFeedback.path
                )
                .join(ExchangeFeedback, ExchangeFeedback.submission_id == ExchangeSubmission.id)
                .where(
                    ExchangeSubmission.course_id == course_id,
                    ExchangeSubmission.student == student,
                    ExchangeSubmission.uid.in_(list(infos)),
                )
                .order_by(ExchangeSubmission.submitted_at, ExchangeFeedback.notebook_id)
            ).all()
        for uid, notebook_id, path in rows:
            out.append((infos[uid], notebook_id, (self.root / path).read_bytes()))
        return out
