"""What one course server costs a node: memory and CPU of a real JupyterLab container.

    .venv/bin/python benchmarks/scale_server.py [--image learnhub/course-python-foundations]
        [--idle 20] [--busy 30]

Runs the course image's JupyterLab (``jupyter lab``, the image's own server stack, with a
token instead of the Hub's OAuth; the entrypoint's materials sync is skipped) in one container
with the default course limits (1 GiB, 1 CPU), on loopback, and reads ``docker stats`` and the
container's cgroup CPU time:

1. the server alone, after ``--idle`` seconds;
2. with one Python kernel started (``POST /api/kernels``), after ``--idle`` seconds;
3. while that kernel runs a CPU-bound exercise for ``--busy`` seconds (squares of 3 million
   integers, sorted and summed, in a loop: about 130 MB of Python objects), sampled every
   second or so: the peak memory and the cores used (cgroup CPU-seconds / wall seconds).

Prints a Markdown table and writes ``benchmarks/results/scale-server.json``. The container is
removed at the end (its name starts with ``lhscale-server-``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import container_cpu_seconds, machine, memory_by_container  # noqa: E402

NAME = f"lhscale-server-{os.getpid()}"
EXERCISE = """
import time
start = time.time()
rounds = 0
while time.time() - start < {seconds}:
    data = [i * i for i in range(3_000_000)]
    total = sum(sorted(data, reverse=True))
    rounds += 1
print(rounds)
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def start_server(image: str, token: str) -> str:
    """The container's JupyterLab, published on a free loopback port; its base URL."""
    subprocess.run(
        [
            "docker", "run", "-d", "--name", NAME, "--memory", "1g", "--cpus", "1",
            "-p", "127.0.0.1::8888", "--entrypoint", "jupyter", image,
            "lab", "--ServerApp.ip=0.0.0.0", "--ServerApp.port=8888", "--no-browser",
            f"--IdentityProvider.token={token}", "--ServerApp.root_dir=/home/jovyan",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    port = (
        subprocess.run(
            ["docker", "port", NAME, "8888/tcp"], check=True, capture_output=True, text=True
        )
        .stdout.split(":")[-1]
        .strip()
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).is_success:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"JupyterLab in {NAME} did not answer within 180 s")


def memory() -> float:
    return memory_by_container(NAME)[NAME]


def cpu() -> float:
    return container_cpu_seconds(NAME).get(NAME, 0.0)


async def execute(url: str, token: str, kernel: str, code: str) -> None:
    """Run ``code`` in the kernel through its websocket, until its execute_reply."""
    ws_url = url.replace("http://", "ws://") + f"/api/kernels/{kernel}/channels?token={token}"
    conn = await websocket_connect(ws_url)
    msg_id = uuid.uuid4().hex
    conn.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": "bench",
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    while True:
        raw = await conn.read_message()
        if raw is None:
            raise RuntimeError("the kernel's websocket closed")
        message = json.loads(raw)
        if (
            message.get("msg_type") == "execute_reply"
            and message.get("parent_header", {}).get("msg_id") == msg_id
        ):
            if message["content"].get("status") != "ok":
                raise RuntimeError(f"the exercise failed: {message['content']}")
            conn.close()
            return


async def busy(url: str, token: str, kernel: str, seconds: float) -> dict[str, float]:
    """Run the exercise and sample memory meanwhile."""
    run = asyncio.ensure_future(execute(url, token, kernel, EXERCISE.format(seconds=seconds)))
    cpu0, t0 = cpu(), time.monotonic()
    samples: list[float] = []
    while not run.done():
        samples.append(await asyncio.to_thread(memory))
        await asyncio.sleep(0.5)
    await run
    wall = time.monotonic() - t0
    return {
        "peak_mib": max(samples),
        "mean_mib": sum(samples) / len(samples),
        "cores": (cpu() - cpu0) / wall,
        "seconds": wall,
        "samples": len(samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="learnhub/course-python-foundations:latest")
    parser.add_argument("--idle", type=float, default=20)
    parser.add_argument("--busy", type=float, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    token = secrets.token_hex(16)
    result: dict[str, Any] = {"image": args.image, "machine": machine()}
    try:
        t0 = time.monotonic()
        url = start_server(args.image, token)
        result["start_s"] = time.monotonic() - t0
        result["start_cpu_s"] = cpu()
        log(f"server up in {result['start_s']:.1f} s")
        time.sleep(args.idle)
        result["idle_mib"] = memory()
        cpu0 = cpu()
        time.sleep(args.idle)
        result["idle_cores"] = (cpu() - cpu0) / args.idle
        api = httpx.Client(base_url=url, params={"token": token}, timeout=60)
        kernel = api.post("/api/kernels", json={"name": "python3"}).raise_for_status().json()
        time.sleep(args.idle)
        result["kernel_idle_mib"] = memory()
        result["busy"] = asyncio.run(busy(url, token, kernel["id"], args.busy))
        time.sleep(5)
        result["after_busy_mib"] = memory()
        api.close()
    finally:
        subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
    out = args.out or ROOT / "benchmarks" / "results" / "scale-server.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    b = result["busy"]
    print(f"\n| one course server ({args.image}), 1 GiB / 1 CPU limit | |")
    print("|---|---|")
    print(f"| start (container to API answering) | {result['start_s']:.1f} s, "
          f"{result['start_cpu_s']:.2f} CPU-s |")  # fmt: skip
    print(f"| server alone, idle | {result['idle_mib']:.0f} MiB, "
          f"{result['idle_cores']:.3f} cores |")  # fmt: skip
    print(f"| with one idle Python kernel | {result['kernel_idle_mib']:.0f} MiB |")
    print(f"| kernel busy ({b['seconds']:.0f} s CPU-bound exercise): peak / mean memory | "
          f"{b['peak_mib']:.0f} / {b['mean_mib']:.0f} MiB |")  # fmt: skip
    print(f"| kernel busy: cores used | {b['cores']:.2f} |")
    print(f"| after the exercise | {result['after_busy_mib']:.0f} MiB |")
    print(f"\nmachine: {result['machine']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
