"""The HTTP exchange driven by nbgrader's own apps, as subprocesses, on a real course.

Instructor: generate_assignment -> release_assignment -> list --inbound -> collect -> autograde
-> generate_feedback -> release_feedback. Learners: list -> fetch_assignment -> submit (twice)
-> list --cached -> fetch_feedback. Plus the Assignments tab's own code path (nbgrader's
``AssignmentList`` server-extension class) and the refusals a learner sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.exchange.conftest import COURSE, PREFIX, Exchange

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "courses" / COURSE / "source" / "ps1-data-model"
AID = "ps1-data-model"
VENV_BIN = str(Path(sys.executable).parent)

CONFIG = """\
from learnhub_container.exchange import configure_nbgrader
c = get_config()
configure_nbgrader(c, {course!r})
{extra}
"""


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the server's database is covered on both engines by test_server."""
    return f"sqlite:///{tmp_path / 'learnhub.sqlite'}"


class Person:
    """Someone running nbgrader in their own folder with their own token."""

    def __init__(self, folder: Path, token: str, exchange: Exchange, extra: str = "") -> None:
        self.folder = folder
        self.token = token
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "nbgrader_config.py").write_text(CONFIG.format(course=COURSE, extra=extra))
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUPYTERHUB_", "LEARNHUB_", "JUPYTER_"))
        }
        self.env.update(
            {
                "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
                "LEARNHUB_EXCHANGE_URL": exchange.base.rsplit("v1/courses/", 1)[0],
                "JUPYTERHUB_API_TOKEN": token,
                # Keep the developer's own Jupyter config out of the test.
                "JUPYTER_CONFIG_DIR": str(folder / ".jupyter"),
                "JUPYTER_DATA_DIR": str(folder / ".jupyter-data"),
            }
        )

    async def run(
        self, *args: str, ok: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `nbgrader ARGS` in this person's folder (``env``: instead of theirs)."""
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "nbgrader", *args],
            cwd=self.folder,
            env=self.env if env is None else env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if ok and result.returncode != 0:
            pytest.fail(f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        if not ok:
            assert result.returncode != 0, f"nbgrader {' '.join(args)} should have failed"
        return result

    async def python(self, code: str) -> str:
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", code],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


def solve(notebook: Path) -> None:
    """Replace the release notebook's answer cells by the reference solution's."""
    solution = nbformat.read(next(SOURCE.glob("*.ipynb")), as_version=4)
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in solution.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = (
                answers[grade_id]
                .replace("### BEGIN SOLUTION\n", "")
                .replace("### END SOLUTION", "")
            )
    nbformat.write(nb, notebook)


ASSIGNMENT_TAB = """
import json, os
from nbgrader.server_extensions.assignment_list.handlers import AssignmentList
lister = AssignmentList()
lister.root_dir = os.getcwd()
out = {{"courses": lister.list_courses()}}
{calls}
print(json.dumps(out, default=str))
"""


async def test_full_cycle_with_nbgrader_apps(exchange: Exchange, tmp_path: Path) -> None:
    gradebook = f"sqlite:///{tmp_path / 'gradebook.db'}"
    instructor = Person(
        tmp_path / "instructor",
        "tok-inst",
        exchange,
        extra=f"c.CourseDirectory.db_url = {gradebook!r}\nc.Execute.timeout = 120\n",
    )
    shutil.copytree(SOURCE, instructor.folder / "source" / AID)
    alice = Person(tmp_path / "alice", "tok-alice", exchange)
    bob = Person(tmp_path / "bob", "tok-bob", exchange)
    eve = Person(tmp_path / "eve", "tok-eve", exchange)

    # Steps of different people that do not depend on each other run at the same time, as
    # they would in a class (each nbgrader command is a new Python process: seconds of CPU).
    # Nothing released yet; a learner's list is empty, fetching fails with the server's word.
    empty, failed = await asyncio.gather(
        alice.run("list"), alice.run("fetch_assignment", AID, ok=False)
    )
    assert "Released assignments:" in empty.stderr
    assert "is released in" in failed.stderr

    await instructor.run("generate_assignment", AID, "--force")
    released = await instructor.run("release_assignment", AID)
    assert f"Released as: {COURSE} {AID}" in released.stderr

    async def release_again() -> None:
        again = await instructor.run("release_assignment", AID, ok=False)
        assert "--force" in again.stderr
        await instructor.run("release_assignment", AID, "--force")

    async def learner_cannot_release() -> None:
        shutil.copytree(instructor.folder / "release", alice.folder / "release")
        assert "instructor access" in (await alice.run("release_assignment", AID, ok=False)).stderr
        shutil.rmtree(alice.folder / "release")

    await asyncio.gather(release_again(), learner_cannot_release())

    notebook = alice.folder / AID / f"{AID}.ipynb"

    async def alice_fetches() -> None:
        listed = await alice.run("list")
        assert f"{COURSE} {AID}" in listed.stderr and "already downloaded" not in listed.stderr
        await alice.run("fetch_assignment", AID)
        assert notebook.is_file()
        assert "BEGIN HIDDEN TESTS" not in notebook.read_text()
        listed_again, fetched_again = await asyncio.gather(
            alice.run("list"), alice.run("fetch_assignment", AID, ok=False)
        )
        assert "already downloaded" in listed_again.stderr
        assert "already have a copy" in fetched_again.stderr
        # Alice submits an unfinished version, then the solved one; both are kept.
        first = await alice.run("submit", AID)
        assert f"Submitted as: {COURSE} {AID}" in first.stderr
        solve(notebook)
        await alice.run("submit", AID)

    async def non_member_is_refused() -> None:
        # A non-member is refused by the server with a clear message.
        refused = await eve.run("fetch_assignment", AID, ok=False)
        assert f"you do not have access to course {COURSE}" in refused.stderr
        assert not (eve.folder / AID).exists()

    async def bob_submits() -> None:
        await bob.run("fetch_assignment", AID)
        await bob.run("submit", AID)

    await asyncio.gather(alice_fetches(), non_member_is_refused(), bob_submits())
    cached, inbound, not_inbound = await asyncio.gather(
        alice.run("list", "--cached"),
        instructor.run("list", "--inbound"),
        alice.run("list", "--inbound", ok=False),
    )
    assert cached.stderr.count(f"{COURSE} alice {AID}") == 2 and "bob" not in cached.stderr
    assert inbound.stderr.count(f"{COURSE} alice {AID}") == 2
    assert f"{COURSE} bob {AID}" in inbound.stderr
    # The learner cannot list everyone's submissions.
    assert "instructor access" in not_inbound.stderr

    # Collect takes the newest per student; the timestamp is the server's.
    collected = await instructor.run("collect", AID)
    assert "Collecting submission: alice" in collected.stderr
    submitted = instructor.folder / "submitted" / "alice" / AID
    subs = exchange.storage.submissions(COURSE, student="alice")
    assert (submitted / "timestamp.txt").read_text() == subs[-1].timestamp
    assert (submitted / f"{AID}.ipynb").read_bytes() == notebook.read_bytes()
    again = await instructor.run("collect", AID)
    assert "already exists, use --update" in again.stderr

    await instructor.run("autograde", AID, "--create")
    await instructor.run("generate_feedback", AID)
    await instructor.run("release_feedback", AID)

    async def alice_gets_feedback() -> None:
        fetched = await alice.run("fetch_feedback", AID)
        assert "Fetched feedback" in fetched.stderr
        assert "feedback already fetched" in (await alice.run("list", "--cached")).stderr

    await asyncio.gather(alice_gets_feedback(), bob.run("fetch_feedback", AID))
    [html] = list((alice.folder / AID / "feedback").glob("*/*.html"))
    assert html.parent.name == subs[-1].timestamp
    assert "Score" in html.read_text() or "score" in html.read_text()
    # Bob's feedback is his, and alice's never reaches him.
    bob_files = list((bob.folder / AID / "feedback").glob("*/*.html"))
    assert len(bob_files) == 1 and bob_files[0].read_bytes() != html.read_bytes()

    # The Assignments tab's own calls (nbgrader's AssignmentList, as the server extension uses).
    calls = f"""
out["assignments"] = lister.list_assignments(course_id={COURSE!r})
out["fetch_feedback"] = lister.fetch_feedback({COURSE!r}, {AID!r})
"""
    tab = json.loads(await alice.python(ASSIGNMENT_TAB.format(calls=calls)))
    assert tab["courses"] == {"success": True, "value": [COURSE]}
    assert tab["assignments"]["success"], tab
    by_status = {a["status"]: a for a in tab["assignments"]["value"]}
    assert by_status["fetched"]["path"] == AID
    assert by_status["fetched"]["notebooks"][0]["notebook_id"] == AID
    submitted_view = by_status["submitted"]
    assert submitted_view["student_id"] == "alice" and len(submitted_view["submissions"]) == 2
    newest = submitted_view["submissions"][-1]
    assert newest["has_exchange_feedback"] and newest["has_local_feedback"]
    assert not newest["feedback_updated"]
    assert tab["fetch_feedback"] == {"success": True}


async def test_assignment_tab_fetch_and_submit(exchange: Exchange, tmp_path: Path) -> None:
    """Fetch and submit from the Assignments tab's code path, and its error shape."""
    instructor = Person(tmp_path / "instructor", "tok-inst", exchange)
    release = instructor.folder / "release" / AID
    release.mkdir(parents=True)
    (release / f"{AID}.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    dave = Person(tmp_path / "dave", "tok-dave", exchange)
    eve = Person(tmp_path / "eve", "tok-eve", exchange)
    calls = f"""
out["released"] = lister.list_released_assignments(course_id={COURSE!r})
out["fetch"] = lister.fetch_assignment({COURSE!r}, {AID!r})
out["submit"] = lister.submit_assignment({COURSE!r}, {AID!r})
out["submitted"] = lister.list_submitted_assignments(course_id={COURSE!r})
"""

    async def release_then_dave() -> str:
        await instructor.run("release_assignment", AID)
        return await dave.python(ASSIGNMENT_TAB.format(calls=calls))

    # Eve's tab needs nothing released: her process runs while the release and Dave's run.
    dave_out, eve_out = await asyncio.gather(
        release_then_dave(), eve.python(ASSIGNMENT_TAB.format(calls=""))
    )
    tab = json.loads(dave_out)
    assert tab["released"]["value"][0]["status"] == "released"
    assert tab["fetch"] == {"success": True} and tab["submit"] == {"success": True}
    [assignment] = tab["submitted"]["value"]
    assert assignment["student_id"] == "d@ve.o'neil"
    assert (dave.folder / AID / f"{AID}.ipynb").is_file()

    tab = json.loads(eve_out)
    assert tab["courses"]["success"] is False  # the tab shows the error instead of a list


async def test_client_reports_413_and_unreachable(exchange: Exchange, tmp_path: Path) -> None:
    instructor = Person(tmp_path / "instructor", "tok-inst", exchange)
    release = instructor.folder / "release" / AID
    release.mkdir(parents=True)
    (release / f"{AID}.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    await instructor.run("release_assignment", AID)
    alice = Person(tmp_path / "alice", "tok-alice", exchange)
    await alice.run("fetch_assignment", AID)
    (alice.folder / AID / "data.bin").write_bytes(os.urandom(300 * 1024))
    unreachable = dict(alice.env, LEARNHUB_EXCHANGE_URL=f"http://127.0.0.1:9{PREFIX}exchange/")
    unconfigured = {k: v for k, v in alice.env.items() if k != "LEARNHUB_EXCHANGE_URL"}
    # Three independent commands (each a new Python process), at the same time.
    too_big, down, unset = await asyncio.gather(
        alice.run("submit", AID, ok=False),
        alice.run("list", ok=False, env=unreachable),
        alice.run("list", ok=False, env=unconfigured),
    )
    assert "(413)" in too_big.stderr and "limit" in too_big.stderr
    assert "Cannot reach the LearnHub exchange" in down.stderr
    assert "not configured" in unset.stderr
