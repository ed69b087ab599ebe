"""Benchmark: the second autograde round of an assignment, after one more learner handed in.

Round 1 grades N collected submissions (copies of the released ``python-foundations/
ps1-data-model``). One more learner hands in, and round 2 runs twice on the same state:
``--all`` (every collected submission: what every ``learnhub grader autograde`` did before
issue #13) and the default (only new or changed submissions). Both go through
``GradingCourse`` (plan, sandboxed grading, records), without the exchange. Needs the Docker
engine and ``learnhub/singleuser:latest``.

    .venv/bin/python benchmarks/autograde_rounds.py [--students 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader.course import GradingCourse  # noqa: E402
from grader.sandbox import SandboxPolicy  # noqa: E402
from hub.courses import Catalog  # noqa: E402
from hub.settings import load_settings  # noqa: E402

COURSE_ID = "python-foundations"
ASSIGNMENT = "ps1-data-model"


def hand_in(course: GradingCourse, student: str) -> None:
    """``student``'s collected submission: the released notebook, untouched."""
    dest = course.root / "submitted" / student / ASSIGNMENT
    dest.mkdir(parents=True)
    shutil.copytree(course.root / "release" / ASSIGNMENT, dest, dirs_exist_ok=True)
    (dest / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")


def timed_round(course: GradingCourse, *, regrade_all: bool) -> dict[str, Any]:
    """One ``learnhub grader autograde`` (``--all`` or not): seconds, graded, skipped."""
    started = time.perf_counter()
    plan = course.plan_autograde(ASSIGNMENT, regrade_all=regrade_all)
    results = course.autograde(ASSIGNMENT, plan)
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "graded": len(results),
        "skipped": len(plan.skipped),
        "errors": sum(r.outcome == "error" for r in results),
    }


def run(students: int = 8) -> dict[str, Any]:
    """Round 1 with ``students`` submissions, then round 2 with one more, both ways."""
    with tempfile.TemporaryDirectory(prefix="learnhub-bench-rounds-") as tmp:
        config = Path(tmp) / "learnhub.yaml"
        settings_data = {"courses_dir": str(REPO / "courses"), "hub": {"data_dir": tmp}}
        config.write_text(yaml.safe_dump(settings_data))
        settings = load_settings(config, {})
        entry = Catalog.load(settings.courses_dir).get(COURSE_ID)
        assert entry is not None
        course = dataclasses.replace(
            GradingCourse.for_course(settings, entry),
            policy=SandboxPolicy(name_prefix="learnhub-bench-sandbox-"),
            learnhub_db_url="",
        )
        course.prepare(ASSIGNMENT)
        course._check("generate_assignment", course._api().generate_assignment(ASSIGNMENT))
        for i in range(students):
            hand_in(course, f"student{i:02d}")
        out: dict[str, Any] = {"students": students, "cores": os.cpu_count()}
        out["loadavg_1m_at_start"] = os.getloadavg()[0]
        out["round1"] = timed_round(course, regrade_all=False)
        hand_in(course, "latecomer")
        out["round2_all_as_before"] = timed_round(course, regrade_all=True)
        # Same state again for the default: only the latecomer is new to it.
        records = course.root / ".learnhub" / f"graded-{ASSIGNMENT}.json"
        graded = json.loads(records.read_text())
        graded.pop("latecomer")
        records.write_text(json.dumps(graded))
        out["round2_new_only"] = timed_round(course, regrade_all=False)
        out["loadavg_1m_at_end"] = os.getloadavg()[0]
    return out


def main() -> None:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    print(json.dumps(run(parser.parse_args().students), indent=2))


if __name__ == "__main__":
    main()
