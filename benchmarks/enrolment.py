"""Enrolling a class: one `learnhub grant` per name vs one roster (a measurement, not a test).

    .venv/bin/python benchmarks/enrolment.py [--members 200] [--sequential 200]
        [--baseline-python /work/main/.venv/bin/python]

Starts a real LearnHub hub (JupyterHub + proxy + the LearnHub service, SQLite, the `local`
spawner: no server is started) on loopback with the demo courses, makes ``--members`` accounts
(one bulk ``POST /hub/api/users``), then measures, as the operator runs them (the CLI with the
hub's settings and admin token):

- **after**: one ``learnhub grant COURSE --csv roster.csv`` for every member, then one
  ``learnhub revoke COURSE --csv roster.csv``;
- **before**: ``learnhub grant USER COURSE`` once per name, for the first ``--sequential``
  members, one process each (``--baseline-python``: the interpreter of another checkout, e.g.
  main's, so its own code is measured; it must know the database's revision, which this
  checkout creates at its own head), then ``learnhub revoke`` of the same names the same way.

For each: wall seconds, CPU seconds of the CLI processes (their own, from ``RUSAGE_CHILDREN``)
and the course group's size afterwards, which must be every member after a grant and nobody after
a revoke. Prints a Markdown table. Loopback only; the temporary folder is removed at the end.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.hub import HubProcess, hub_settings  # noqa: E402

COURSE = "python-foundations"
GROUP = f"course-{COURSE}"


def children_cpu() -> float:
    """CPU seconds (user + system) of every child process that has ended so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(hub: HubProcess, python: str, *args: str) -> None:
    """The `learnhub` CLI as the operator runs it; raises if it fails."""
    result = subprocess.run(
        [python, "-m", "hub.cli", *args],
        env=hub.env(),
        cwd=hub.workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if result.returncode != 0:
        raise SystemExit(f"learnhub {' '.join(args[:3])} failed:\n{result.stdout}{result.stderr}")


def measure(what: Callable[[], None]) -> tuple[float, float]:
    """Wall and child-CPU seconds of ``what()``."""
    cpu, wall = children_cpu(), time.perf_counter()
    what()
    return time.perf_counter() - wall, children_cpu() - cpu


def group_size(hub: HubProcess) -> int:
    response = hub.api("GET", f"/groups/{GROUP}")
    response.raise_for_status()
    return len(response.json()["users"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=200, help="names granted one by one")
    parser.add_argument("--baseline-python", default=sys.executable)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lh-enrol-"))
    courses = work / "courses"
    shutil.copytree(ROOT / "courses", courses)
    settings = hub_settings(work, courses_dir=courses, backend="local")
    settings["hub"]["log_level"] = "WARNING"
    hub = HubProcess(workdir=work, settings=settings)
    hub.start()
    print("| run | members | wall s | CPU s (CLI) | per member s | group size after |")
    print("|---|---:|---:|---:|---:|---:|", flush=True)

    def row(what: str, count: int, wall: float, cpu: float) -> None:
        # Printed as soon as measured: the one-by-one runs take minutes on a busy machine.
        print(
            f"| {what} | {count} | {wall:.1f} | {cpu:.1f} | {wall / count:.3f} "
            f"| {group_size(hub)} |",
            flush=True,
        )

    try:
        names = [f"class-member-{i:04d}" for i in range(args.members)]
        made = hub.api("POST", "/users", json={"usernames": names})
        made.raise_for_status()
        roster = work / "roster.csv"
        roster.write_text("username,email\n" + "".join(f"{n},{n}@example.org\n" for n in names))
        one_by_one = names[: args.sequential]
        base = args.baseline_python

        def grant_each() -> None:
            for name in one_by_one:
                cli(hub, base, "grant", name, COURSE)

        def revoke_each() -> None:
            for name in one_by_one:
                cli(hub, base, "revoke", name, COURSE)

        py = sys.executable
        wall, cpu = measure(lambda: cli(hub, py, "grant", COURSE, "--csv", str(roster)))
        row("after: grant --csv (one process)", len(names), wall, cpu)
        wall, cpu = measure(lambda: cli(hub, py, "revoke", COURSE, "--csv", str(roster)))
        row("after: revoke --csv (one process)", len(names), wall, cpu)
        if one_by_one:
            wall, cpu = measure(grant_each)
            row("before: grant, one process per name", len(one_by_one), wall, cpu)
            wall, cpu = measure(revoke_each)
            row("before: revoke, one process per name", len(one_by_one), wall, cpu)
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
