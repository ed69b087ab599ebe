"""Server-side storage of the assignment exchange: files under a root folder plus a DB index.

Layout under the root (``<data_dir>/exchange``)::

    <course>/released/<assignment>-<random>/...     the released files of one release
    <course>/submissions/<submission uid>/...       one submission, never overwritten
    <course>/feedback/<submission uid>/<random>.html

Folder names come from validated course and assignment ids and from random ids, never from
user names or from paths a client sent, so no request can address a file it was not given by
the index. Uploads are gzip'd tar archives, unpacked with strict checks (regular files and
folders only, no absolute paths, no ``..``, bounded unpacked size and file count).

Every method blocks (file system and database); async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import secrets
import shutil
import tarfile
import uuid
from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import sqlalchemy as sa

from hub.errors import LearnHubError
from hub.store import Database, ExchangeFeedback, ExchangeRelease, ExchangeSubmission

log = logging.getLogger("learnhub.exchange")

#: Default upload limit of one submission (the compressed archive).
DEFAULT_MAX_SUBMISSION_BYTES = 20 * 1024 * 1024
#: An archive may not unpack to more than this many times its limit (zip bombs).
UNPACK_FACTOR = 10
#: At most this many files in one upload.
MAX_FILES = 2000
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


class TooLarge(ExchangeStorageError):
    """An upload is bigger than the limit."""

    status = 413


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
        raise BadRequest(f"unsafe path in archive: {name!r}")
    if any(ord(ch) < 32 for ch in name):
        raise BadRequest(f"unsafe path in archive: {name!r}")
    return PurePosixPath(*parts)


def unpack_archive(data: bytes, dest: Path, *, max_unpacked: int, drop: Iterable[str] = ()) -> int:
    """Unpack a gzip'd tar into the new folder ``dest``; return the unpacked size.

    Only regular files and folders are accepted: links, devices and FIFOs are refused, as are
    absolute paths and ``..``. Top-level names in ``drop`` are skipped (server-owned files).
    """
    dropped = set(drop)
    total = 0
    count = 0
    dest.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                rel = _safe_member_path(member.name)
                if member.isdir():
                    (dest / rel).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isreg():
                    raise BadRequest(f"archive member {member.name!r} is not a regular file")
                if len(rel.parts) == 1 and rel.name in dropped:
                    continue
                count += 1
                total += member.size
                if count > MAX_FILES:
                    raise TooLarge(f"too many files in upload (at most {MAX_FILES})")
                if total > max_unpacked:
                    raise TooLarge(f"upload unpacks to more than {max_unpacked} bytes")
                source = archive.extractfile(member)
                if source is None:  # pragma: no cover - isreg() members always have data
                    raise BadRequest(f"archive member {member.name!r} has no data")
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, target.open("xb") as out:
                    shutil.copyfileobj(source, out)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        # ValueError/OSError: corrupt gzip stream; FileExistsError: a duplicate member name.
        shutil.rmtree(dest, ignore_errors=True)
        raise BadRequest(f"not a valid .tar.gz upload: {exc}") from exc
    except ExchangeStorageError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return total


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


class ExchangeStorage:
    """Released assignments, submissions and feedback of every course.

    ``courses`` says which course ids exist (e.g. the :class:`hub.courses.Catalog`); ``None``
    accepts every well-formed id. ``max_submission_bytes`` bounds every upload (archive size).
    """

    def __init__(
        self,
        root: Path,
        db: Database,
        *,
        courses: Container[str] | None = None,
        max_submission_bytes: int = DEFAULT_MAX_SUBMISSION_BYTES,
    ) -> None:
        self.root = root.resolve()
        self.db = db
        self.courses = courses
        self.max_submission_bytes = max_submission_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        # Not readable by other local accounts: this folder holds every learner's work.
        self.root.chmod(0o700)

    # -- helpers -----------------------------------------------------------------------------

    def check_course(self, course_id: str) -> str:
        """``course_id`` if the course exists; :class:`NotFound` (or :class:`BadRequest`)."""
        check_course_id(course_id)
        if self.courses is not None and course_id not in self.courses:
            raise NotFound(f"there is no course {course_id!r}")
        return course_id

    def _staging(self) -> Path:
        staging = self.root / ".staging" / uuid.uuid4().hex
        staging.parent.mkdir(parents=True, exist_ok=True)
        return staging

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_submission_bytes:
            raise TooLarge(
                f"upload of {len(data)} bytes is over the limit of {self.max_submission_bytes} "
                "bytes; remove large data files from the assignment folder and try again"
            )

    def _unpack(self, data: bytes, *, drop: Iterable[str] = ()) -> tuple[Path, int]:
        self._check_size(data)
        staging = self._staging()
        size = unpack_archive(
            data, staging, max_unpacked=self.max_submission_bytes * UNPACK_FACTOR, drop=drop
        )
        return staging, size

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
        staging, size = self._unpack(archive)
        notebooks = _notebooks(staging)
        if not notebooks:
            shutil.rmtree(staging, ignore_errors=True)
            raise BadRequest(f"the release of {assignment_id!r} contains no notebook")
        rel = f"{course_id}/released/{assignment_id}-{uuid.uuid4().hex}"
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
        old_path: str | None = None
        try:
            with self.db.transaction() as session:
                row = self._release_row(session, course_id, assignment_id)
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
        staging, size = self._unpack(archive, drop=SERVER_FILES)
        checksums = {name: _sha256(staging / name) for name in _notebooks(staging)}
        uid = uuid.uuid4().hex
        rel = f"{course_id}/submissions/{uid}"
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
        now = datetime.now(UTC)
        try:
            with self.db.transaction() as session:
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
        if total > self.max_submission_bytes:
            raise TooLarge(f"feedback of {total} bytes is over the limit")
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
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(html)
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
