"""Who owns what in the data folder, and the unprivileged account the service runs as.

The Hub runs as root (the Docker socket, the course networks' firewall rules). The LearnHub
service (public webhook, archive unpacking, members' posts) and the idle culler do not need
root: when the Hub is root they run as ``hub.service_user`` (JupyterHub's managed-service
``user`` key). The data folder is split so that account reaches exactly its own part::

    <data_dir>/              root, 0710, group <service>   jupyterhub.sqlite, cookie secret, pid
                                                          files, cli-token: root's, 0600
    <data_dir>/service/      <service>, 0700               learnhub.sqlite (+ -wal, -shm), exchange/
    <data_dir>/grader/       root, 0710, group <service>   <course>/ likewise; gradebook.db 0640
                                                          (the service reads grades, writes none)
    <data_dir>/formgrader/   root; <course>/ the container user's (grader/ownership.py)

The group may only pass through the root-owned folders, never list or write them: it opens
``service/`` and the gradebooks by name. Root never walks or follows anything inside
``service/`` once the service owns it; the operator's commands that write LearnHub's database
(``learnhub grant``, ``revoke``, ``reconcile``, the grades ``autograde`` records) do it as the
service's account (:func:`become_service_user`, :func:`run_as_service_user`), so every file
there stays the service's and root opens none of them.

When the Hub is not root (a developer's machine), everything runs as that one user and the data
folder is simply 0700.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub.errors import LearnHubError
from hub.settings import Settings

#: What a fresh system user for the service is created with (scripts/setup.sh does this).
USERADD = (
    "useradd --system --user-group --no-create-home --home-dir /nonexistent "
    "--shell /usr/sbin/nologin {name}"
)
#: What the service had in the data folder itself before it got its own folder.
_LEGACY_SERVICE_ENTRIES = ("learnhub.sqlite", "learnhub.sqlite-wal", "learnhub.sqlite-shm")


@dataclass(frozen=True)
class ServiceAccount:
    """A system account a process the Hub starts runs as (the service, the culler, the proxy)."""

    name: str
    uid: int
    gid: int


def service_account(settings: Settings) -> ServiceAccount | None:
    """The account to run the service as, or None when it runs as the caller.

    None when this process is not root (it cannot change user: the service runs as whoever
    runs the Hub) or when ``hub.service_user`` is empty. Raises :class:`LearnHubError` naming
    the remedy for a user that does not exist or is root.
    """
    return _system_account("hub.service_user", settings.hub.service_user)


def proxy_account(settings: Settings) -> ServiceAccount | None:
    """The account configurable-http-proxy runs as (``hub.proxy_user``), like
    :func:`service_account`."""
    return _system_account("hub.proxy_user", settings.hub.proxy_user)


def _system_account(setting: str, name: str) -> ServiceAccount | None:
    if not name or os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LearnHubError(
            f"{setting}: there is no user {name!r} on this machine; create it "
            f"(scripts/setup.sh does): {USERADD.format(name=name)}"
        ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise LearnHubError(
            f"{setting}: {name!r} is root or in root's group; name an unprivileged user"
        )
    return ServiceAccount(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def prepare_data_dir(settings: Settings) -> ServiceAccount | None:
    """Make the data folder's ownership and modes what this module's docstring says.

    Called by the Hub's config at every start and by the operator's commands before they touch
    LearnHub's database; idempotent. Moves the service's database and exchange store from the
    data folder into ``service/`` once (LearnHub before 2026-12 kept them there). Returns the
    service's account (None: it runs as the caller).
    """
    account = service_account(settings)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    service_dir = settings.service_dir
    _make_private(
        data_dir, skip=(service_dir, settings.formgrader_dir), sharing=account is not None
    )
    _move_legacy_service_files(settings)
    _prepare_service_dir(service_dir, account)
    if account is None:
        data_dir.chmod(0o700)
        return None
    os.chown(data_dir, 0, account.gid)
    data_dir.chmod(0o710)
    _create_service_database(settings, account)
    grader_dir = settings.grader_dir
    if grader_dir.is_dir() and not grader_dir.is_symlink():
        share_grading_folder(grader_dir, account.gid)
        for course in grader_dir.iterdir():
            if course.is_dir() and not course.is_symlink():
                share_grading_folder(course, account.gid)
                share_gradebook(course / "gradebook.db", account.gid)
    return account


def _make_private(data_dir: Path, *, skip: tuple[Path, ...], sharing: bool) -> None:
    """Strip group and other permissions from everything root keeps in the data folder.

    With ``sharing`` (root, with a service account), what is shared with the service's group
    keeps exactly that (a folder's pass-through bit, a gradebook's read bit), so the service's
    reads never fail while this runs. Folders in
    ``skip`` are not entered: root never walks what the service or the course containers own.
    """
    for dirpath, dirnames, filenames in os.walk(data_dir):
        here = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = here / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
                continue
            shared = 0
            if sharing and info.st_gid != 0:
                shared = stat.S_IXGRP if stat.S_ISDIR(info.st_mode) else stat.S_IRGRP
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077 & ~shared:
                path.chmod(mode & (0o700 | shared))
        dirnames[:] = [d for d in dirnames if here / d not in skip]


def _move_legacy_service_files(settings: Settings) -> None:
    """Move ``learnhub.sqlite`` (with its WAL) and ``exchange/`` into ``service/``, once.

    Only LearnHub's own default locations, and only while the new ones do not exist yet, so an
    operator's command run before the Hub starts finds the same database the Hub will.
    """
    data_dir, service_dir = settings.data_dir, settings.service_dir
    moves: list[tuple[Path, Path]] = []
    if not settings.database.learnhub_url and not (service_dir / "learnhub.sqlite").exists():
        moves += [(data_dir / name, service_dir / name) for name in _LEGACY_SERVICE_ENTRIES]
    if not settings.exchange_dir.exists():
        moves.append((data_dir / "exchange", settings.exchange_dir))
    moves = [(old, new) for old, new in moves if old.exists() and not old.is_symlink()]
    if not moves:
        return
    service_dir.mkdir(mode=0o700, exist_ok=True)
    for old, new in moves:
        # Still root's alone (the service never wrote into the data folder itself), so handing
        # it over by walking it cannot be tricked into following a planted link.
        account = service_account(settings)
        if account is not None:
            _chown_tree(old, account)
        old.rename(new)


def _chown_tree(top: Path, account: ServiceAccount) -> None:
    """Give ``top`` and everything under it to ``account`` (links themselves, never targets)."""
    os.lchown(top, account.uid, account.gid)
    if not top.is_dir() or top.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), account.uid, account.gid)


def _prepare_service_dir(service_dir: Path, account: ServiceAccount | None) -> None:
    """Create ``service/`` for the service's account; hand over one only root ever had."""
    with contextlib.suppress(FileExistsError):
        service_dir.mkdir(mode=0o700)
    info = service_dir.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise LearnHubError(f"{service_dir}: not a folder; move it aside and start again")
    owner = account.uid if account else os.geteuid()
    if info.st_uid == owner:
        return
    if account is not None and info.st_uid == 0:
        # Root's own folder (LearnHub ran its service as root before): nothing in it was
        # written by anyone else, so it can be walked and handed over.
        _chown_tree(service_dir, account)
        service_dir.chmod(0o700)
        return
    raise LearnHubError(
        f"{service_dir}: belongs to uid {info.st_uid}, not to the user the LearnHub service "
        f"runs as (uid {owner}); give it to that user (chown -R {owner} {service_dir}) or "
        "set hub.service_user to its owner"
    )


def _create_service_database(settings: Settings, account: ServiceAccount) -> None:
    """An empty SQLite database owned by the service, so root's readers never create it.

    (The Hub's member home page reads it; SQLite gives the -wal and -shm files a root
    process creates to the owner of the database file.)
    """
    if settings.database.learnhub_url:
        return
    folder = os.open(settings.service_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open("learnhub.sqlite", flags, 0o600, dir_fd=folder)
        except FileExistsError:
            return
        try:
            os.fchown(fd, account.uid, account.gid)
        finally:
            os.close(fd)
    finally:
        os.close(folder)


def share_grading_folder(folder: Path, gid: int) -> None:
    """Let the service's group pass through a root-owned grading folder (0710), no more."""
    info = folder.lstat()
    if stat.S_ISDIR(info.st_mode) and info.st_uid == 0:
        os.chown(folder, 0, gid, follow_symlinks=False)
        folder.chmod(0o710)


def share_gradebook(path: Path, gid: int) -> None:
    """Let the service's group read (never write) a root-owned SQLite gradebook: 0640."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_uid == 0:
        os.chown(path, 0, gid, follow_symlinks=False)
        path.chmod(0o640)


def drop_privileges(account: ServiceAccount) -> None:
    """Become ``account`` for good: its group only, then its user (no way back)."""
    os.setgroups([])
    os.setgid(account.gid)
    os.setuid(account.uid)
    if os.getuid() != account.uid or os.geteuid() != account.uid:
        raise PermissionError(errno.EPERM, f"could not become {account.name}")


def become_service_user(settings: Settings) -> None:
    """For an operator's command that only touches LearnHub's database from here on: prepare
    the data folder, then (as root) become the service's account for the rest of the process.

    Read what only root may read (the admin token, the settings file) before calling this.
    """
    account = prepare_data_dir(settings)
    if account is not None:
        drop_privileges(account)


def run_as_service_user(account: ServiceAccount | None, work: Callable[[], None]) -> None:
    """Run ``work`` as ``account`` in a child process, or right here when ``account`` is None.

    For the part of a root command that writes LearnHub's database (autograde records the
    grades it found): the database stays the service's and root opens none of its files.
    Raises :class:`LearnHubError` when the child fails; its error is printed to stderr.
    """
    if account is None:
        work()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 1
        try:
            drop_privileges(account)
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise LearnHubError(
            f"writing LearnHub's database as {account.name} failed (see the error above)"
        )
