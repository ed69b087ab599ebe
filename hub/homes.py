"""Learner homes with a size limit: one ext4 image file per learner and course.

Docker's own ways to bound a home need disk quotas: the local volume driver's ``size`` option
and ``--storage-opt size=`` both use xfs project quotas, and this kernel has no quota support
at all. A loop-mounted filesystem image needs none: the learner's home is a filesystem of its
own, so writing past its size fails with ENOSPC inside the container and never reaches the
disk that holds the Hub's data.

Life of a home (``spawner.home.storage: image``), all of it run by the Hub (root) off the
event loop:

1. :func:`prepare_home` makes ``<homes>/<name>.ext4`` on first use: a sparse file, formatted
   with ``mke2fs`` (copying an existing named volume's files in with ``-d`` when the learner
   had a home before the limit was switched on), then mounts it on ``<homes>/<name>.mnt``
   (loop, nosuid, nodev).
2. Docker bind-mounts that folder as ``/home/jovyan`` when the container starts.
3. :func:`detach_home` lazily unmounts the Hub's mount right after the start. The container
   keeps its own reference; when the container goes (stop, crash, ``docker rm``), the kernel
   unmounts the filesystem and frees the loop device (``mount -o loop`` sets autoclear). So
   nothing is left mounted on the host while servers run, a Hub restart has nothing to
   reattach, and a stop has nothing to undo.

A mount left by a Hub that died between 1 and 3 is detached at the next start. While an old
container's filesystem is still being released, the image is busy and mounting it again is
refused (mounting one ext4 twice would corrupt it): :func:`prepare_home` waits for it.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

#: Mount options of a home: no set-uid programs or device files from a learner's filesystem.
MOUNT_OPTIONS = "loop,nosuid,nodev,discard"
#: The container user, owner of a new home's root folder.
HOME_OWNER = (1000, 100)
#: How long a start waits for an earlier container of the same home to let go of its image.
BUSY_WAIT_SECONDS = 20.0
#: One lock per home: a start that timed out leaves its thread making the image; a retry must
#: wait for it rather than format the same file beside it.
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_SIZE = re.compile(r"^([1-9][0-9]*(?:\.[0-9]+)?)([KMGT]?)$")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class HomeError(RuntimeError):
    """A home could not be made or mounted; the message says what to do."""


class Outcome(enum.StrEnum):
    """What :func:`prepare_home` did, for the Hub log."""

    CREATED = "created"
    MIGRATED = "migrated"
    GROWN = "grown"
    MOUNTED = "mounted"


@dataclass(frozen=True)
class HomeImage:
    """Where one learner-and-course home lives on the Hub's disk."""

    image: Path
    mountpoint: Path

    @classmethod
    def under(cls, root: Path, name: str) -> HomeImage:
        """The home called `name` (the Docker volume name it replaces) under `root`."""
        if not name or "/" in name or name.startswith("."):
            raise HomeError(f"{name!r} is not a home name")
        return cls(root / f"{name}.ext4", root / f"{name}.mnt")


@dataclass(frozen=True)
class Prepared:
    """A mounted home, ready to be bind-mounted into the container."""

    outcome: Outcome
    size_bytes: int
    used_bytes: int
    seconds: float


def size_in_bytes(size: str) -> int:
    """``2G`` -> 2147483648 (K/M/G/T are powers of 1024, as Docker reads them)."""
    match = _SIZE.match(size)
    if not match:
        raise HomeError(f"home size {size!r}: use a number with K, M, G or T, e.g. 2G")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def _require_tools() -> None:
    missing = [tool for tool in ("mke2fs", "mount", "umount", "losetup") if not shutil.which(tool)]
    if missing:
        raise HomeError(
            f"home images need {', '.join(missing)} (e2fsprogs, mount) on the Hub's host; "
            "install them, or set spawner.home.storage: volume"
        )
    if os.geteuid() != 0:
        raise HomeError(
            "home images are mounted by the Hub, which must run as root for that; run it as "
            "root, or set spawner.home.storage: volume (no size limit)"
        )


def is_mounted(path: Path) -> bool:
    """Whether `path` is a mount point in the Hub's mount namespace."""
    return os.path.ismount(path)


def image_busy(image: Path) -> bool:
    """Whether a loop device still holds `image` (a container's filesystem not yet released)."""
    return bool(_run("losetup", "--associated", str(image)).stdout.strip())


def detach_home(home: HomeImage) -> bool:
    """Lazily unmount the Hub's mount of `home`; containers keep theirs. True if one was there."""
    if not is_mounted(home.mountpoint):
        return False
    result = _run("umount", "--lazy", str(home.mountpoint))
    if result.returncode != 0 and is_mounted(home.mountpoint):
        raise HomeError(f"cannot unmount {home.mountpoint}: {result.stderr.strip()}")
    return True


def _make_image(home: HomeImage, size_bytes: int, seed: Path | None) -> bool:
    """Format a new sparse image; with `seed` (when it exists), copy that folder's files in;
    return whether it did. Atomic: a crash leaves no half-made image under the final name."""
    partial = home.image.with_suffix(".ext4.partial")
    partial.unlink(missing_ok=True)
    with partial.open("wb") as handle:
        handle.truncate(size_bytes)
    # -m 0: no blocks reserved for root (the learner is not root); lazy init: the file stays
    # sparse (about 1 MiB on disk for a new 2 GiB home instead of a 64 MiB zeroed journal).
    extended = "lazy_itable_init=1,lazy_journal_init=1,root_owner={}:{}".format(*HOME_OWNER)
    command = ["mke2fs", "-q", "-F", "-t", "ext4", "-m", "0", "-E", extended]
    if seed is not None and seed.is_dir():
        command += ["-d", str(seed)]
    else:
        seed = None
    result = _run(*command, str(partial))
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        detail = result.stderr.strip()
        if seed is not None:
            raise HomeError(
                f"cannot copy the existing home {seed} into a {size_bytes // 1024**2} MiB image "
                f"({detail}); raise spawner.home.size above what the learner already stores"
            )
        raise HomeError(f"mke2fs failed for {home.image}: {detail}")
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    partial.rename(home.image)
    dir_fd = os.open(home.image.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return seed is not None


def _grow_image(home: HomeImage, size_bytes: int) -> None:
    """Enlarge an unmounted image to `size_bytes` (``spawner.home.size`` was raised)."""
    checked = _run("e2fsck", "-f", "-p", str(home.image))
    # e2fsck: 0 clean, 1 errors corrected; anything else needs a person.
    if checked.returncode not in (0, 1):
        raise HomeError(f"e2fsck {home.image} failed: {checked.stderr.strip()}")
    with home.image.open("r+b") as handle:
        handle.truncate(size_bytes)
    grown = _run("resize2fs", str(home.image))
    if grown.returncode != 0:
        raise HomeError(f"resize2fs {home.image} failed: {grown.stderr.strip()}")


def _mount(home: HomeImage, deadline: float) -> None:
    while True:
        if image_busy(home.image):
            result = None
        else:
            result = _run("mount", "-o", MOUNT_OPTIONS, str(home.image), str(home.mountpoint))
            if result.returncode == 0:
                return
        if time.monotonic() > deadline:
            detail = result.stderr.strip() if result else "a loop device still holds it"
            raise HomeError(
                f"cannot mount {home.image} ({detail}); if an old container of this home is "
                "still running, remove it (docker rm -f) and start again"
            )
        time.sleep(0.2)


def prepare_home(
    home: HomeImage,
    size: str,
    *,
    seed: Path | None = None,
    busy_wait: float = BUSY_WAIT_SECONDS,
) -> Prepared:
    """Make (first use) and mount `home` with a filesystem of `size`; blocking, as root.

    `seed` is the folder of the learner's existing named volume, copied in when the image is
    first made so that switching the limit on loses no one's work (ignored afterwards). An
    image smaller than `size` is grown; a larger one is kept as it is (shrinking could lose
    files).
    """
    started = time.monotonic()
    _require_tools()
    size_bytes = size_in_bytes(size)
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(home.image, threading.Lock())
    with lock:
        return _prepare_locked(home, size_bytes, seed, started, busy_wait)


def _prepare_locked(
    home: HomeImage, size_bytes: int, seed: Path | None, started: float, busy_wait: float
) -> Prepared:
    home.image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Mode 000: if the engine ever bound the bare folder instead of the mounted filesystem
    # (a Docker daemon in another mount namespace), the learner could write nothing to the
    # Hub's disk; the server fails to start instead.
    home.mountpoint.mkdir(mode=0o000, exist_ok=True)
    # Left by a Hub that stopped between mounting and starting the container.
    detach_home(home)
    outcome = Outcome.MOUNTED
    if not home.image.exists():
        copied = _make_image(home, size_bytes, seed)
        outcome = Outcome.MIGRATED if copied else Outcome.CREATED
    elif home.image.stat().st_size < size_bytes:
        _wait_idle(home, started + busy_wait)
        _grow_image(home, size_bytes)
        outcome = Outcome.GROWN
    _mount(home, started + busy_wait)
    if outcome is not Outcome.MOUNTED:
        # The root folder is the learner's; mke2fs's lost+found is clutter in JupyterLab's
        # file browser (e2fsck makes it again if it ever needs one).
        os.chown(home.mountpoint, *HOME_OWNER)
        lost = home.mountpoint / "lost+found"
        if lost.is_dir() and not any(lost.iterdir()):
            lost.rmdir()
    usage = os.statvfs(home.mountpoint)
    total = usage.f_blocks * usage.f_frsize
    used = (usage.f_blocks - usage.f_bfree) * usage.f_frsize
    return Prepared(outcome, total, used, time.monotonic() - started)


def _wait_idle(home: HomeImage, deadline: float) -> None:
    while image_busy(home.image):
        if time.monotonic() > deadline:
            raise HomeError(
                f"{home.image} is still in use by an old container; remove it and start again"
            )
        time.sleep(0.2)
