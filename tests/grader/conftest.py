"""Fixtures for the sandboxed autograde tests: a real nbgrader course in a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from grader.sandbox import SandboxPolicy
from tests.harness import TEST_PREFIX, run_nbgrader

REPO = Path(__file__).resolve().parents[2]
COURSE_ID = "python-foundations"
ASSIGNMENT = "ps1-data-model"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
SOURCE = REPO / "courses" / COURSE_ID / "source" / ASSIGNMENT
VENV_BIN = str(Path(sys.executable).parent)
#: Under this session's test prefix: cleaned up with the session's other containers, and left
#: alone by any other session running at the same time (tests/harness.py).
SANDBOX_PREFIX = f"{TEST_PREFIX}-sandbox-"
IMAGE = "learnhub/singleuser:latest"


def short_policy(**overrides: object) -> SandboxPolicy:
    """Short limits so hostile notebooks are stopped quickly."""
    values: dict[str, object] = {
        "image": IMAGE,
        "memory": "256m",
        "cell_timeout": 10,
        "notebook_timeout": 60.0,
        "name_prefix": SANDBOX_PREFIX,
    }
    values.update(overrides)
    return SandboxPolicy(**values)  # type: ignore[arg-type]


def sandbox_containers() -> list[str]:
    """Names of sandbox containers left on the engine."""
    client = docker.from_env()
    try:
        return [
            c.name
            for c in client.containers.list(all=True, filters={"name": f"^/{SANDBOX_PREFIX}"})
        ]
    finally:
        client.close()


@pytest.fixture(scope="session")
def sandbox_engine() -> Iterator[None]:
    """A Docker engine with the course image. Fails (never skips) when missing."""
    result = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail("Docker engine not reachable:\n" + result.stderr)
    image = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False)
    if image.returncode != 0:
        pytest.fail(f"image {IMAGE} missing: build it with hub/images.py (never pulled)")
    for name in sandbox_containers():
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    yield
    leftovers = sandbox_containers()
    for name in leftovers:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    assert not leftovers, f"sandbox containers left behind: {leftovers}"


def make_course(root: Path, source: Path = SOURCE) -> Path:
    """A temp nbgrader course with the assignment generated (release + gradebook).

    ``source`` is an assignment folder of a demo course (default: ps1-data-model).
    """
    course_id, assignment = source.parents[1].name, source.name
    shutil.copytree(source, root / "source" / assignment)
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.course_id = {course_id!r}\n"
        f"c.CourseDirectory.db_url = {db_url!r}\n"
    )
    from nbgrader.api import Gradebook

    with Gradebook(db_url, course_id=course_id) as gb:
        gb.add_assignment(assignment)
    run_nbgrader(root, "generate_assignment", assignment, "--force")
    return root


@pytest.fixture(autouse=True)
def _venv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # nbgrader's Gradebook shells out to `alembic`, which lives next to the interpreter.
    monkeypatch.setenv("PATH", VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
