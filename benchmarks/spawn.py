"""Spawn → ready latency and idle memory of LearnHub course servers (a measurement, not a test).

Starts a real LearnHub hub + proxy on free ports with DockerSpawner, creates one learner per run,
grants the course, and times `POST /hub/api/users/<u>/servers/<course>` until the hub reports the
server ready. Then it leaves N servers idle for a while and reads their memory from
`docker stats`. Prints a Markdown table and writes JSON to benchmarks/results/spawn.json.

    .venv/bin/python benchmarks/spawn.py [--runs 10] [--idle 5] [--settle 20]

LearnHub only; `benchmarks/run.py` measures this and more side by side with a stock setup.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import memory_mib, percentile, serve_at_root  # noqa: E402
from harness.docker import docker_cleanup  # noqa: E402
from harness.hub import HubProcess, hub_settings  # noqa: E402

COURSE = "python-foundations"
PREFIX = "lhbench"


def spawn_and_wait(hub: HubProcess, user: str) -> float:
    hub.api("POST", "/users", json={"usernames": [user]})
    hub.api("POST", f"/groups/course-{COURSE}/users", json={"users": [user]})
    start = time.perf_counter()
    response = hub.api("POST", f"/users/{user}/servers/{COURSE}")
    if response.status_code not in (201, 202):
        raise RuntimeError(f"spawn failed: {response.status_code} {response.text}")
    while True:
        model = hub.api("GET", f"/users/{user}").json()["servers"].get(COURSE, {})
        if model.get("ready"):
            return time.perf_counter() - start
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--idle", type=int, default=5, help="servers kept for the memory reading")
    parser.add_argument("--settle", type=float, default=20, help="seconds idle before reading")
    args = parser.parse_args()

    docker_cleanup(PREFIX)
    work = Path(tempfile.mkdtemp(prefix="lh-bench-"))
    settings = hub_settings(work, courses_dir=ROOT / "courses")
    serve_at_root(settings)
    settings["hub"]["log_level"] = "INFO"
    settings["spawner"]["name_prefix"] = PREFIX
    hub = HubProcess(workdir=work, settings=settings)
    hub.start()
    try:
        times = []
        for i in range(args.runs):
            user = f"bench-{i}"
            times.append(spawn_and_wait(hub, user))
            if i >= args.idle:
                hub.api("DELETE", f"/users/{user}/servers/{COURSE}")
            print(f"spawn {i + 1}/{args.runs}: {times[-1]:.2f} s", flush=True)
        time.sleep(args.settle)
        memory = memory_mib(f"{PREFIX}-")
    finally:
        hub.stop()
        docker_cleanup(PREFIX)

    result = {
        "runs": args.runs,
        "spawn_p50_s": statistics.median(times),
        "spawn_p95_s": percentile(times, 0.95),
        "spawn_min_s": min(times),
        "spawn_max_s": max(times),
        "idle_servers": len(memory),
        "idle_memory_mib_median": statistics.median(memory) if memory else None,
        "times_s": times,
        "memory_mib": memory,
    }
    out = ROOT / "benchmarks" / "results" / "spawn.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print()
    print("| measure | LearnHub |")
    print("|---|---|")
    print(f"| spawn → ready p50 ({args.runs} sequential) | {result['spawn_p50_s']:.2f} s |")
    print(f"| spawn → ready p95 | {result['spawn_p95_s']:.2f} s |")
    if memory:
        median = result["idle_memory_mib_median"]
        print(f"| idle server memory (median of {len(memory)}) | {median:.0f} MiB |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
