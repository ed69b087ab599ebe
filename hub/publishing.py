"""Publishing course materials without a restart: immutable versions the spawner mounts.

Before, a course server bind-mounted `courses/<id>/materials` itself: only someone with a shell
on the host could change it, a change was live in every running container half-way through, and
learners were not told what changed. Now a publish (the instructor dashboard's "Publish
materials", a job the root grading worker runs, or ``learnhub materials publish COURSE``) makes
a new version folder, root's own, and points ``current`` at it:

    <data_dir>/materials/<course>/v1/, v2/ ...   one folder per publish, never changed again
    <data_dir>/materials/<course>/current        -> v2 (a link root writes; replaced atomically)

The spawner mounts the folder ``current`` names when a server *starts*
(:func:`current_version`), so a running learner keeps the version they started with and gets the
new one at their next start, merged by the image's sync (``learnhub_container.materials``: a
file they never touched is updated, one they changed is kept and the new version lands beside it
as ``NAME.updated.EXT``, one they deleted stays deleted). Each version carries ``WHATS-NEW.md``
(English and Chinese), the notice of what changed since the version before, which the sync
brings to every learner like any other file.

Where a version comes from: the instructors' copy `<data_dir>/formgrader/<course>/materials/`
(what instructors edited in their own course server, under ``~/grading/materials``; read as
hostile ground by :func:`grader.ownership.take_back_tree`: regular files only, no link followed,
bounded; the dashboard's default), or the course repository's `materials/` (an operator's
``git pull``; ``from_course``, the CLI's default, and the fallback when the copy has none).
After a publish the instructors' copy gets the published files (files it has that the version
lacks are left alone).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from grader.ownership import publish_to_instructors, take_back_tree
from hub.courses import CourseEntry
from hub.errors import LearnHubError
from hub.i18n import translate
from hub.i18n.dates import DEFAULT_ZONE, format_datetime
from hub.settings import Settings

log = logging.getLogger("learnhub.publishing")

#: The notice each version carries for learners.
NOTICE = "WHATS-NEW.md"
#: The link naming the version new servers mount.
CURRENT = "current"
#: Versions kept besides the current one (a server started on an older one keeps its mount).
KEEP_VERSIONS = 5
_VERSION = re.compile(r"^v([0-9]{1,9})$")


class PublishError(LearnHubError):
    """A publish could not be made; the message says why and what to do."""


@dataclass
class Publication:
    """One publish: its version, and what changed since the version before."""

    course_id: str
    version: str
    source: str
    #: A new version was made (False: the current one has these files already).
    made: bool = True
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        """Nothing differs from the version before (no new version was made)."""
        return not (self.added or self.changed or self.removed)


def materials_root(settings: Settings) -> Path:
    """`<data_dir>/materials`: root's folder of every course's published versions."""
    return settings.data_dir / "materials"


def course_versions(root: Path, course_id: str) -> Path:
    """The folder of a course's versions under ``root`` (`<data_dir>/materials`)."""
    return root / course_id


def current_version(root: Path, course_id: str) -> Path | None:
    """The version folder new servers of ``course_id`` mount, or None (nothing published).

    Everything here is root's own, but it is still checked rather than trusted: ``current``
    must be a link to a sibling ``v<N>`` that is a real folder, so a mount never leaves it.
    """
    folder = course_versions(root, course_id)
    link = folder / CURRENT
    try:
        target = os.readlink(link)
    except (FileNotFoundError, NotADirectoryError, OSError):
        return None
    if not _VERSION.match(target):
        log.warning("ignoring materials link %s -> %s", link, target)
        return None
    version = folder / target
    try:
        info = version.lstat()
    except FileNotFoundError:
        return None
    return version if stat.S_ISDIR(info.st_mode) and not folder.is_symlink() else None


def _digests(folder: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every regular file under ``folder`` (no link followed),
    the notice left out."""
    found: dict[str, str] = {}
    if not folder.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            if name.startswith(".") or rel == NOTICE or not path.is_file() or path.is_symlink():
                continue
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _copy_regular_files(source: Path, dest: Path) -> None:
    """The course repository's materials into ``dest``: regular files and folders only."""
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not (here / d).is_symlink()]
        for name in filenames:
            path = here / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _notice(publication: Publication, by: str, when: datetime) -> str:
    """WHATS-NEW.md: the same notice in English and Chinese."""
    parts = []
    for lang in ("en", "zh-CN"):
        lines = [
            "# " + translate(lang, "publish_notice_title"),
            "",
            translate(
                lang,
                "publish_notice_intro",
                version=publication.version,
                date=format_datetime(when, lang, DEFAULT_ZONE),  # a file for every reader: UTC
                by=by,
            ),
            "",
        ]
        for key, names in (
            ("publish_notice_added", publication.added),
            ("publish_notice_changed", publication.changed),
            ("publish_notice_removed", publication.removed),
        ):
            lines.extend(f"- {translate(lang, key)}: `{name}`" for name in names)
        lines += ["", translate(lang, "publish_notice_merge"), ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def publish_materials(
    entry: CourseEntry,
    *,
    root: Path,
    instructor_copy: Path | None,
    by: str,
    from_course: bool = False,
    from_folder: tuple[Path, str] | None = None,
    now: datetime | None = None,
) -> Publication:
    """Make a new version of ``entry``'s materials and point ``current`` at it (as root).

    ``from_folder``: publish this folder instead, with a label saying what it is (a git
    checkout, :func:`git_checkout`).

    ``root`` is `<data_dir>/materials`; ``instructor_copy`` the course's instructors' copy
    (`<data_dir>/formgrader/<course>`), whose ``materials/`` is the source unless
    ``from_course`` or it has none. When nothing differs from the current version, no version
    is made (the publication says so).
    """
    course_id = entry.course.id
    folder = course_versions(root, course_id)
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    folder.mkdir(mode=0o755, exist_ok=True)
    if root.is_symlink() or folder.is_symlink():
        raise PublishError(f"{folder}: a link where LearnHub keeps materials; remove it")
    # One publish of a course at a time (the operator's command and the worker's job may meet):
    # both would number their version alike.
    lock = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _publish_locked(
            entry, folder, root, instructor_copy, by, from_course, from_folder, now
        )
    finally:
        os.close(lock)


def _publish_locked(
    entry: CourseEntry,
    folder: Path,
    root: Path,
    instructor_copy: Path | None,
    by: str,
    from_course: bool,
    from_folder: tuple[Path, str] | None,
    now: datetime | None,
) -> Publication:
    """:func:`publish_materials` with the course's lock held."""
    course_id = entry.course.id
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
    version = f"v{max(numbers, default=0) + 1}"
    staging = folder / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o755)
    try:
        if from_folder is not None:
            _copy_regular_files(from_folder[0], staging)
            source = from_folder[1]
        else:
            source = _fill(entry, staging, instructor_copy, from_course)
        previous = current_version(root, course_id)
        before, after = _digests(previous) if previous else {}, _digests(staging)
        if previous is None:
            # The first publish compares with what servers mounted until now.
            before = _digests(entry.materials_dir)
        publication = Publication(
            course_id,
            version,
            source,
            added=sorted(set(after) - set(before)),
            changed=sorted(n for n in after if n in before and after[n] != before[n]),
            removed=sorted(set(before) - set(after)),
        )
        if publication.unchanged and previous is not None:
            shutil.rmtree(staging)
            publication.version = previous.name
            publication.made = False
            return publication
        (staging / NOTICE).write_text(_notice(publication, by, now or datetime.now(UTC)))
        _readable(staging)
        staging.rename(folder / version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    link = folder / f".{CURRENT}.partial"
    link.unlink(missing_ok=True)
    link.symlink_to(version)
    link.replace(folder / CURRENT)
    _prune(folder, keep=version)
    if instructor_copy is not None:
        _show_to_instructors(folder / version, instructor_copy)
    log.info(
        "materials published",
        extra={
            "course": course_id,
            "user": by,
            "version": version,
            "source": source,
            "added": len(publication.added),
            "changed": len(publication.changed),
            "removed": len(publication.removed),
        },
    )
    return publication


def _fill(entry: CourseEntry, staging: Path, copy: Path | None, from_course: bool) -> str:
    """Put the new version's files into ``staging``; return where they came from."""
    if not from_course and copy is not None and (copy / "materials").is_dir():
        take_back_tree(copy, ("materials",), staging)
        return "instructors"
    if not entry.materials_dir.is_dir():
        raise PublishError(
            f"{entry.course.id} has no materials to publish: neither the instructors' copy "
            f"(~/grading/materials in an instructor's course server) nor {entry.materials_dir}"
        )
    _copy_regular_files(entry.materials_dir, staging)
    return "course"


#: A branch or tag name as git spells them (no option, no "..", nothing a shell reads).
_REF = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$")
#: Longest a clone may take.
GIT_TIMEOUT_SECONDS = 300


def git_checkout(url: str, ref: str, dest: Path) -> str:
    """Clone ``ref`` of the repository ``url`` into the new folder ``dest`` (one commit deep,
    no submodules, no prompt, bounded in time); return its commit id.

    In the spirit of nbgitpuller, but on the host and once per publish: learners' containers
    never reach a git server (they have no route out), they get the published version.
    """
    if not _REF.match(ref):
        raise PublishError(f"{ref!r} is not a branch or tag name")
    if url.startswith("-"):
        raise PublishError(f"{url!r} is not a repository address")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(dest.parent),
    }
    command = ["git", "clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags"]
    command += ["--branch", ref, "--", url, str(dest)]
    try:
        # A fixed program; the ref is checked and the URL comes after "--".
        subprocess.run(
            command, env=env, capture_output=True, text=True, check=True,
            timeout=GIT_TIMEOUT_SECONDS,
        )  # fmt: skip
        head = subprocess.run(
            ["git", "-C", str(dest), "rev-parse", "HEAD"],
            env=env, capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise PublishError("git is not installed on this host: apt-get install git") from exc
    except subprocess.TimeoutExpired as exc:
        raise PublishError(f"git clone of {url} took over {GIT_TIMEOUT_SECONDS} s") from exc
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or "").strip().splitlines()
        raise PublishError(
            f"git could not fetch {ref!r} of {url}: {reason[-1] if reason else exc}"
        ) from exc
    return head.stdout.strip()


def _readable(folder: Path) -> None:
    """Every file world-readable, nothing writable but by root: containers run as uid 1000."""
    for dirpath, _dirnames, filenames in os.walk(folder):
        Path(dirpath).chmod(0o755)
        for name in filenames:
            (Path(dirpath) / name).chmod(0o644)


def _prune(folder: Path, *, keep: str) -> None:
    """Remove versions older than the last :data:`KEEP_VERSIONS` (never ``keep``)."""
    versions = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _VERSION.match(p.name))
    )
    for _number, path in versions[:-KEEP_VERSIONS]:
        if path.name != keep and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def _show_to_instructors(version: Path, copy: Path) -> None:
    """The published files into the instructors' copy's ``materials/`` (their edits of files
    the version lacks are left alone), so their next edit starts from what learners get."""
    staging = version.parent / ".instructors"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(version, staging / "materials", symlinks=True)
        (staging / "materials" / NOTICE).unlink(missing_ok=True)
        publish_to_instructors(staging, copy, skip=frozenset())
    except OSError as exc:
        log.warning("instructors' copy of the materials not updated: %s", exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
