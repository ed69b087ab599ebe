"""Benchmark: LearnHub sandboxed parallel autograde vs stock serial `nbgrader autograde`.

Both grade the same submissions (copies of the reference solution of
``python-foundations/ps1-data-model`` under N student ids) in two separate temp course
copies, in the same run. Needs the Docker engine and ``learnhub/singleuser:latest``.

    .venv/bin/python benchmarks/autograde.py [--students 20] [--parallel N] [--serial-sandbox]

Besides wall time it reports CPU-seconds per submission, because 2 cores bound what
parallelism can buy: the grading process's own (LearnHub: nbgrader + Docker API calls;
stock: the ``nbgrader autograde`` process and its kernels), the sandbox containers' (as
each runner reads its cgroup), and the whole machine's from ``/proc/stat``, which includes
the Docker daemons and anything else running. The load average is recorded at each start.
``run()`` returns the numbers (``benchmarks/run.py`` uses it).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader.autograde import GradeResult, autograde_submissions, default_parallel  # noqa: E402
from grader.sandbox import SandboxPolicy  # noqa: E402
from harness.nbgrader import run_nbgrader  # noqa: E402

COURSE_ID = "python-foundations"
ASSIGNMENT = "ps1-data-model"
SOURCE = REPO / "courses" / COURSE_ID / "source" / ASSIGNMENT
VENV_BIN = str(Path(sys.executable).parent)


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
    run_nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    for student in students:
        dest = root / "submitted" / student / ASSIGNMENT
        dest.mkdir(parents=True)
        shutil.copy(SOURCE / f"{ASSIGNMENT}.ipynb", dest)


def scores(root: Path) -> list[float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id=COURSE_ID) as gb:
        return [s.score for s in gb.find_assignment(ASSIGNMENT).submissions]


def _machine_cpu_seconds() -> float:
    """Busy CPU-seconds of the whole machine so far (all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _process_cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure(root: Path, students: list[str], parallel: int | None) -> dict[str, Any]:
    """Grade ``root`` once (``parallel`` None: stock ``nbgrader autograde``); the numbers."""
    n = len(students)
    load = os.getloadavg()[0]
    who = resource.RUSAGE_SELF if parallel is not None else resource.RUSAGE_CHILDREN
    cpu0, machine0 = _process_cpu_seconds(who), _machine_cpu_seconds()
    started = time.perf_counter()
    results: list[GradeResult] = []
    if parallel is None:
        run_nbgrader(root, "autograde", ASSIGNMENT, "--force")
    else:
        policy = SandboxPolicy(name_prefix="learnhub-bench-sandbox-")
        results = autograde_submissions(
            root, ASSIGNMENT, students, policy=policy, parallel=parallel
        )
    seconds = time.perf_counter() - started
    process_cpu = _process_cpu_seconds(who) - cpu0
    machine_cpu = _machine_cpu_seconds() - machine0
    got = scores(root)
    out: dict[str, Any] = {
        "seconds": seconds,
        "per_submission_s": seconds / n,
        "graded": len(got),
        "full_marks": sum(1 for s in got if s == 10),
        "process_cpu_s_per_submission": process_cpu / n,
        "machine_cpu_s_per_submission": machine_cpu / n,
        "loadavg_1m_at_start": load,
        "loadavg_1m_at_end": os.getloadavg()[0],
    }
    sandboxes = [meta for r in results for meta in r.notebooks.values()]
    if sandboxes:
        container_cpu = [m["cpu_seconds"] for m in sandboxes if m.get("cpu_seconds") is not None]
        out["container_cpu_s_per_submission"] = sum(container_cpu) / n
        out["sandbox_s_median"] = statistics.median(m["seconds"] for m in sandboxes)
    return out


def run(
    students: int = 20, parallel: int | None = None, serial_sandbox: bool = False
) -> dict[str, Any]:
    """Stock serial autograde and LearnHub's sandboxed one on the same submissions.

    ``parallel`` defaults to LearnHub's own default (``grader.autograde.default_parallel``).
    """
    os.environ["PATH"] = VENV_BIN + os.pathsep + os.environ.get("PATH", "")
    ids = [f"student{i:02d}" for i in range(students)]
    workers = parallel if parallel is not None else default_parallel()
    runs: list[tuple[str, int | None]] = [("sandboxed", workers), ("stock", None)]
    if serial_sandbox:
        runs.insert(1, ("sandboxed_serial", 1))
    out: dict[str, Any] = {"students": students, "parallel": workers, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="learnhub-bench-") as tmp:
        for label, _ in runs:
            make_course(Path(tmp) / label, ids)
        for label, workers_or_stock in runs:
            out[label] = measure(Path(tmp) / label, ids, workers_or_stock)
    return out


def report(label: str, m: dict[str, Any], n: int) -> None:
    cpu = f"CPU-s/submission: process {m['process_cpu_s_per_submission']:.2f}"
    if "container_cpu_s_per_submission" in m:
        cpu += f", containers {m['container_cpu_s_per_submission']:.2f}"
    cpu += f", machine {m['machine_cpu_s_per_submission']:.2f}"
    print(
        f"{label:<34} {m['seconds']:6.1f} s  {m['per_submission_s']:5.2f} s/submission  "
        f"{m['full_marks']}/{n} full marks  {cpu}  "
        f"(load {m['loadavg_1m_at_start']:.1f} at start)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=None, help="default: LearnHub's")
    parser.add_argument("--serial-sandbox", action="store_true", help="also sandboxed, 1 worker")
    args = parser.parse_args()
    out = run(args.students, args.parallel, args.serial_sandbox)
    n = out["students"]
    print(f"{n} submissions of {COURSE_ID}/{ASSIGNMENT}, {out['cores']} cores")
    report(f"sandboxed, parallel={out['parallel']}", out["sandboxed"], n)
    if "sandboxed_serial" in out:
        report("sandboxed, parallel=1", out["sandboxed_serial"], n)
    report("stock nbgrader autograde, serial", out["stock"], n)


if __name__ == "__main__":
    main()
