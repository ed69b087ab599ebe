"""Home images on their own, with real mke2fs, loop mounts and lazy unmounts (the tests run as
root, as the Hub does), and what the other home storages configure.

The full chain (a real hub, a learner filling their home in their container) is in
tests/test_home_limits_docker.py.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from hub.homes import (
    HomeError,
    HomeImage,
    Outcome,
    detach_home,
    image_busy,
    prepare_home,
    size_in_bytes,
)
from hub.settings import load_settings
from hub.spawner import HOME, LearnHubDockerSpawner
from tests.test_hubconfig import configured

MiB = 1024**2


@pytest.fixture
def home(tmp_path: Path) -> Any:
    made = HomeImage.under(tmp_path / "homes", "learnhub-ada--python-2dfoundations")
    yield made
    detach_home(made)


def test_sizes_are_read_as_docker_reads_them() -> None:
    assert size_in_bytes("2G") == 2 * 1024**3
    assert size_in_bytes("1.5M") == 3 * MiB // 2
    with pytest.raises(HomeError, match=r"e\.g\. 2G"):
        size_in_bytes("2GB")


def test_a_new_home_is_sparse_owned_by_the_learner_and_bounded(home: HomeImage) -> None:
    prepared = prepare_home(home, "32M")
    assert prepared.outcome is Outcome.CREATED
    assert home.image.stat().st_size == 32 * MiB
    assert home.image.stat().st_blocks * 512 < 4 * MiB  # sparse: ext4 metadata only
    assert (home.mountpoint.stat().st_uid, home.mountpoint.stat().st_gid) == (1000, 100)
    assert os.listdir(home.mountpoint) == []  # no lost+found in the learner's file browser
    options = subprocess.run(
        ["findmnt", "-n", "-o", "OPTIONS", str(home.mountpoint)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "nosuid" in options and "nodev" in options
    with pytest.raises(OSError, match="No space left"):
        (home.mountpoint / "fill").write_bytes(b"\0" * 40 * MiB)


def test_a_mount_left_by_a_crash_is_replaced_and_the_work_kept(home: HomeImage) -> None:
    prepare_home(home, "32M")
    (home.mountpoint / "work.py").write_text("print(1)\n")
    # The Hub died after mounting, before the container started: the mount is still there.
    again = prepare_home(home, "32M")
    assert again.outcome is Outcome.MOUNTED
    assert (home.mountpoint / "work.py").read_text() == "print(1)\n"
    loops = subprocess.run(
        ["losetup", "--associated", str(home.image)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(loops) == 1, loops  # the old mount was released, not stacked
    assert detach_home(home)
    assert not home.mountpoint.is_mount() and not image_busy(home.image)
    assert not detach_home(home)


def test_two_starts_of_one_home_at_once_make_it_once(home: HomeImage) -> None:
    """A start that timed out leaves its thread making the image; the retry waits for it."""
    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(lambda _: prepare_home(home, "32M").outcome, range(2)))
    assert outcomes == sorted([Outcome.CREATED, Outcome.MOUNTED])
    loops = subprocess.run(
        ["losetup", "--associated", str(home.image)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(loops) == 1, loops


def test_raising_the_size_grows_the_home_and_keeps_the_work(home: HomeImage) -> None:
    prepare_home(home, "32M")
    (home.mountpoint / "work.py").write_text("print(2)\n")
    detach_home(home)
    grown = prepare_home(home, "64M")
    assert grown.outcome is Outcome.GROWN
    assert grown.size_bytes > 48 * MiB
    assert (home.mountpoint / "work.py").read_text() == "print(2)\n"
    detach_home(home)
    # Lowering it keeps the image as it is: shrinking could lose files.
    assert prepare_home(home, "32M").size_bytes == grown.size_bytes


def test_an_old_home_is_copied_in_and_a_too_big_one_refused(
    home: HomeImage, tmp_path: Path
) -> None:
    old = tmp_path / "volume" / "_data"
    (old / "project").mkdir(parents=True)
    (old / "project" / "notes.md").write_text("old work\n")
    os.chown(old / "project" / "notes.md", 1000, 100)
    migrated = prepare_home(home, "32M", seed=old)
    assert migrated.outcome is Outcome.MIGRATED
    copied = home.mountpoint / "project" / "notes.md"
    assert copied.read_text() == "old work\n" and copied.stat().st_uid == 1000
    detach_home(home)
    # The volume is only read the first time: later starts mount the image as it is.
    (old / "project" / "notes.md").write_text("changed\n")
    assert prepare_home(home, "32M", seed=old).outcome is Outcome.MOUNTED
    assert copied.read_text() == "old work\n"

    big = HomeImage.under(tmp_path / "homes", "learnhub-bob--python-2dfoundations")
    (old / "data.bin").write_bytes(os.urandom(40 * MiB))
    with pytest.raises(HomeError, match=r"raise spawner\.home\.size"):
        prepare_home(big, "32M", seed=old)
    assert not big.image.exists() and not list(big.image.parent.glob("*.partial"))


def test_hub_not_root_gets_a_remedy(home: HomeImage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(HomeError, match=r"spawner\.home\.storage: volume"):
        prepare_home(home, "32M")


def test_volume_quota_asks_the_local_driver_for_the_size() -> None:
    """`volume-quota` needs xfs with pquota under /var/lib/docker, which this machine's kernel
    cannot give (no CONFIG_QUOTA): the test reads the mount spec Docker would get."""
    spawner = LearnHubDockerSpawner(home_storage="volume-quota", home_size="5G", prefix="lh")
    spawner.mounts = spawner.volume_quota_mounts()
    namespace = {"prefix": "lh", "username": "ada", "servername": "python-2dfoundations"}
    spawner.format_volume_name = lambda template, _spawner: template.format(**namespace)
    (mount,) = spawner.mount_binds
    assert mount["Type"] == "volume" and mount["Target"] == HOME
    assert mount["Source"] == "lh-ada--python-2dfoundations"
    assert mount["VolumeOptions"]["DriverConfig"] == {"Name": "local", "Options": {"size": "5G"}}
    assert mount["ReadOnly"] is False


def test_settings_choose_the_storage(tmp_path: Path) -> None:
    text = f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\n"
    c = configured({}, text, tmp_path)
    assert c.LearnHubDockerSpawner.home_storage == "image"
    assert c.LearnHubDockerSpawner.home_size == "2G"
    assert c.LearnHubDockerSpawner.homes_root == str(tmp_path.resolve() / "homes")
    c = configured({}, text + "spawner:\n  home: {storage: volume-quota, size: 500M}\n", tmp_path)
    assert (c.LearnHubDockerSpawner.home_storage, c.LearnHubDockerSpawner.home_size) == (
        "volume-quota",
        "500M",
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("spawner:\n  home: {storage: quota, size: 2 GB}\n")
    with pytest.raises(Exception, match=r"spawner\.home\.storage") as error:
        load_settings(bad, {})
    assert "spawner.home.size" in str(error.value)
