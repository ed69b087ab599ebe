"""What a size-limited home costs at spawn time (``spawner.home.storage: image``).

Times the Hub's own work through the real :func:`hub.homes.prepare_home` and
:func:`hub.homes.detach_home` on image files under ``--dir`` (default: a temporary folder on
the data disk): the first start of a home (sparse file + mke2fs + mount), every later start
(mount), the lazy unmount after the container started, and the first start of a home copied
from an existing folder of ``--seed-mib`` MiB (a learner's named volume when the limit is
switched on). Then, unless ``--no-docker``, a bare ``docker run --rm IMAGE true`` with the home
as a named volume and as the mounted image, to set the figures against a container start.

Run as root (mounting is root's job):

    .venv/bin/python benchmarks/homes.py [--rounds 20] [--size 2G] [--seed-mib 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import loadavg, percentile  # noqa: E402
from hub.homes import HomeImage, detach_home, prepare_home  # noqa: E402

IMAGE = "learnhub/singleuser:latest"


def summary(label: str, seconds: list[float]) -> None:
    """Print p50 / p90 / max in milliseconds."""
    ms = [s * 1000 for s in seconds]
    print(
        f"{label:<44} n={len(ms):<3} p50={statistics.median(ms):7.1f} ms  "
        f"p90={percentile(ms, 0.9):7.1f} ms  max={max(ms):7.1f} ms"
    )


def home_work(root: Path, rounds: int, size: str, seed_mib: int) -> None:
    """First start, later starts and detach of `rounds` homes; one seeded first start."""
    first, later, detach = [], [], []
    homes = [HomeImage.under(root, f"bench-{i}--course") for i in range(rounds)]
    for home in homes:
        first.append(prepare_home(home, size).seconds)
        detach_home(home)
    for home in homes:
        later.append(prepare_home(home, size).seconds)
        started = time.perf_counter()
        detach_home(home)
        detach.append(time.perf_counter() - started)
    summary(f"first start ({size}: truncate + mke2fs + mount)", first)
    summary("later start (mount)", later)
    summary("lazy unmount after the container started", detach)
    on_disk = statistics.median(home.image.stat().st_blocks * 512 for home in homes)
    print(f"{'disk used by a new, empty home':<44} {on_disk / 1024**2:.1f} MiB (sparse)")
    seed = root / "seed"
    seed.mkdir()
    for i in range(max(1, seed_mib // 4)):
        (seed / f"file-{i}.bin").write_bytes(os.urandom(4 * 1024**2))
    seeded = HomeImage.under(root, "bench-seeded--course")
    summary(
        f"first start copying {seed_mib} MiB from a volume",
        [prepare_home(seeded, size, seed=seed).seconds],
    )
    detach_home(seeded)


def docker_run(args: list[str], rounds: int) -> list[float]:
    """Seconds of `docker run --rm ARGS IMAGE true`, `rounds` times."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "true", "-u", "1000:100", *args, IMAGE],
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    return times


def container_starts(root: Path, rounds: int, size: str) -> None:
    """A container start with each kind of home, the image one including its mount."""
    volume = f"bench-home-{uuid.uuid4().hex[:8]}"
    home = HomeImage.under(root, "bench-docker--course")
    prepare_home(home, size)
    detach_home(home)
    try:
        by_volume = docker_run(["-v", f"{volume}:/home/jovyan"], rounds)
        summary("docker run, home = named volume", by_volume)
        with_image = []
        for _ in range(rounds):
            started = time.perf_counter()
            prepare_home(home, size)
            docker_run(["-v", f"{home.mountpoint}:/home/jovyan"], 1)
            detach_home(home)
            with_image.append(time.perf_counter() - started)
        summary("mount + docker run + unmount, home = image", with_image)
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", default="2G")
    parser.add_argument("--seed-mib", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None, help="where the images go")
    parser.add_argument("--no-docker", action="store_true", help="skip the container starts")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: home images are mounted by the Hub, which runs as root")
        return 2
    print(f"load average before: {loadavg()}")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="learnhub-homes-") as folder:
        root = Path(folder)
        try:
            home_work(root, args.rounds, args.size, args.seed_mib)
            if not args.no_docker:
                container_starts(root, max(3, args.rounds // 4), args.size)
        finally:
            for mountpoint in root.glob("*.mnt"):
                detach_home(HomeImage(mountpoint.with_suffix(".ext4"), mountpoint))
    print(f"load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
