"""Publishing materials as versions (hub/publishing.py), without Docker: what a publish takes,
what it tells learners, and what the spawner will mount. The learner's side (their edits kept,
the new version beside them, at the next start) is tests/test_publishing_docker.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.cli import main
from hub.courses import CourseEntry, load_course
from hub.publishing import NOTICE, current_version, publish_materials

ROOT = Path(__file__).resolve().parent.parent
COURSE = "python-foundations"
WHEN = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)


@pytest.fixture
def entry(tmp_path: Path) -> CourseEntry:
    folder = tmp_path / "courses" / COURSE
    shutil.copytree(ROOT / "courses" / COURSE, folder)
    return load_course(folder)


def test_versions_are_made_only_when_something_changed(entry: CourseEntry, tmp_path: Path) -> None:
    root = tmp_path / "materials"
    assert current_version(root, COURSE) is None  # servers mount courses/<id>/materials
    first = publish_materials(entry, root=root, instructor_copy=None, by="operator", now=WHEN)
    # The first version has what servers mounted before: nothing to tell learners but the
    # notice itself.
    assert first.version == "v1" and first.unchanged
    assert current_version(root, COURSE) == root / COURSE / "v1"
    again = publish_materials(entry, root=root, instructor_copy=None, by="operator", now=WHEN)
    assert again.version == "v1" and again.unchanged and not again.made
    assert sorted(p.name for p in (root / COURSE).iterdir()) == [".lock", "current", "v1"]

    (entry.materials_dir / "README.md").write_text("# Read me, revised\n")
    (entry.materials_dir / "05-async.ipynb").write_text("{}\n")
    (entry.materials_dir / "01-data-model.ipynb").unlink()
    # Links in the repository are never published (neither inside nor outside it).
    (entry.materials_dir / "secret.txt").symlink_to("/etc/hostname")
    second = publish_materials(entry, root=root, instructor_copy=None, by="operator", now=WHEN)
    assert (second.version, second.added, second.changed, second.removed) == (
        "v2", ["05-async.ipynb"], ["README.md"], ["01-data-model.ipynb"],
    )  # fmt: skip
    v2 = current_version(root, COURSE)
    assert v2 == root / COURSE / "v2"
    assert not (v2 / "secret.txt").exists()
    assert (root / COURSE / "v1" / "01-data-model.ipynb").is_file()  # v1 is never changed
    notice = (v2 / NOTICE).read_text()
    assert "Version v2, published Dec 5, 2026, 6:00\u202fAM UTC by operator." in notice
    assert "2026年12月5日 06:00 (UTC)" in notice
    assert "- new: `05-async.ipynb`" in notice and "- changed: `README.md`" in notice
    assert "版本 v2" in notice and "NAME.updated.EXT" in notice
    assert oct((v2 / "README.md").stat().st_mode & 0o777) == "0o644"


def test_the_instructors_copy_is_published_without_following_links(
    entry: CourseEntry, tmp_path: Path
) -> None:
    root, copy = tmp_path / "materials", tmp_path / "formgrader" / COURSE
    (copy / "materials" / "week-1").mkdir(parents=True)
    (copy / "materials" / "week-1" / "lesson.ipynb").write_text("{}\n")
    (copy / "materials" / "leak.txt").symlink_to(tmp_path / "courses" / COURSE / "course.yaml")
    made = publish_materials(entry, root=root, instructor_copy=copy, by="demo-instructor")
    assert made.source == "instructors"
    version = current_version(root, COURSE)
    assert version is not None
    assert (version / "week-1" / "lesson.ipynb").read_text() == "{}\n"
    assert not (version / "leak.txt").exists()
    # --from-course takes the repository's instead.
    repo = publish_materials(entry, root=root, instructor_copy=copy, by="op", from_course=True)
    assert repo.source == "course" and "week-1/lesson.ipynb" in repo.removed


def test_only_a_plain_version_link_is_mounted(tmp_path: Path) -> None:
    folder = tmp_path / COURSE
    folder.mkdir()
    (folder / "v1").mkdir()
    for target in ("/etc", "../other", "v2", "v1/../.."):
        link = folder / "current"
        link.unlink(missing_ok=True)
        os.symlink(target, link)
        assert current_version(tmp_path, COURSE) is None, target
    (folder / "current").unlink()
    os.symlink("v1", folder / "current")
    assert current_version(tmp_path, COURSE) == folder / "v1"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        env={"PATH": os.environ["PATH"], "HOME": str(repo.parent), "GIT_CONFIG_NOSYSTEM": "1"},
    )


def test_the_operator_publishes_a_git_repository(
    entry: CourseEntry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`learnhub materials publish COURSE --git URL --path P`, from a local repository."""
    repo = tmp_path / "course-repo"
    (repo / "lessons").mkdir(parents=True)
    (repo / "lessons" / "intro.ipynb").write_text("{}\n")
    (repo / "README.md").write_text("not published: outside --path\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "first")
    data = tmp_path / "var"
    config = tmp_path / "learnhub.yaml"
    config.write_text(f"mode: demo\ncourses_dir: {entry.folder.parent}\nhub:\n  data_dir: {data}\n")
    argv = ["--config", str(config), "materials", "publish", COURSE, "--git", str(repo)]
    assert main([*argv, "--path", "lessons"], environ={}) == 0
    assert "published python-foundations v1 (from git " in capsys.readouterr().out
    version = current_version(data / "materials", COURSE)
    assert version is not None
    assert sorted(p.name for p in version.iterdir()) == [NOTICE, "intro.ipynb"]

    (repo / "lessons" / "intro.ipynb").write_text('{"cells": []}\n')
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", "two")
    assert main([*argv, "--path", "lessons"], environ={}) == 0
    out = capsys.readouterr().out
    assert "v2" in out and "changed: intro.ipynb" in out
    # A branch that is really an option, a folder outside the checkout: one line, status 2.
    assert main([*argv, "--branch", "--upload-pack=touch /tmp/x"], environ={}) == 2
    assert "is not a branch or tag name" in capsys.readouterr().err
    assert main([*argv, "--path", "../.."], environ={}) == 2
    assert "no such folder" in capsys.readouterr().err


def test_the_worker_runs_a_publish_job_without_nbgrader(entry: CourseEntry, tmp_path: Path) -> None:
    """The dashboard's "Publish materials" through the worker's run_job: a version, or a
    failure that says publishing failed (not an internal error) when the disk refuses."""
    from typing import Any

    from grader.worker import run_job
    from hub.courses import Catalog
    from hub.grading_jobs import JobStore, check_request, course_jobs, enqueue
    from hub.publishing import materials_root
    from hub.settings import load_settings
    from hub.store import Database, upgrade

    config = tmp_path / "learnhub.yaml"
    config.write_text(
        f"courses_dir: {tmp_path / 'courses'}\nhub:\n  data_dir: {tmp_path / 'var'}\n"
    )
    settings = load_settings(config, {})
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    db = Database(url)
    rows = JobStore(db)
    request = check_request(Catalog.load(settings.courses_dir), COURSE, "publish", "", {})

    def must_not_run(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("publishing needs no nbgrader course")

    def run() -> tuple[str, dict[str, Any]]:
        enqueue(db, request, "ted")
        claimed = rows.claim("host:1")
        assert claimed is not None
        outcome = run_job(settings, rows, claimed, token="t", course_factory=must_not_run)
        return outcome, course_jobs(db, COURSE)[0]

    try:
        outcome, view = run()
        assert outcome == "done" and view["progress"]["summary"]["version"] == "v1"
        assert current_version(materials_root(settings), COURSE) is not None
        shutil.rmtree(materials_root(settings))
        materials_root(settings).write_text("a file where the versions go\n")
        outcome, view = run()
        assert outcome == "failed" and view["error"].startswith("could not publish: ")
    finally:
        db.dispose()
