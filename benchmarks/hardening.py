"""What the course-server hardening of issue #11 costs at spawn (a measurement, not a test).

Starts two real LearnHub hubs in one run, on free ports, with DockerSpawner:

- **hardened** (LearnHub's defaults): course containers on the hub's own internal network with
  its firewall rules (`learnhub network apply`), the home an ext4 image loop-mounted by the Hub;
- **open**: Docker's default `bridge` network and the home a plain named volume (what LearnHub
  did before #11; `demo` mode still accepts both).

Both run the read-only root, dropped capabilities and the unprivileged service, which have no
switch. Spawns alternate between the two hubs so that load on the machine hits both alike; each
learner is new, so every hardened spawn also makes its home image. Prints a Markdown table and
writes JSON to benchmarks/results/hardening.json.

    .venv/bin/python benchmarks/hardening.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import percentile  # noqa: E402
from benchmarks.spawn import COURSE, spawn_and_wait  # noqa: E402
from harness.docker import docker_cleanup  # noqa: E402
from harness.hub import HubProcess, hub_settings  # noqa: E402

SETUPS = ("hardened", "open")


def make_hub(work: Path, setup: str) -> HubProcess:
    settings = hub_settings(work / setup, courses_dir=ROOT / "courses")
    settings["hub"]["log_level"] = "INFO"
    prefix = f"lhhard{setup[0]}{os.getpid()}"
    settings["spawner"]["name_prefix"] = prefix
    if setup == "hardened":
        settings["spawner"]["network"] = f"{prefix}-net"
    else:
        settings["spawner"]["network"] = "bridge"
        settings["spawner"]["home"] = {"storage": "volume"}
    (work / setup).mkdir(parents=True)
    return HubProcess(workdir=work / setup, settings=settings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="spawns per setup")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lh-hardening-"))
    hubs = {setup: make_hub(work, setup) for setup in SETUPS}
    times: dict[str, list[float]] = {setup: [] for setup in SETUPS}
    try:
        for hub in hubs.values():
            hub.start()
        for i in range(args.runs):
            for setup, hub in hubs.items():
                user = f"bench-{i}"
                times[setup].append(spawn_and_wait(hub, user))
                hub.api("DELETE", f"/users/{user}/servers/{COURSE}")
                print(f"{setup} spawn {i + 1}/{args.runs}: {times[setup][-1]:.2f} s", flush=True)
    finally:
        for hub in hubs.values():
            hub.stop()
            docker_cleanup(hub.settings["spawner"]["name_prefix"])

    result = {
        setup: {
            "runs": len(values),
            "spawn_p50_s": statistics.median(values),
            "spawn_p95_s": percentile(values, 0.95),
            "times_s": values,
        }
        for setup, values in times.items()
    }
    out = ROOT / "benchmarks" / "results" / "hardening.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    load = os.getloadavg()[0]
    print(f"\n| spawn → ready ({args.runs} each, alternating; load {load:.1f}) | p50 | p95 |")
    print("|---|---|---|")
    for setup in SETUPS:
        r = result[setup]
        print(f"| {setup} | {r['spawn_p50_s']:.2f} s | {r['spawn_p95_s']:.2f} s |")
    cost = result["hardened"]["spawn_p50_s"] - result["open"]["spawn_p50_s"]
    print(f"\nhardening costs {cost * 1000:+.0f} ms at the median; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
