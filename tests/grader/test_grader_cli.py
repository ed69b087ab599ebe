"""`learnhub grader` as a new instructor runs it (issue #13): the real CLI, a real hub and
exchange, real nbgrader, real sandboxes.

The CLI is started by its absolute path (`.venv/bin/learnhub`) with a PATH that lacks the
venv's bin folder, as from a cron job or another shell. Learners' submissions go into the
hub's exchange through its storage (what the exchange's submit route calls); everything the
instructor does goes through the CLI. The tests run in order on one hub: release, formgrader
edits, two rounds of collect + autograde, export.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from grader.exchange.storage import ExchangeStorage
from harness.archives import targz, untargz
from hub.store import Database
from tests.harness import ROOT, HubProcess

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = "python-foundations"
ASSIGNMENT = "ps1-data-model"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
OTHER_COURSE = "algorithms-in-python"
LEARNHUB = ROOT / ".venv" / "bin" / "learnhub"
#: No venv here: nbgrader's gradebook shells out to `alembic`, which lives only in the venv.
BARE_PATH = "/usr/bin:/bin"
FORMGRADER_NOTE = "Edited in the formgrader: read the hints twice."


def learnhub(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``learnhub ARGS`` by absolute path, with the hub's settings and a bare PATH."""
    env = {**hub.env(), "PATH": BARE_PATH}
    result = subprocess.run(
        [str(LEARNHUB), *args],
        env=env,
        cwd=hub.workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    print(f"$ learnhub {' '.join(args)}\n{result.stdout}\n{result.stderr}")
    return result


def assert_clean_failure(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit status 2 and one line that says what to do; no traceback."""
    assert result.returncode == 2, result
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if " WARNING " not in line]
    assert len(lines) == 1 and lines[0].startswith("learnhub: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def storage(docker_hub: HubProcess) -> Iterator[ExchangeStorage]:
    """The hub's exchange storage, as its submit route uses it."""
    db = Database(f"sqlite:///{docker_hub.learnhub_db_path}")
    store = ExchangeStorage(docker_hub.data_dir / "service" / "exchange", db)
    try:
        yield store
    finally:
        store.close()
        db.dispose()


def submit(storage: ExchangeStorage, student: str, note: str = "") -> None:
    """``student`` hands in the released notebook, untouched or with one markdown cell added."""
    files = untargz(storage.released_archive(COURSE, ASSIGNMENT))
    if note:
        nb = nbformat.reads(files[NOTEBOOK].decode(), as_version=4)
        nb.cells.append(nbformat.v4.new_markdown_cell(note))
        files[NOTEBOOK] = nbformat.writes(nb).encode()
    storage.submit(COURSE, ASSIGNMENT, student, targz(files))
    give_to_service(storage.root)


def give_to_service(root: Path) -> None:
    """What this test wrote as root into the service's exchange, owned as the service's own
    writes are (by the owner of its folder), so the exchange can hand it to collect."""
    owner = root.stat()
    for folder, subfolders, files in os.walk(root):
        for name in [*subfolders, *files]:
            os.lchown(os.path.join(folder, name), owner.st_uid, owner.st_gid)


def graded(stdout: str) -> dict[str, str]:
    """Learner -> score from autograde's result lines."""
    scores = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith("learner-"):
            scores[parts[0]] = parts[1]
    return scores


def test_extend_on_a_fresh_gradebook_without_the_venv_on_path(docker_hub: HubProcess) -> None:
    result = learnhub(
        docker_hub, "grader", "extend", OTHER_COURSE, "ps1-search-sort", "--student",
        "learner-late", "--hours", "24",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "learner-late has 24 extra hours" in result.stdout


def test_export_before_the_first_release_says_what_to_do(docker_hub: HubProcess) -> None:
    result = learnhub(docker_hub, "grader", "export", COURSE, ASSIGNMENT)
    assert_clean_failure(result, "not released", f"learnhub grader release {COURSE} {ASSIGNMENT}")


def test_releasing_again_needs_force(docker_hub: HubProcess) -> None:
    first = learnhub(docker_hub, "grader", "release", COURSE, ASSIGNMENT)
    assert first.returncode == 0, first.stderr
    again = learnhub(docker_hub, "grader", "release", COURSE, ASSIGNMENT)
    assert_clean_failure(again, "already released", "--force")


def test_formgrader_edits_survive_and_the_course_repo_is_taken_on_request(
    docker_hub: HubProcess, courses_dir: Path, storage: ExchangeStorage, tmp_path: Path
) -> None:
    host = docker_hub.data_dir / "grader" / COURSE / "source" / ASSIGNMENT / NOTEBOOK
    copy = docker_hub.data_dir / "formgrader" / COURSE / "source" / ASSIGNMENT / NOTEBOOK
    # The instructor edits the source notebook in their course server's formgrader.
    nb = nbformat.read(copy, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(FORMGRADER_NOTE))
    nbformat.write(nb, copy)
    # Code in that server plants links to host files next to it (issue #11): what comes back
    # from the copy is regular files only, never what a link points to.
    secret = tmp_path / "host-secret.txt"
    secret.write_text("the host's own data\n")
    (copy.parent / "leak.txt").symlink_to(secret)
    (copy.parent / "leak-dir").symlink_to(tmp_path)

    released = learnhub(docker_hub, "grader", "release", COURSE, ASSIGNMENT, "--force")
    assert released.returncode == 0, released.stderr
    assert FORMGRADER_NOTE in host.read_text()
    assert not (host.parent / "leak.txt").exists()
    assert not (host.parent / "leak-dir").exists()
    assert "host's own data" not in json.dumps(
        untargz(storage.released_archive(COURSE, ASSIGNMENT)), default=str
    )
    (copy.parent / "leak.txt").unlink()
    (copy.parent / "leak-dir").unlink()
    assert FORMGRADER_NOTE in copy.read_text()
    student_version = untargz(storage.released_archive(COURSE, ASSIGNMENT))[NOTEBOOK]
    assert FORMGRADER_NOTE in student_version.decode()

    # Meanwhile the course repository changes too: the grading source is kept, and the
    # command says how to take the course's version instead.
    added = courses_dir / COURSE / "source" / ASSIGNMENT / "hints.txt"
    added.write_text("from the course repository\n")
    try:
        kept = learnhub(docker_hub, "grader", "release", COURSE, ASSIGNMENT, "--force")
        assert kept.returncode == 0, kept.stderr
        assert "--from-course" in kept.stderr
        assert not (host.parent / "hints.txt").exists()
        assert FORMGRADER_NOTE in host.read_text()

        taken = learnhub(
            docker_hub, "grader", "release", COURSE, ASSIGNMENT, "--force", "--from-course"
        )
        assert taken.returncode == 0, taken.stderr
        assert (host.parent / "hints.txt").read_text() == "from the course repository\n"
        assert FORMGRADER_NOTE not in host.read_text()
        assert FORMGRADER_NOTE not in copy.read_text()
    finally:
        added.unlink()


def test_autotest_cells_from_the_formgrader_never_run_on_the_host(
    docker_hub: HubProcess, tmp_path: Path
) -> None:
    # nbgrader's AUTOTEST expansion starts a kernel where `generate_assignment` runs and runs
    # the notebook's code there; sources edited in an instructor's server come back to the host.
    marker = tmp_path / "autotest-ran-on-host"
    copy = docker_hub.data_dir / "formgrader" / COURSE / "source" / ASSIGNMENT / NOTEBOOK
    original = copy.read_bytes()
    nb = nbformat.read(copy, as_version=4)
    test_cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    test_cell.source = (
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n### AUTOTEST 1\n"
        + test_cell.source
    )
    nbformat.write(nb, copy)
    # Enough of a template file for nbgrader to get to running the cell's code.
    (copy.parent / "autotests.yml").write_text(
        "python3:\n  templates: {default: ['assert True']}\n  dispatch: 'type({{snippet}})'\n"
        "  check: 'assert True'\n  normalize: '{{snippet}}'\n"
    )
    try:
        refused = learnhub(docker_hub, "grader", "release", COURSE, ASSIGNMENT, "--force")
        assert not marker.exists(), "the host ran the notebook's code"
        assert_clean_failure(refused, "AUTOTEST")
    finally:
        (copy.parent / "autotests.yml").unlink()
        copy.write_bytes(original)
    restored = learnhub(
        docker_hub, "grader", "release", COURSE, ASSIGNMENT, "--force", "--from-course"
    )
    assert restored.returncode == 0, restored.stderr


def test_autograde_grades_only_new_or_changed_submissions(
    docker_hub: HubProcess, storage: ExchangeStorage
) -> None:
    first = ["learner-a", "learner-b"]
    for student in first:
        submit(storage, student)
    collected = learnhub(docker_hub, "grader", "collect", COURSE, ASSIGNMENT)
    assert collected.returncode == 0, collected.stderr
    assert "collected 2 submissions" in collected.stdout
    assert "has changed" not in collected.stderr

    start = time.monotonic()
    round1 = learnhub(docker_hub, "grader", "autograde", COURSE, ASSIGNMENT)
    round1_s = time.monotonic() - start
    assert round1.returncode == 0, round1.stderr
    assert graded(round1.stdout) == dict.fromkeys(first, "0/10")
    # The untouched release restores its hidden tests in every learner's notebook: expected,
    # not worth a warning per cell and learner (nbgrader's "checksum ... has changed").
    assert "has changed" not in round1.stderr, round1.stderr
    assert "WARNING" not in round1.stderr and "Warning" not in round1.stderr, round1.stderr

    # Round 2: one new learner and one who handed in again; the third is not regraded.
    submit(storage, "learner-d")
    submit(storage, "learner-a", note="second try")
    assert learnhub(docker_hub, "grader", "collect", COURSE, ASSIGNMENT).returncode == 0
    start = time.monotonic()
    round2 = learnhub(docker_hub, "grader", "autograde", COURSE, ASSIGNMENT)
    round2_s = time.monotonic() - start
    assert round2.returncode == 0, round2.stderr
    assert graded(round2.stdout) == {"learner-a": "0/10", "learner-d": "0/10"}
    assert "skipped 1 unchanged submission (learner-b)" in round2.stdout
    assert "WARNING" not in round2.stderr, round2.stderr
    print(f"autograde: round 1 (2 new) {round1_s:.1f} s, round 2 (2 of 3) {round2_s:.1f} s")

    one = learnhub(docker_hub, "grader", "autograde", COURSE, ASSIGNMENT, "--student", "learner-b")
    assert one.returncode == 0, one.stderr
    assert graded(one.stdout) == {"learner-b": "0/10"}
    assert "skipped" not in one.stdout

    unknown = learnhub(
        docker_hub, "grader", "autograde", COURSE, ASSIGNMENT, "--student", "learner-zz"
    )
    assert_clean_failure(unknown, "learner-zz", "collect")

    start = time.monotonic()
    everyone = learnhub(docker_hub, "grader", "autograde", COURSE, ASSIGNMENT, "--all")
    print(f"autograde --all (3 of 3, as every run did before) {time.monotonic() - start:.1f} s")
    assert everyone.returncode == 0, everyone.stderr
    assert set(graded(everyone.stdout)) == {"learner-a", "learner-b", "learner-d"}


def test_export_carries_utc_submission_times(docker_hub: HubProcess) -> None:
    exported = learnhub(docker_hub, "grader", "export", COURSE, ASSIGNMENT)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert {row["student"] for row in rows} == {"learner-a", "learner-b", "learner-d"}
    for row in rows:
        moment = datetime.fromisoformat(row["submitted_at"])
        assert moment.utcoffset() == timedelta(0), row
        assert row["submitted_at"].endswith("+00:00"), row
