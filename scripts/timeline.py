#!/usr/bin/env python3
"""Summarise a test run's timelines (`test-artifacts/timeline-*.tsv`, from tests/conftest.py).

    .venv/bin/python scripts/timeline.py [test-artifacts]

Prints, per xdist worker, when it started and finished and how long it was busy, then each
worker's units of work (modules, or groups of SHARED_HOST_STATE) in the order it ran them, with
their start offset and duration, and finally the slowest units. A worker that finishes long
before the other is idle capacity: schedule the longest units first or split them.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path


def main(folder: Path) -> None:
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


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "test-artifacts"))
