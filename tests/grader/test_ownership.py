"""The instructors' copy is hostile ground: publishing into it and taking the gradebook back
never follow a link the container planted (grader/ownership.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from grader.ownership import (
    CONTAINER_UID,
    UnsafeEntry,
    prepare_host_directory,
    publish_to_instructors,
    take_back_file,
)


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    host = tmp_path / "grader" / "course"
    prepare_host_directory(host)
    (host / "autograded" / "ada" / "ps1").mkdir(parents=True)
    (host / "autograded" / "ada" / "ps1" / "ps1.ipynb").write_text("graded")
    (host / "gradebook.db").write_text("host gradebook")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("host data")
    return host, tmp_path / "formgrader" / "course", victim


def test_publish_replaces_planted_links(layout: tuple[Path, Path, Path]) -> None:
    host, copy, victim = layout
    copy.parent.mkdir()
    copy.mkdir()
    (copy / "gradebook.db").symlink_to(victim / "precious.txt")
    (copy / "autograded").symlink_to(victim)
    assert publish_to_instructors(host, copy, skip=frozenset()) == 2
    assert (victim / "precious.txt").read_text() == "host data"
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert not (copy / "gradebook.db").is_symlink()
    assert (copy / "gradebook.db").read_text() == "host gradebook"
    assert (copy / "autograded" / "ada" / "ps1" / "ps1.ipynb").read_text() == "graded"
    # The test command runs as root (scripts/test.sh), as the grader does on the host.
    assert (copy / "autograded" / "ada").stat().st_uid == CONTAINER_UID
    assert (victim / "precious.txt").stat().st_uid == 0


def test_take_back_only_a_regular_file(layout: tuple[Path, Path, Path]) -> None:
    host, copy, victim = layout
    copy.parent.mkdir()
    copy.mkdir()
    dest = host / "gradebook.db"
    (copy / "gradebook.db").symlink_to(victim / "precious.txt")
    assert not take_back_file(copy, "gradebook.db", dest, max_bytes=1024)
    (copy / "gradebook.db").unlink()
    os.mkfifo(copy / "gradebook.db")
    assert not take_back_file(copy, "gradebook.db", dest, max_bytes=1024)
    (copy / "gradebook.db").unlink()
    (copy / "gradebook.db").write_text("x" * 2000)
    assert not take_back_file(copy, "gradebook.db", dest, max_bytes=1024)
    assert dest.read_text() == "host gradebook"
    (copy / "gradebook.db").write_text("manual grades")
    assert take_back_file(copy, "gradebook.db", dest, max_bytes=1024)
    assert dest.read_text() == "manual grades"
    assert oct(dest.stat().st_mode & 0o777) == "0o600"


def test_host_directory_once_writable_by_containers_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "grader" / "course"
    old.mkdir(parents=True)
    os.chown(old, CONTAINER_UID, 100)
    with pytest.raises(UnsafeEntry, match="move it aside"):
        prepare_host_directory(old)
