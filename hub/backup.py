"""``learnhub backup DEST`` and ``learnhub restore SRC``: a platform's state, consistently.

A backup is a folder::

    DEST/manifest.json        format, LearnHub version, both Alembic revisions, every file with
                              its size, sha256, owner and mode
    DEST/settings.yaml        the settings file (it never holds secrets: those come from
                              LEARNHUB_* variables, which the manifest lists by name only)
    DEST/data/                the data folder, owners and modes as they were (hub/privilege.py)
    DEST/postgres/*.dump      pg_dump (custom format) of a database on PostgreSQL

taken while the platform runs, each part consistent on its own:

- SQLite databases (JupyterHub's, LearnHub's, the gradebooks) through SQLite's online backup API,
  which copies a live database (its WAL included) as of one moment; PostgreSQL through
  ``pg_dump``, which reads one snapshot.
- LearnHub's database before the exchange store: the store writes a file durably before it
  commits the row naming it, so every submission and release in the copied database has its
  file in the copied store (a file newer than the database copy is merely unreferenced).
- Learner homes (ext4 images, :mod:`hub.homes`): a home in use by a running container is frozen
  while it is copied (``fsfreeze`` through a second, private mount of the same loop device: the
  Hub's own mount is detached once the container has started), so the copy is a clean
  filesystem; the learner's writes wait for those few seconds. Idle homes are copied as they
  are. Copies stay sparse (``cp --sparse=always``).
- The service's part of the data folder (its database, the exchange store) is read and written
  by the service's account, never by root (:mod:`hub.privilege`): the backup's ``data/service``
  is that account's, as the original is.

Left out: secrets (``jupyterhub_cookie_secret``, the demo's ``cli-token`` and an older demo's
``admin-token``: a restored platform gets its secrets from the environment again; without the
old cookie secret members sign in once more), pid files, migration locks and pre-migration
copies, and the Hub's mount points of homes.

``learnhub restore SRC`` verifies every checksum first, refuses a backup whose schemas are newer
than this code and a data folder that is not empty, then copies the tree back with its owners
and modes (a service account with another uid on the new machine gets its files).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from hub.errors import LearnHubError
from hub.privilege import ServiceAccount, service_account
from hub.settings import SECRET_ENV, Settings
from hub.store.database import MIGRATIONS_DIR
from hub.store.revisions import copy_sqlite, describe, sqlite_path, store_revision

#: Bumped when a backup's layout changes incompatibly.
FORMAT = 1
MANIFEST = "manifest.json"
#: Files of the data folder that are secrets (or only mean something to a running process).
_SKIPPED_NAMES = {
    "jupyterhub_cookie_secret",
    "cli-token",
    "admin-token",
    "jupyterhub.pid",
    "proxy.pid",
}
#: SQLite side files (copied through the backup API instead), locks, pre-migration copies.
_SKIPPED = re.compile(
    r"(-wal|-shm|-journal|\.upgrade-lock|\.sqlite\.\d{4}-\d\d-\d\d-\d{6}(\.\d+)?)$"
)

Say = Callable[[str], None]


def _skipped(name: str) -> bool:
    return name in _SKIPPED_NAMES or bool(_SKIPPED.search(name))


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if result.returncode != 0:
        raise LearnHubError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def _cp(source: Path, target: Path) -> None:
    """``cp -a`` (owners, modes, times, links as links), holes kept."""
    _run("cp", "-a", "--sparse=always", "--no-target-directory", str(source), str(target))


def _mirror_dir(source: Path, target: Path) -> None:
    """Make folder ``target`` with ``source``'s owner and mode."""
    info = source.lstat()
    target.mkdir(mode=0o700, exist_ok=True)
    os.lchown(target, info.st_uid, info.st_gid)
    target.chmod(stat.S_IMODE(info.st_mode))


def _copy_sqlite_like(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite file, with the source's owner and mode."""
    info = source.lstat()
    copy_sqlite(source, target)
    os.lchown(target, info.st_uid, info.st_gid)
    target.chmod(stat.S_IMODE(info.st_mode))


def _pg_tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))[::-1]), None
    )
    if found is None:
        raise LearnHubError(
            f"{name} not found: install PostgreSQL's client tools (apt-get install "
            "postgresql-client) to back up or restore a database on PostgreSQL"
        )
    return found


def _libpq_url(db_url: str) -> str:
    """A SQLAlchemy URL as libpq (pg_dump, pg_restore) reads it."""
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _is_postgres(db_url: str) -> bool:
    return make_url(db_url).get_backend_name() == "postgresql"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(top: Path) -> Iterator[Path]:
    """Everything under ``top``, never following links, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        here = Path(dirpath)
        for name in [*dirnames, *sorted(filenames)]:
            yield here / name


def _entry(root: Path, path: Path) -> dict[str, Any]:
    info = path.lstat()
    entry: dict[str, Any] = {
        "path": path.relative_to(root).as_posix(),
        "uid": info.st_uid,
        "gid": info.st_gid,
        "mode": stat.S_IMODE(info.st_mode),
    }
    if stat.S_ISDIR(info.st_mode):
        entry["type"] = "dir"
    elif stat.S_ISLNK(info.st_mode):
        entry["type"] = "symlink"
        entry["target"] = os.readlink(path)
    elif stat.S_ISREG(info.st_mode):
        entry.update(type="file", size=info.st_size, sha256=_sha256(path))
    else:
        raise LearnHubError(f"{path}: neither file, folder nor link; cannot back it up")
    return entry


# -- the parts of a backup ------------------------------------------------------------------------


@contextmanager
def _frozen(image: Path) -> Iterator[None]:
    """Hold the filesystem in ``image`` still while its loop device is in use (a running
    container); nothing to do for an idle image."""
    result = subprocess.run(
        ["losetup", "--noheadings", "--output", "NAME", "--associated", str(image)],
        capture_output=True,
        text=True,
        check=False,
    )
    devices = result.stdout.split()
    if not devices:
        yield
        return
    # The Hub unmounted its own view once the container started: mount the same device again
    # (the kernel shares the one filesystem), privately, to have something to freeze.
    with tempfile.TemporaryDirectory(prefix="learnhub-freeze-") as mountpoint:
        _run("mount", "-o", "nosuid,nodev,noexec", devices[0], mountpoint)
        try:
            _run("fsfreeze", "--freeze", mountpoint)
            try:
                yield
            finally:
                _run("fsfreeze", "--unfreeze", mountpoint)
        finally:
            _run("umount", mountpoint)


def _backup_homes(source: Path, target: Path, say: Say) -> None:
    _mirror_dir(source, target)
    for image in sorted(source.glob("*.ext4")):
        with _frozen(image):
            _cp(image, target / image.name)
        say(f"home {image.stem}")


def _backup_grader(source: Path, target: Path) -> None:
    """Courses' grading folders; each gradebook through SQLite's backup API."""
    _cp(source, target)
    for gradebook in sorted(source.glob("*/gradebook.db")):
        copy = target / gradebook.relative_to(source)
        copy.unlink()
        _copy_sqlite_like(gradebook, copy)
    for leftover in _walk(target):
        if _skipped(leftover.name) and leftover.is_file():
            leftover.unlink()


def _backup_service_part(settings: Settings, target: Path) -> None:
    """Run as the service's account: its database first, then the rest of its folder.

    ``target`` is reached through ``/proc/self/fd``: the backup's folders on the way to it
    are root's and need not let the service's account through.
    """
    source = settings.service_dir
    db = sqlite_path(settings.learnhub_db_url)
    if db is not None:
        # SQLite resolves the /proc link to the real path, which this account may not reach:
        # back up into its own folder, then move the bytes through the link.
        staged = source / f".{db.name}.backup-{os.getpid()}"
        staged.unlink(missing_ok=True)
        try:
            copy_sqlite(db, staged)
            shutil.copyfile(staged, target / db.name, follow_symlinks=False)
            (target / db.name).chmod(stat.S_IMODE(db.stat().st_mode))
        finally:
            staged.unlink(missing_ok=True)
    for item in sorted(source.iterdir()):
        if item.name == (db.name if db else None) or _skipped(item.name):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.copytree(item, target / item.name, symlinks=True)
        else:
            shutil.copy2(item, target / item.name, follow_symlinks=False)


def _call_as(account: ServiceAccount | None, work: Callable[[], None]) -> None:
    from hub.upgrade import call_as

    def run() -> str:
        work()
        return ""

    call_as(account, run)


@dataclass(frozen=True)
class Revisions:
    """The Alembic revisions of both databases (None: no database yet)."""

    learnhub: str | None
    jupyterhub: str | None


def _revisions(settings: Settings, account: ServiceAccount | None) -> Revisions:
    from hub.upgrade import call_as, hub_db_revision

    hub_path = sqlite_path(settings.hub_db_url)
    hub = None
    if hub_path is None or hub_path.exists():
        hub = hub_db_revision(settings.hub_db_url).current
    url = settings.learnhub_db_url
    learnhub = call_as(account, lambda: json.dumps(store_revision(url).current))
    return Revisions(learnhub=json.loads(learnhub), jupyterhub=hub)


def backup(settings: Settings, dest: Path, say: Say = print) -> dict[str, Any]:
    """Write a backup of the platform of ``settings`` into the new folder ``dest``."""
    dest = dest.absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise LearnHubError(f"{dest}: exists and is not an empty folder; name a new one")
    data_dir = settings.data_dir
    if not data_dir.is_dir():
        raise LearnHubError(f"{data_dir}: no data folder to back up (hub.data_dir)")
    account = service_account(settings)
    db = sqlite_path(settings.learnhub_db_url)
    if db is not None and db.parent != settings.service_dir:
        raise LearnHubError(
            f"database.learnhub_url: a SQLite file outside {settings.service_dir} cannot be "
            "backed up; use the default location or PostgreSQL"
        )
    revisions = _revisions(settings, account)
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    dest.chmod(0o700)
    data = dest / "data"
    _mirror_dir(data_dir, data)
    dumps = dest / "postgres"
    for name, url in (("jupyterhub", settings.hub_db_url), ("learnhub", settings.learnhub_db_url)):
        if _is_postgres(url):
            dumps.mkdir(mode=0o700, exist_ok=True)
            _run(
                _pg_tool("pg_dump"),
                "--format=custom",
                f"--file={dumps / name}.dump",
                _libpq_url(url),
            )
            say(f"{name} database dumped ({describe(url)})")
    hub_db = sqlite_path(settings.hub_db_url)
    if hub_db is not None and hub_db.exists():
        _copy_sqlite_like(hub_db, data / hub_db.name)
        say("JupyterHub's database copied")
    service = settings.service_dir
    if service.is_dir():
        _mirror_dir(service, data / service.name)
        # The child inherits this open folder and writes through it (see _backup_service_part).
        folder = os.open(data / service.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            through = Path(f"/proc/self/fd/{folder}")
            _call_as(account, lambda: _backup_service_part(settings, through))
        finally:
            os.close(folder)
        say("LearnHub's database and exchange store copied")
    if settings.database.gradebook_url:
        say("gradebooks on a database server are not in this backup: dump them with pg_dump")
    for item in sorted(data_dir.iterdir()):
        target = data / item.name
        if item in (service, hub_db) or _skipped(item.name):
            continue
        if item == settings.homes_dir:
            _backup_homes(item, target, say)
        elif item == settings.grader_dir:
            _backup_grader(item, target)
            say("grading folders and gradebooks copied")
        else:
            _cp(item, target)
    if Path(settings.source).is_file():
        shutil.copyfile(settings.source, dest / "settings.yaml")
        (dest / "settings.yaml").chmod(0o600)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "learnhub_version": metadata.version("learnhub"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "alembic": {"learnhub": revisions.learnhub, "jupyterhub": revisions.jupyterhub},
        "databases": {
            "learnhub": "postgresql" if _is_postgres(settings.learnhub_db_url) else "sqlite",
            "jupyterhub": "postgresql" if _is_postgres(settings.hub_db_url) else "sqlite",
        },
        "service_account": None
        if account is None
        else {"name": account.name, "uid": account.uid, "gid": account.gid},
        "secrets_needed": sorted(
            env for env, field in SECRET_ENV.items() if settings.secret(field)
        ),
        "files": [_entry(dest, path) for path in _walk(dest)],
    }
    path = dest / MANIFEST
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=1)
    say(f"backup written to {dest} ({len(manifest['files'])} entries)")
    return manifest


# -- restore ---------------------------------------------------------------------------------------


def read_manifest(src: Path) -> dict[str, Any]:
    """The backup's manifest, checked to be one this code can read."""
    try:
        manifest: dict[str, Any] = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise LearnHubError(f"{src}: not a LearnHub backup ({MANIFEST}: {exc})") from None
    if manifest.get("format") != FORMAT:
        raise LearnHubError(
            f"{src}: backup format {manifest.get('format')!r}; this LearnHub reads format {FORMAT}"
        )
    return manifest


def check_not_newer(manifest: dict[str, Any]) -> None:
    """Refuse a backup whose database schemas this code does not know (a newer LearnHub's)."""
    from jupyterhub import dbutil

    for name, scripts in (
        ("LearnHub", ScriptDirectory(str(MIGRATIONS_DIR))),
        ("JupyterHub", ScriptDirectory(dbutil.ALEMBIC_DIR)),
    ):
        revision = manifest["alembic"].get(name.lower())
        if revision is None:
            continue
        try:
            scripts.get_revision(revision)
        except Exception:
            raise LearnHubError(
                f"the backup's {name} database is at revision {revision}, newer than this "
                f"LearnHub knows (backup made by LearnHub {manifest.get('learnhub_version')}): "
                "restore it with that version or newer"
            ) from None


def verify(src: Path, manifest: dict[str, Any]) -> None:
    """Every file in the manifest is in ``src`` unchanged, and nothing else is."""
    listed = {entry["path"]: entry for entry in manifest["files"]}
    problems: list[str] = []
    found = {path.relative_to(src).as_posix() for path in _walk(src)} - {MANIFEST}
    for extra in sorted(found - listed.keys()):
        problems.append(f"{extra}: not in the manifest")
    for rel, entry in listed.items():
        if rel not in found:
            problems.append(f"{rel}: missing")
            continue
        actual = _entry(src, src / rel) if entry["type"] != "file" else None
        if entry["type"] == "file":
            path = src / rel
            if not path.is_file() or path.is_symlink():
                problems.append(f"{rel}: not a file")
            elif path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
                problems.append(f"{rel}: checksum differs")
        elif (
            actual is None
            or actual["type"] != entry["type"]
            or actual.get("target") != entry.get("target")
        ):
            problems.append(f"{rel}: changed")
    if problems:
        shown = "; ".join(problems[:10])
        more = f" and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise LearnHubError(f"{src}: the backup does not match its manifest: {shown}{more}")


def _restore_postgres(name: str, url: str, dump: Path, say: Say) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        tables = sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    if tables:
        raise LearnHubError(
            f"{describe(url)}: not empty ({len(tables)} tables); restore into a new database"
        )
    _run(
        _pg_tool("pg_restore"),
        "--no-owner",
        "--exit-on-error",
        f"--dbname={_libpq_url(url)}",
        str(dump),
    )
    say(f"{name} database restored into {describe(url)}")


def restore(settings: Settings, src: Path, say: Say = print) -> dict[str, Any]:
    """Rebuild the platform of ``settings`` from the backup in ``src`` (a fresh data folder)."""
    src = src.absolute()
    manifest = read_manifest(src)
    check_not_newer(manifest)
    data_dir = settings.data_dir
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise LearnHubError(
            f"{data_dir}: the data folder is not empty; restore only onto a fresh one (move "
            "this one aside, or set hub.data_dir to a new folder)"
        )
    for name, kind in manifest["databases"].items():
        url = settings.learnhub_db_url if name == "learnhub" else settings.hub_db_url
        if (kind == "postgresql") != _is_postgres(url):
            raise LearnHubError(
                f"the backup's {name} database is on {kind}, this platform's is not "
                f"({describe(url)}): configure the same kind of database"
            )
    say("checking the backup's checksums")
    verify(src, manifest)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # Into a fresh folder beside the data folder, then renamed: a failed restore leaves none.
    staging = data_dir.with_name(f".{data_dir.name}.restoring")
    if staging.exists():
        shutil.rmtree(staging)
    _cp(src / "data", staging)
    _adopt_service_files(staging, manifest, service_account(settings))
    if data_dir.exists():
        data_dir.rmdir()
    staging.rename(data_dir)
    say(f"data folder restored into {data_dir}")
    for name in ("jupyterhub", "learnhub"):
        dump = src / "postgres" / f"{name}.dump"
        if dump.exists():
            url = settings.learnhub_db_url if name == "learnhub" else settings.hub_db_url
            _restore_postgres(name, url, dump, say)
    needed = ", ".join(manifest.get("secrets_needed", [])) or "none"
    say(
        f"restored the backup of {manifest['created']} (LearnHub {manifest['learnhub_version']}); "
        f"secrets to set again: {needed}; the backup's settings: {src / 'settings.yaml'}"
    )
    return manifest


def _adopt_service_files(
    root: Path, manifest: dict[str, Any], account: ServiceAccount | None
) -> None:
    """Give the old service account's files to this machine's (its uid may differ)."""
    old = manifest.get("service_account")
    if not old or account is None or (old["uid"], old["gid"]) == (account.uid, account.gid):
        return
    for path in [root, *_walk(root)]:
        info = path.lstat()
        uid = account.uid if info.st_uid == old["uid"] else -1
        gid = account.gid if info.st_gid == old["gid"] else -1
        if uid != -1 or gid != -1:
            os.lchown(path, uid, gid)
