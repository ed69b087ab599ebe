"""The instructors' copy of a course's grading directory, handled as hostile ground.

The host's grading directory (``<data_dir>/grader/<course>/``, root only, mode 0700) is never
mounted into a container. Instructors' course servers get a *copy* of it instead
(``<data_dir>/formgrader/<course>/``, owned by the container user, mounted at
``/home/jovyan/grading``) for the formgrader. Anything in that copy may have been planted by
code in the container: a host process never executes or imports from it, and reaches into it
only through directory descriptors, with ``O_NOFOLLOW`` on every component, replacing entries by
rename rather than writing through them. What comes back from it is one regular file, the
gradebook (manual grades), copied into the host's directory before the host opens it, and the
files of the assignments' ``source/`` folders the formgrader changed (:func:`take_back_tree`).

Kept free of nbgrader imports: the Hub process uses it at every instructor spawn.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("learnhub.grader.ownership")

#: The user of course containers (see docker/singleuser/Dockerfile).
CONTAINER_UID, CONTAINER_GID = 1000, 100
#: Largest gradebook taken back from an instructor's copy; a bigger one is left where it is.
MAX_GRADEBOOK_BYTES = 256 * 1024 * 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeEntry(OSError):
    """An entry of the instructors' copy is not what the host expects (a link, a fifo...)."""


def prepare_host_directory(folder: Path) -> None:
    """Create the host's grading directory for a course: the host's user only (0700).

    Raises :class:`UnsafeEntry` for a directory that belongs to someone else: before LearnHub
    kept a separate copy for instructors, this folder was mounted into their servers, so what
    is in it may have been planted.
    """
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _keep_private(folder.parent)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise UnsafeEntry(
            errno.EPERM,
            "was writable by course containers (LearnHub before 2026-12); move it aside "
            f"(mv {folder} {folder}.untrusted) and run the command again: LearnHub rebuilds it "
            "and takes the gradebook back from the instructors' copy",
            str(folder),
        )
    _keep_private(folder)


def _keep_private(folder: Path) -> None:
    """0700, keeping the group's pass-through bit that lets the LearnHub service's account
    reach the gradebook (hub/privilege.py: 0710, never list or write)."""
    folder.chmod(0o700 | (stat.S_IMODE(folder.lstat().st_mode) & stat.S_IXGRP))


def prepare_instructor_copy(folder: Path) -> None:
    """Create ``folder`` (an instructors' copy) for the container user, without walking it.

    Its parent belongs to the host's user and is not writable by containers, so the mount
    point itself can never be swapped for a link; what is inside is the container's.
    """
    folder.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if folder.parent.is_symlink() or folder.parent.stat().st_uid != os.geteuid():
        raise UnsafeEntry(errno.EPERM, "not owned by the host's user", str(folder.parent))
    parent = os.open(folder.parent, _DIR_FLAGS)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder.name, 0o700, dir_fd=parent)
        fd = os.open(folder.name, _DIR_FLAGS, dir_fd=parent)
        try:
            if os.geteuid() == 0:
                os.fchown(fd, CONTAINER_UID, CONTAINER_GID)
        finally:
            os.close(fd)
    finally:
        os.close(parent)


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[int]:
    fd = os.open(path, _DIR_FLAGS)
    try:
        yield fd
    finally:
        os.close(fd)


def _subdir(parent: int, name: str) -> int:
    """Open (creating if needed) directory ``name`` under ``parent``; a planted link or file
    in its place is removed, never followed."""
    for _ in range(3):
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            os.unlink(name, dir_fd=parent)
            continue
        if os.geteuid() == 0:
            os.fchown(fd, CONTAINER_UID, CONTAINER_GID)
        return fd
    raise UnsafeEntry(errno.EAGAIN, "kept changing under the host", name)


def _put_file(parent: int, name: str, source: Path) -> None:
    """Copy ``source`` to ``name`` under ``parent`` through a fresh file renamed into place
    (a planted link at ``name`` is replaced, not written through)."""
    temp = f".learnhub-{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    out = os.open(temp, flags, 0o644, dir_fd=parent)
    try:
        with open(source, "rb") as src, os.fdopen(out, "wb", closefd=False) as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        if os.geteuid() == 0:
            os.fchown(out, CONTAINER_UID, CONTAINER_GID)
        info = source.stat()
        os.utime(out, ns=(info.st_atime_ns, info.st_mtime_ns))
    except BaseException:
        os.close(out)
        os.unlink(temp, dir_fd=parent)
        raise
    os.close(out)
    if _is_dir_at(parent, name):
        raise UnsafeEntry(errno.EISDIR, "a folder where a file belongs", name)
    os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)


def _unchanged(parent: int, name: str, source: os.stat_result) -> bool:
    """The copy's ``name`` is a regular file of the size and time the host last published.

    Published files carry their source's modification time, so a second publish copies only
    what changed (100 learners' notebooks: about 2 s per command otherwise). A container that
    fakes a time only keeps its own copy stale.
    """
    try:
        mine = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return _same_stamp(mine, source)


def _same_stamp(mine: os.stat_result, other: os.stat_result) -> bool:
    """``mine`` is a regular file with ``other``'s size and modification time."""
    return (
        stat.S_ISREG(mine.st_mode)
        and mine.st_size == other.st_size
        and mine.st_mtime_ns == other.st_mtime_ns
    )


def _is_dir_at(parent: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _publish_into(source: Path, target: int, skip: frozenset[str]) -> int:
    copied = 0
    for entry in os.scandir(source):
        if entry.name in skip or entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            try:
                sub = _subdir(target, entry.name)
            except OSError as exc:
                log.warning("instructor copy: skipped %s: %s", entry.path, exc)
                continue
            try:
                copied += _publish_into(Path(entry.path), sub, frozenset())
            finally:
                os.close(sub)
        elif entry.is_file(follow_symlinks=False):
            if _unchanged(target, entry.name, entry.stat(follow_symlinks=False)):
                continue
            try:
                _put_file(target, entry.name, Path(entry.path))
            except OSError as exc:  # the container changed the entry while we wrote it
                log.warning("instructor copy: skipped %s: %s", entry.path, exc)
                continue
            copied += 1
    return copied


def publish_to_instructors(host_dir: Path, copy_dir: Path, *, skip: frozenset[str]) -> int:
    """Copy the host's grading directory into the instructors' copy; return files copied.

    Only regular files and folders of the host's own tree are copied (top-level names in
    ``skip`` are left out); files the copy has that the host does not are left alone.
    """
    prepare_instructor_copy(copy_dir)
    with _opened(copy_dir) as target:
        return _publish_into(host_dir, target, skip)


def _keep_sharing(old: Path, new: Path) -> None:
    """Give ``new`` the group and group-read bit of the file it replaces, so the LearnHub
    service's account keeps reading the gradebook it could read (hub/privilege.py)."""
    try:
        info = old.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_gid != 0 and info.st_mode & stat.S_IRGRP:
        os.chown(new, -1, info.st_gid)
        new.chmod(0o640)


def take_back_file(copy_dir: Path, name: str, dest: Path, *, max_bytes: int) -> bool:
    """Copy regular file ``name`` of the instructors' copy to ``dest`` (host-owned, replaced
    atomically). False, with a warning, when it is missing, a link, not a regular file or too
    big: the host keeps its own ``dest``."""
    if not copy_dir.is_dir():
        return False
    with _opened(copy_dir) as folder:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=folder)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("instructor copy: %s not taken back: %s", name, exc)
            return False
    with os.fdopen(fd, "rb") as src:
        info = os.fstat(src.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            log.warning(
                "instructor copy: %s not taken back: not a regular file of at most %d bytes",
                name,
                max_bytes,
            )
            return False
        temp = dest.with_name(f".{dest.name}.{secrets.token_hex(8)}")
        with open(temp, "xb") as dst:
            remaining = max_bytes
            while chunk := src.read(1 << 20):
                remaining -= len(chunk)
                if remaining < 0:
                    temp.unlink()
                    return False
                dst.write(chunk)
        temp.chmod(0o600)
        _keep_sharing(dest, temp)
        temp.replace(dest)
    return True


#: Bounds of what one command takes back from an instructors' ``source/<assignment>/``.
MAX_SOURCE_FILE_BYTES = 64 * 1024 * 1024
MAX_SOURCE_FILES = 2000
MAX_SOURCE_DEPTH = 8


@dataclass
class _Budget:
    files: int = MAX_SOURCE_FILES


def take_back_tree(copy_dir: Path, relative: tuple[str, ...], dest: Path) -> list[str]:
    """Copy the files of the instructors' ``copy_dir/<relative>`` that differ from ``dest``'s.

    What the formgrader edited (the assignment's source notebooks) comes back to the host's
    ``dest``. A file differs when its size or modification time is not the one the host last
    published (published files carry the host's time, see :func:`_unchanged`). Only regular
    files and folders are taken, each opened without following links and below
    :data:`MAX_SOURCE_DEPTH` folders; names starting with a dot (checkpoints, the host's own
    temporary files) are left; at most :data:`MAX_SOURCE_FILES` files of at most
    :data:`MAX_SOURCE_FILE_BYTES` each. Files the copy lacks stay on the host. Each file is
    written to a fresh host file, given the copy's time (so the next publish leaves it alone)
    and renamed into place. Returns the relative paths taken back.
    """
    if not copy_dir.is_dir():
        return []
    with _opened(copy_dir) as top:
        fd = top
        opened: list[int] = []
        try:
            for name in relative:
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    return []
                except OSError as exc:
                    log.warning("instructor copy: %s not taken back: %s", "/".join(relative), exc)
                    return []
                opened.append(fd)
            taken: list[str] = []
            _take_back_into(fd, dest, (), taken, _Budget())
            return taken
        finally:
            for sub in opened:
                os.close(sub)


def _take_back_into(
    folder: int, dest: Path, at: tuple[str, ...], taken: list[str], budget: _Budget
) -> None:
    with os.scandir(folder) as entries:
        listing = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for name, is_dir in sorted(listing):
        if name.startswith("."):
            continue
        rel = "/".join((*at, name))
        if is_dir:
            if len(at) + 1 >= MAX_SOURCE_DEPTH or (dest / name).is_file():
                continue
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=folder)
            except OSError as exc:
                log.warning("instructor copy: %s not taken back: %s", rel, exc)
                continue
            try:
                _take_back_into(sub, dest / name, (*at, name), taken, budget)
            finally:
                os.close(sub)
            continue
        if budget.files <= 0:
            log.warning("instructor copy: more than %d files, the rest stay", MAX_SOURCE_FILES)
            return
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=folder)
        except OSError as exc:  # a link (ELOOP) or gone: the host keeps its own file
            log.warning("instructor copy: %s not taken back: %s", rel, exc)
            continue
        with os.fdopen(fd, "rb") as src:
            info = os.fstat(src.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SOURCE_FILE_BYTES:
                continue
            target = dest / name
            if target.is_dir() or _same_file(target, info):
                continue
            budget.files -= 1
            dest.mkdir(mode=0o700, parents=True, exist_ok=True)
            temp = dest / f".learnhub-{secrets.token_hex(8)}"
            with open(temp, "xb") as out:
                remaining = MAX_SOURCE_FILE_BYTES
                while chunk := src.read(1 << 20):
                    remaining -= len(chunk)
                    if remaining < 0:  # grew while being read
                        break
                    out.write(chunk)
            if remaining < 0:
                temp.unlink()
                continue
            temp.chmod(0o600)
            os.utime(temp, ns=(info.st_atime_ns, info.st_mtime_ns))
            temp.replace(target)
            taken.append(rel)


def _same_file(path: Path, info: os.stat_result) -> bool:
    try:
        mine = path.lstat()
    except FileNotFoundError:
        return False
    return _same_stamp(mine, info)
