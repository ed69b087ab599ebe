"""Source files edited in the formgrader come back from the instructors' copy as regular files
only (grader/ownership.py: take_back_tree), and nbgrader's failures read as one line."""

from __future__ import annotations

import os
from pathlib import Path

from grader.course import nbgrader_reason
from grader.ownership import prepare_host_directory, publish_to_instructors, take_back_tree

SOURCE = ("source", "ps1")


def published(tmp_path: Path) -> tuple[Path, Path]:
    """A host grading directory with one assignment source, published to the copy."""
    host = tmp_path / "grader" / "course"
    prepare_host_directory(host)
    folder = host / "source" / "ps1"
    (folder / "data").mkdir(parents=True)
    (folder / "ps1.ipynb").write_text("as published")
    (folder / "data" / "table.csv").write_text("a,b\n")
    copy = tmp_path / "formgrader" / "course"
    publish_to_instructors(host, copy, skip=frozenset())
    return host, copy


def test_only_changed_regular_files_come_back(tmp_path: Path) -> None:
    host, copy = published(tmp_path)
    assert take_back_tree(copy, SOURCE, host / "source" / "ps1") == []  # nothing edited

    (copy / "source" / "ps1" / "ps1.ipynb").write_text("edited in the formgrader")
    (copy / "source" / "ps1" / "data" / "new.csv").write_text("c,d\n")
    (copy / "source" / "ps1" / ".ipynb_checkpoints").mkdir()
    (copy / "source" / "ps1" / ".ipynb_checkpoints" / "ps1-checkpoint.ipynb").write_text("x")
    taken = take_back_tree(copy, SOURCE, host / "source" / "ps1")

    assert sorted(taken) == ["data/new.csv", "ps1.ipynb"]
    assert (host / "source" / "ps1" / "ps1.ipynb").read_text() == "edited in the formgrader"
    assert not (host / "source" / "ps1" / ".ipynb_checkpoints").exists()
    # The host's file carries the copy's time, so the next publish and take-back skip it.
    assert take_back_tree(copy, SOURCE, host / "source" / "ps1") == []
    assert publish_to_instructors(host, copy, skip=frozenset()) == 0


def test_links_and_fifos_planted_in_the_copy_are_never_followed(tmp_path: Path) -> None:
    host, copy = published(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("host data")
    folder = copy / "source" / "ps1"
    (folder / "ps1.ipynb").unlink()
    (folder / "ps1.ipynb").symlink_to(victim / "precious.txt")
    (folder / "linked-dir").symlink_to(victim)
    os.mkfifo(folder / "pipe")  # opening it without O_NONBLOCK would hang the host

    assert take_back_tree(copy, SOURCE, host / "source" / "ps1") == []
    assert (host / "source" / "ps1" / "ps1.ipynb").read_text() == "as published"
    assert not (host / "source" / "ps1" / "linked-dir").exists()
    assert not (host / "source" / "ps1" / "pipe").exists()


def test_a_linked_source_folder_is_not_walked(tmp_path: Path) -> None:
    host, copy = published(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("host data")
    os.rename(copy / "source", tmp_path / "moved-away")
    (copy / "source").symlink_to(victim)
    assert take_back_tree(copy, ("source",), host / "source") == []
    assert not (host / "source" / "precious.txt").exists()


def test_nbgrader_failures_read_as_one_line() -> None:
    log = (
        "[INFO] Converting notebook\n"
        "[ERROR] Traceback (most recent call last):\n"
        '  File "x.py", line 3, in y\n'
        "ValueError: cell p1 has an AUTOTEST line: write the asserts out\n"
        "[ERROR] There was an error processing assignment 'ps1' for student '.'\n"
        "[ERROR] Please see the the above traceback for details.\n"
    )
    assert nbgrader_reason({"success": False, "log": log, "error": "Traceback ..."}) == (
        "cell p1 has an AUTOTEST line: write the asserts out; "
        "There was an error processing assignment 'ps1' for student '.'"
    )
    exchange = "[CRITICAL] The exchange refused (409): already released; use --force\n"
    assert (
        nbgrader_reason({"log": exchange})
        == "The exchange refused (409): already released; use --force"
    )
    assert nbgrader_reason({"error": "Traceback\n  ...\npkg.SomeError: it broke"}) == "it broke"
