"""Content checks for the demo courses in ``courses/``.

For every ``courses/*/course.yaml`` this verifies that:

* the manifest follows the platform schema and every assignment has a source folder;
* every teaching notebook in ``materials/`` runs top to bottom without errors;
* ``nbgrader generate_assignment`` strips solutions and hidden tests from the release;
* the reference solution (the source notebook) autogrades to full marks, and the
  unmodified release notebook autogrades to zero.

No Docker is needed; nbgrader and the ``python3`` kernel come from the project venv.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
import yaml

from hub.courses import Course
from tests.harness import run_nbgrader

REPO = Path(__file__).resolve().parents[1]
COURSES_DIR = REPO / "courses"
COURSE_FILES = sorted(COURSES_DIR.glob("*/course.yaml"))

#: Every key course.yaml may have is a field of the platform's model (unknown keys are errors).
TOP_KEYS = set(Course.model_fields)
#: What the demo courses must fill in (image, grading, internet, pacing and community rules are
#: optional: a course without rules shows the default ones).
REQUIRED_KEYS = TOP_KEYS - {"image", "grading", "internet", "pacing", "community_rules"}
ID_RE = re.compile(r"^[a-z0-9-]{1,40}$")
EXPECTED_POINTS = 10


def _load(course_yaml: Path) -> dict:
    with course_yaml.open() as fh:
        return yaml.safe_load(fh)


def _assignments() -> list[tuple[Path, str]]:
    out = []
    for course_yaml in COURSE_FILES:
        for assignment in _load(course_yaml).get("assignments", []):
            out.append((course_yaml.parent, assignment["id"]))
    return out


def _materials() -> list[Path]:
    return sorted(p for c in COURSE_FILES for p in (c.parent / "materials").glob("*.ipynb"))


def _rel(p: Path) -> str:
    return str(p.relative_to(COURSES_DIR))


def test_courses_exist() -> None:
    ids = {p.parent.name for p in COURSE_FILES}
    assert {"python-foundations", "algorithms-in-python"} <= ids


# --------------------------------------------------------------------------- manifest
@pytest.mark.parametrize("course_yaml", COURSE_FILES, ids=lambda p: p.parent.name)
def test_manifest(course_yaml: Path) -> None:
    course_dir = course_yaml.parent
    data = _load(course_yaml)
    assert set(data) <= TOP_KEYS, f"unknown keys: {set(data) - TOP_KEYS}"
    assert REQUIRED_KEYS <= set(data), f"missing keys: {REQUIRED_KEYS - set(data)}"
    assert data["id"] == course_dir.name and ID_RE.match(data["id"])
    for key in ("title", "summary", "description"):
        assert isinstance(data[key], str) and data[key].strip()
    assert set(data["price"]) == {"amount", "currency"}
    assert isinstance(data["price"]["amount"], int) and data["price"]["amount"] > 0
    assert data["price"]["currency"] == "usd"
    assert set(data["limits"]) == {"memory", "cpu"}
    assert re.fullmatch(r"\d+(\.\d+)?[KMG]", str(data["limits"]["memory"]))
    assert float(data["limits"]["cpu"]) > 0
    assert data["instructors"] and all(isinstance(i, str) for i in data["instructors"])
    for key in ("syllabus", "outcomes"):
        assert data[key] and all(isinstance(s, str) and s.strip() for s in data[key])

    assert data["assignments"], "a course needs at least one assignment"
    seen = set()
    for a in data["assignments"]:
        assert set(a) == {"id", "title", "due"}, a
        assert ID_RE.match(a["id"]) and a["id"] not in seen
        seen.add(a["id"])
        due = a["due"]
        if isinstance(due, str):
            due = dt.datetime.fromisoformat(due.replace("Z", "+00:00"))
        assert isinstance(due, dt.datetime) and due.tzinfo is not None, a
        src = course_dir / "source" / a["id"]
        assert src.is_dir() and src.name == a["id"]
        assert list(src.glob("*.ipynb")), f"no notebook in {src}"

    materials = course_dir / "materials"
    assert len(list(materials.glob("*.ipynb"))) >= 3
    assert (materials / "README.md").is_file()


@pytest.mark.parametrize("course_yaml", COURSE_FILES, ids=lambda p: p.parent.name)
def test_platform_validator_accepts(course_yaml: Path) -> None:
    """The hub's own catalog loader (pydantic, unknown keys rejected) accepts the course."""
    from hub.courses import load_course

    entry = load_course(course_yaml.parent)
    assert entry.course.id == course_yaml.parent.name
    assert [a.id for a in entry.course.assignments] == [
        a["id"] for a in _load(course_yaml)["assignments"]
    ]


@pytest.mark.parametrize("course_yaml", COURSE_FILES, ids=lambda p: p.parent.name)
def test_expected_prices_and_limits(course_yaml: Path) -> None:
    data = _load(course_yaml)
    expected = {
        "python-foundations": (4900, "1G"),
        "algorithms-in-python": (6900, "1536M"),
    }.get(data["id"])
    if expected:
        assert (data["price"]["amount"], str(data["limits"]["memory"])) == expected
        assert float(data["limits"]["cpu"]) == 1.0


# --------------------------------------------------------------------------- notebooks
@pytest.mark.parametrize("path", _materials(), ids=_rel)
def test_material_notebook_runs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "outputs stored"
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert not errors


def _source_notebooks(course_dir: Path, aid: str) -> list[Path]:
    return sorted((course_dir / "source" / aid).glob("*.ipynb"))


def _between(text: str, begin: str, end: str) -> list[str]:
    return re.findall(rf"{re.escape(begin)}\n?(.*?){re.escape(end)}", text, flags=re.S)


@pytest.mark.parametrize("course_dir,aid", _assignments(), ids=lambda v: getattr(v, "name", v))
def test_source_notebook_metadata(course_dir: Path, aid: str) -> None:
    for nb_path in _source_notebooks(course_dir, aid):
        nb = nbformat.read(nb_path, as_version=4)
        nbformat.validate(nb)
        grade_ids, points, graded_parts = [], 0, 0
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None
            meta = cell.metadata.get("nbgrader")
            if meta is None:
                continue
            assert meta["schema_version"] == 3
            grade_ids.append(meta["grade_id"])
            if meta.get("locked"):
                assert cell.metadata.get("editable") is False
                assert cell.metadata.get("deletable") is False
            if meta.get("solution"):
                assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
            if meta.get("grade"):
                graded_parts += 1
                points += meta["points"]
                assert "assert" in cell.source and "### BEGIN HIDDEN TESTS" in cell.source
        assert len(grade_ids) == len(set(grade_ids)), "duplicate grade_id"
        assert 3 <= graded_parts <= 5
        assert points == EXPECTED_POINTS


# --------------------------------------------------------------------------- nbgrader
VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture
def nbgrader_course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # nbgrader's Gradebook shells out to the `alembic` script, which lives next to the
    # interpreter in the venv; make sure it is found even if the venv is not activated.
    monkeypatch.setenv("PATH", VENV_BIN + os.pathsep + os.environ.get("PATH", ""))

    def make(course_dir: Path, aid: str) -> tuple[Path, str]:
        root = tmp_path / "course"
        shutil.copytree(course_dir / "source" / aid, root / "source" / aid)
        db_url = f"sqlite:///{tmp_path / 'gradebook.db'}"
        (root / "nbgrader_config.py").write_text(
            "c = get_config()\n"
            f"c.CourseDirectory.root = {str(root)!r}\n"
            f"c.CourseDirectory.course_id = {course_dir.name!r}\n"
            f"c.CourseDirectory.db_url = {db_url!r}\n"
            "c.Execute.timeout = 120\n"
        )
        from nbgrader.api import Gradebook

        with Gradebook(db_url, course_id=course_dir.name) as gb:
            gb.add_assignment(aid)
            gb.add_student("alice")
            gb.add_student("bob")
        return root, db_url

    return make


@pytest.mark.parametrize("course_dir,aid", _assignments(), ids=lambda v: getattr(v, "name", v))
def test_nbgrader_roundtrip(course_dir: Path, aid: str, nbgrader_course) -> None:
    from nbgrader.api import Gradebook

    root, db_url = nbgrader_course(course_dir, aid)
    run_nbgrader(root, "generate_assignment", aid, "--force")

    sources = _source_notebooks(course_dir, aid)
    for src in sources:
        release = root / "release" / aid / src.name
        assert release.is_file(), f"missing release notebook {release}"
        release_text = release.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in release_text

        # No line of the reference solution or hidden tests may leak, unless the same
        # line also appears in the public part of the source notebook.
        src_nb = nbformat.read(src, as_version=4)
        secret, public = set(), set()
        for cell in src_nb.cells:
            text = cell.source + "\n"
            hidden = _between(text, "### BEGIN SOLUTION", "### END SOLUTION")
            hidden += _between(text, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
            for block in hidden:
                secret.update(line.strip() for line in block.splitlines())
                text = text.replace(block, "")
            public.update(line.strip() for line in text.splitlines())
        leaked = {s for s in secret - public if len(s) > 3}
        rel_nb = nbformat.read(release, as_version=4)
        release_lines = {line.strip() for cell in rel_nb.cells for line in cell.source.splitlines()}
        assert not (leaked & release_lines), f"leaked: {sorted(leaked & release_lines)}"
        n_solution = sum(1 for c in rel_nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
        assert release_text.count("raise NotImplementedError()") >= n_solution > 0

        # alice submits the reference solution, bob the untouched release notebook.
        for student, nb_file in (("alice", src), ("bob", release)):
            dest = root / "submitted" / student / aid / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(nb_file, dest)

    run_nbgrader(root, "autograde", aid, "--force")

    with Gradebook(db_url, course_id=course_dir.name) as gb:
        assert gb.find_assignment(aid).max_score == EXPECTED_POINTS
        alice = gb.find_submission(aid, "alice")
        bob = gb.find_submission(aid, "bob")
        details = {g.name: (g.score, g.max_score) for nb in alice.notebooks for g in nb.grades}
        assert alice.score == EXPECTED_POINTS, f"alice: {alice.score} {details}"
        assert bob.score == 0, f"bob: {bob.score}"
