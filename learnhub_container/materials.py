"""Sync course materials into a learner's workspace without overwriting the learner's edits.

This module is part of ``learnhub_container``, which the single-user image carries whole; the
container entrypoint runs it before the notebook server starts, with the image's Python, so it
uses the standard library only.

A JSON state file remembers, for every relative path, the sha256 of the version last copied into
the workspace. With it each file in the source is handled as follows:

* destination missing, never synced            -> copy it
* destination missing, synced before           -> the learner deleted it: leave it deleted
* destination identical to the source          -> nothing to do
* destination unchanged since the last sync    -> update it to the new source version
* destination edited by the learner, source changed (or never synced and different)
                                                -> keep the learner's file and write the new
                                                   version next to it as ``<stem>.updated<suffix>``
* destination edited by the learner, source unchanged -> keep the learner's file

Usage::

    python3 -I -m learnhub_container.materials sync --src /srv/learnhub/materials \\
        --dest /home/jovyan --state /home/jovyan/.learnhub/materials.json
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

STATE_VERSION = 1
FILE_MODE = 0o644
SKIPPED_DIRS = frozenset({".ipynb_checkpoints", "__pycache__"})
_CHUNK = 1 << 20


class ActionKind(enum.StrEnum):
    """What the sync did with one source file."""

    COPIED = "copied"  # new file copied into the workspace
    UPDATED = "updated"  # unmodified learner copy replaced by the new version
    UNCHANGED = "unchanged"  # workspace already has this version
    KEPT_LOCAL = "kept"  # learner edited the file; source did not change since the last sync
    WROTE_UPDATED_COPY = "conflict"  # learner's file kept, new version written as .updated copy
    KEPT_DELETED = "deleted-by-learner"  # learner deleted a synced file: it stays deleted
    SKIPPED = "skipped"  # not a regular file, symlink out of the source, ...
    ERROR = "error"  # this file could not be synced; the others still were


# Actions that change nothing the learner would notice; the CLI does not print them.
QUIET_KINDS = frozenset({ActionKind.UNCHANGED, ActionKind.KEPT_LOCAL})


@dataclass(frozen=True)
class Action:
    """The outcome for one file, identified by its path relative to the source root."""

    path: str
    kind: ActionKind
    detail: str = ""

    def describe(self) -> str:
        """Return a one-line human-readable description."""
        text = f"{self.kind.value}: {self.path}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass
class SyncResult:
    """Everything a sync did; ``actions`` holds one entry per source file (or skipped entry)."""

    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def of_kind(self, kind: ActionKind) -> list[str]:
        """Return the relative paths of all actions of ``kind``."""
        return [a.path for a in self.actions if a.kind is kind]

    @property
    def ok(self) -> bool:
        """True when no file failed to sync."""
        return not any(a.kind is ActionKind.ERROR for a in self.actions)

    def summary(self) -> str:
        """Return counts per action kind, e.g. ``copied=3 unchanged=10``."""
        counts: dict[str, int] = {}
        for action in self.actions:
            counts[action.kind.value] = counts.get(action.kind.value, 0) + 1
        return " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no files"


class SyncError(Exception):
    """The sync as a whole could not run (missing source, unusable destination)."""


def updated_name(rel: str) -> str:
    """Return where the new version goes when the learner edited ``rel``.

    ``a/01-intro.ipynb`` -> ``a/01-intro.updated.ipynb``
    """
    p = PurePosixPath(rel)
    return str(p.with_name(f"{p.stem}.updated{p.suffix}"))


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_state(path: Path) -> tuple[dict[str, str], str | None]:
    """Load the state file; return ``(hashes, warning)``.

    A missing state file is a first sync. A corrupt one is treated the same way (with a
    warning): without state, every differing file counts as the learner's, so losing the state
    can never cause a learner's edit to be overwritten.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:
        return {}, f"ignoring unreadable state file {path}: {exc}"
    files = raw.get("files") if isinstance(raw, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        return {}, f"ignoring malformed state file {path}"
    return dict(files), None


def save_state(path: Path, hashes: dict[str, str]) -> None:
    """Write the state file atomically (temp file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(
        {"version": STATE_VERSION, "files": dict(sorted(hashes.items()))}, indent=1
    )
    _atomic_write(path, lambda fh: fh.write(payload.encode("utf-8")), mode=0o600)


def _atomic_write(path: Path, write: Callable[[BinaryIO], object], *, mode: int) -> None:
    # Write-then-rename so that a crash or a full disk never leaves a half-written file, and
    # os.replace() swaps a symlink at `path` instead of writing through it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy_file(src: Path, dest: Path) -> str:
    """Copy ``src`` to ``dest`` atomically with mode 0644; return the sha256 of what was copied.

    Hashing the bytes actually written (rather than hashing first, copying later) keeps the
    state exact even if an instructor changes the source during the sync.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()

    def write(out: BinaryIO) -> None:
        with src.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)

    _atomic_write(dest, write, mode=FILE_MODE)
    return digest.hexdigest()


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_DIRS


def iter_source_files(src: Path) -> Iterator[tuple[str, Path | None, str]]:
    """Yield ``(relative posix path, real file or None, reason)`` for every syncable entry.

    Dotfiles, dot-directories and ``.ipynb_checkpoints`` are skipped silently. Symlinked
    directories are never descended into, and a symlinked file is used only when it resolves to
    a regular file inside ``src``; otherwise the entry is yielded with ``None`` and a reason.
    """
    root = src.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        for name in sorted(dirnames):
            if _is_hidden(name):
                dirnames.remove(name)
            elif (here / name).is_symlink():
                dirnames.remove(name)
                yield (rel_dir / name).as_posix(), None, "symlinked directory not followed"
        dirnames.sort()
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            path = here / name
            rel = (rel_dir / name).as_posix()
            real = path.resolve()
            if path.is_symlink() and not real.is_relative_to(root):
                yield rel, None, "symlink points outside the materials"
                continue
            try:
                st = real.stat()
            except OSError as exc:
                yield rel, None, f"unreadable: {exc.strerror}"
                continue
            if not stat.S_ISREG(st.st_mode):
                yield rel, None, "not a regular file"
                continue
            yield rel, real, ""


def _inside(path: Path, root: Path) -> bool:
    # The learner owns the workspace and may have replaced a directory with a symlink; we do
    # not write through such links (the sync would otherwise scatter files elsewhere).
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def _sync_one(rel: str, src_file: Path, dest_root: Path, state: dict[str, str]) -> Action:
    src_hash = file_sha256(src_file)
    last = state.get(rel)
    dest = dest_root / rel
    if not _inside(dest.parent, dest_root):
        return Action(rel, ActionKind.SKIPPED, "destination folder is a link out of the workspace")

    if not dest.exists() and not dest.is_symlink():
        if last is None:
            state[rel] = _copy_file(src_file, dest)
            return Action(rel, ActionKind.COPIED)
        # Synced before and now gone: the learner removed it on purpose. Keep the old hash so
        # a later change of the source does not resurrect it either.
        return Action(rel, ActionKind.KEPT_DELETED)

    if dest.is_symlink() or not dest.is_file():
        return Action(rel, ActionKind.SKIPPED, "destination is not a regular file; left alone")

    dest_hash = file_sha256(dest)
    if dest_hash == src_hash:
        state[rel] = src_hash
        return Action(rel, ActionKind.UNCHANGED)
    if last is not None and dest_hash == last:
        state[rel] = _copy_file(src_file, dest)
        return Action(rel, ActionKind.UPDATED)
    if last is not None and src_hash == last:
        return Action(rel, ActionKind.KEPT_LOCAL)

    # The learner's version differs and there is a source version they have not seen yet
    # (either the source changed, or the file was never synced). Their work wins; the new
    # version goes next to it. Recording src_hash means the copy is written once per version.
    copy_rel = updated_name(rel)
    state[rel] = _copy_file(src_file, dest_root / copy_rel)
    return Action(rel, ActionKind.WROTE_UPDATED_COPY, f"your version kept; new one in {copy_rel}")


def sync(src: Path, dest: Path, state_file: Path) -> SyncResult:
    """Sync every file under ``src`` into ``dest`` following the module's rules.

    Per-file failures are recorded as ``ERROR`` actions and the remaining files are still
    synced; the state is saved at the end. Raises ``SyncError`` when ``src`` is not a directory
    or ``dest`` cannot be created.
    """
    if not src.is_dir():
        raise SyncError(f"materials folder {src} does not exist or is not a directory")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SyncError(f"cannot create workspace {dest}: {exc}") from exc

    result = SyncResult()
    state, warning = load_state(state_file)
    if warning:
        result.warnings.append(warning)
    for rel, real, reason in iter_source_files(src):
        if real is None:
            result.actions.append(Action(rel, ActionKind.SKIPPED, reason))
            continue
        try:
            result.actions.append(_sync_one(rel, real, dest, state))
        except OSError as exc:
            result.actions.append(Action(rel, ActionKind.ERROR, str(exc)))
    try:
        save_state(state_file, state)
    except OSError as exc:
        raise SyncError(f"cannot write state file {state_file}: {exc}") from exc
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code (0 ok, 1 failure, 2 usage)."""
    parser = argparse.ArgumentParser(
        prog="materials.py", description="Sync course materials into a learner's workspace."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_sync = sub.add_parser("sync", help="copy new and updated materials, keeping learner edits")
    p_sync.add_argument("--src", type=Path, required=True, help="course materials folder")
    p_sync.add_argument("--dest", type=Path, required=True, help="learner workspace")
    p_sync.add_argument("--state", type=Path, required=True, help="JSON state file")
    p_sync.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)

    try:
        result = sync(args.src, args.dest, args.state)
    except (SyncError, OSError) as exc:
        print(f"materials: sync failed: {exc}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"materials: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        for action in result.actions:
            if action.kind not in QUIET_KINDS:
                print(f"materials: {action.describe()}")
    print(f"materials: sync done: {result.summary()}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
