"""Benchmark: LearnHub sandboxed parallel autograde vs stock serial `nbgrader autograde`.

Both grade the same submissions (copies of the reference solution of
``python-foundations/ps1-data-model`` under N student ids) in two separate temp course
copies, in the same run. Needs the Docker engine and ``learnhub/singleuser:latest``.

    .venv/bin/python benchmarks/autograde.py [--students 20] [--parallel N] [--serial-sandbox]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader.autograde import autograde_submissions  # noqa: E402
from grader.sandbox import SandboxPolicy  # noqa: E402

COURSE_ID = "python-foundations"
ASSIGNMENT = "ps1-data-model"
SOURCE = REPO / "courses" / COURSE_ID / "source" / ASSIGNMENT
VENV_BIN = str(Path(sys.executable).parent)


def nbgrader(cwd: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=cwd, check=True, capture_output=True
    )


def make_course(root: Path, students: list[str]) -> None:
    from nbgrader.api import Gradebook

    shutil.copytree(SOURCE, root / "source" / ASSIGNMENT)
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        f"c.CourseDirectory.db_url = {db_url!r}\n"
        "c.Execute.timeout = 120\n"
    )
    with Gradebook(db_url, course_id=COURSE_ID) as gb:
        gb.add_assignment(ASSIGNMENT)
    nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    for student in students:
        dest = root / "submitted" / student / ASSIGNMENT
        dest.mkdir(parents=True)
        shutil.copy(SOURCE / f"{ASSIGNMENT}.ipynb", dest)


def scores(root: Path) -> list[float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id=COURSE_ID) as gb:
        return [s.score for s in gb.find_assignment(ASSIGNMENT).submissions]


def report(label: str, seconds: float, n: int, got: list[float]) -> None:
    ok = sum(1 for s in got if s == 10)
    print(
        f"{label:<38} {seconds:7.1f} s total  {seconds / n:5.2f} s/submission  {ok}/{n} full marks"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--serial-sandbox", action="store_true", help="also sandboxed, 1 worker")
    args = parser.parse_args()
    os.environ["PATH"] = VENV_BIN + os.pathsep + os.environ.get("PATH", "")
    students = [f"student{i:02d}" for i in range(args.students)]
    policy = SandboxPolicy(name_prefix="learnhub-bench-sandbox-")
    with tempfile.TemporaryDirectory(prefix="learnhub-bench-") as tmp:
        runs: list[tuple[str, Path, int | None]] = [
            (f"sandboxed, parallel={args.parallel}", Path(tmp) / "sandboxed", args.parallel),
            ("stock nbgrader autograde, serial", Path(tmp) / "stock", None),
        ]
        if args.serial_sandbox:
            runs.insert(1, ("sandboxed, parallel=1", Path(tmp) / "sandboxed-serial", 1))
        for _, root, _ in runs:
            make_course(root, students)
        print(f"{args.students} submissions of {COURSE_ID}/{ASSIGNMENT}, {os.cpu_count()} cores")
        for label, root, parallel in runs:
            started = time.perf_counter()
            if parallel is None:
                nbgrader(root, "autograde", ASSIGNMENT, "--force")
            else:
                autograde_submissions(root, ASSIGNMENT, students, policy=policy, parallel=parallel)
            report(label, time.perf_counter() - started, len(students), scores(root))


if __name__ == "__main__":
    main()
