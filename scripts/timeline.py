#!/usr/bin/env python3
"""Summarise a test run's timelines (`test-artifacts/timeline-*.tsv`, from tests/conftest.py).

    .venv/bin/python scripts/timeline.py [--write] [test-artifacts]

Prints, per xdist worker, when it started and finished and how long it was busy, then each
worker's units of work (modules, or groups of SHARED_HOST_STATE) in the order it ran them, with
their start offset and duration, and finally the slowest units. A worker that finishes long
before the other is idle capacity: schedule the longest units first or split them.

`--write` also records each unit's duration in tests/module_durations.json, from which the
scheduler in tests/conftest.py hands out the longest units first. Refresh it from a whole run
(`./scripts/test.sh`) when modules were added or got much slower or faster; commit it.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_durations(units: dict[tuple[str, str], list[float]]) -> None:
    """Record each unit of work's duration for the scheduler (tests/module_durations.json)."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import DURATIONS_FILE, unit_of_work

    seconds: dict[str, float] = defaultdict(float)
    for (_worker, module), (_start, _end, total, _count) in units.items():
        seconds[unit_of_work(module)] += total
    ordered = dict(sorted(((u, round(s, 1)) for u, s in seconds.items()), key=lambda i: -i[1]))
    DURATIONS_FILE.write_text(json.dumps(ordered, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(ordered)} units to {DURATIONS_FILE}")


def main(folder: Path, write: bool = False) -> None:
    rows: list[tuple[str, float, float, str]] = []
    for path in sorted(folder.glob("timeline-*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            worker, start, end, nodeid = line.split("\t", 3)
            rows.append((worker, float(start), float(end), nodeid))
    if not rows:
        sys.exit(f"no timeline-*.tsv in {folder}: run pytest first")
    t0 = min(r[1] for r in rows)
    units: dict[tuple[str, str], list[float]] = {}
    for worker, start, end, nodeid in rows:
        key = (worker, nodeid.split("::", 1)[0])
        span = units.setdefault(key, [start, end, 0.0, 0])
        span[0], span[1] = min(span[0], start), max(span[1], end)
        span[2] += end - start
        span[3] += 1
    by_worker: dict[str, list[tuple[str, list[float]]]] = defaultdict(list)
    for (worker, module), span in units.items():
        by_worker[worker].append((module, span))
    for worker in sorted(by_worker):
        spans = sorted(by_worker[worker], key=lambda u: u[1][0])
        busy = sum(s[2] for _, s in spans)
        first, last = spans[0][1][0] - t0, max(s[1] for _, s in spans) - t0
        print(f"== {worker}: {first:7.1f} s -> {last:7.1f} s, busy {busy:7.1f} s", end="")
        print(f", {len(spans)} modules")
        for module, (start, _end, total, count) in spans:
            print(f"   {start - t0:7.1f} +{total:6.1f} s  {count:3d} tests  {module}")
    print("== slowest modules")
    slowest = sorted(units.items(), key=lambda u: -u[1][2])[:30]
    for (worker, module), (_s, _e, total, count) in slowest:
        print(f"   {total:6.1f} s  {count:3d} tests  {worker}  {module}")
    if write:
        write_durations(units)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--write"]
    main(Path(args[0] if args else "test-artifacts"), write="--write" in sys.argv[1:])
