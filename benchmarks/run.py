"""LearnHub vs a stock JupyterHub + DockerSpawner setup, measured side by side in one run.

    .venv/bin/python benchmarks/run.py [--quick] [--phases spawn,concurrent,catalog,...]

Builds the stock single-user image if it is missing (``benchmarks/stock/``), starts a stock hub
and a LearnHub hub (each with its own proxy, free ports, data folder and container prefix), and
measures both in the same run, alternating between them so that load from other work on the
machine hits both alike:

- ``spawn``: sequential spawn → ready (API POST of a named server, poll the Hub API every 50 ms
  until ``ready``), a fresh user each time; then idle memory per server (``docker stats`` after
  the servers sat idle) and hub + proxy (+ LearnHub service) RSS from /proc;
- ``concurrent``: 20 and 50 spawns posted at once, time until all are ready; then all stopped
  at once, time until all are gone;
- ``catalog``: 100 concurrent clients GET the LearnHub catalog vs the stock hub's login page
  (after a warm-up of the same load), with the CPU each process and the load generator used;
  the catalog also straight at the service, without the proxy;
- ``webhook``: webhook → membership latency and sustained events/s (LearnHub only;
  ``benchmarks/webhook.py``);
- ``autograde``: 20 sandboxed submissions vs stock serial ``nbgrader autograde``
  (``benchmarks/autograde.py``).

Prints a Markdown table (with ratios and the targets of issue 6) and writes
``benchmarks/results/latest.json``. Every container and volume it creates starts with
``lhb<pid>-`` and is removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    child_pids,
    cmdline,
    container_cpu_seconds,
    cpu_seconds,
    machine,
    memory_by_container,
    percentile,
    rss_mib,
    serve_at_root,
)
from benchmarks.stock.hub import StockHub  # noqa: E402
from benchmarks.stock.image import STOCK_IMAGE, ensure_stock_image  # noqa: E402
from harness.docker import docker_cleanup  # noqa: E402
from harness.hub import HubProcess, JupyterHubProcess, hub_settings  # noqa: E402

COURSE = "python-foundations"
#: The catalog measured straight at the LearnHub service's port, without the proxy.
DIRECT = "LearnHub, no proxy"
LEARNHUB_IMAGE = "learnhub/singleuser:latest"
PHASES = ("spawn", "concurrent", "catalog", "webhook", "autograde")
RESULTS = ROOT / "benchmarks" / "results"

FULL = {
    "runs": 10,
    "idle": 5,
    "settle": 25.0,
    "concurrent": [20, 50],
    "catalog_requests": 3000,
    "catalog_clients": 100,
    "catalog_warmup": 1000,
    "catalog_tool": "auto",
    "webhook_latency": 50,
    "webhook_burst": 300,
    "webhook_clients": 8,
    "autograde_students": 20,
}
QUICK = {
    "runs": 3,
    "idle": 2,
    "settle": 5.0,
    "concurrent": [4],
    "catalog_requests": 400,
    "catalog_clients": 100,
    "catalog_warmup": 400,
    "catalog_tool": "auto",
    "webhook_latency": 10,
    "webhook_burst": 40,
    "webhook_clients": 8,
    "autograde_students": 4,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# The two setups behind one interface


@dataclass
class Setup:
    """One hub under test: how to reach its API and which containers and processes are its."""

    label: str
    hub: JupyterHubProcess  # HubProcess or StockHub
    prefix: str
    server: str
    grant: Callable[[list[str]], None] = field(default=lambda users: None)

    @property
    def api_url(self) -> str:
        return str(self.hub.api_url)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.hub.admin_token}"}

    def create_users(self, users: list[str]) -> None:
        r = self.hub.api("POST", "/users", json={"usernames": users})
        if r.status_code not in (201, 409):
            raise RuntimeError(f"{self.label}: creating users failed: {r.status_code} {r.text}")
        self.grant(users)

    def pids(self) -> dict[str, int | None]:
        hub_pid = self.hub.proc.pid if self.hub.proc else None
        pids: dict[str, int | None] = {"hub": hub_pid, "proxy": self.hub.proxy_pid()}
        if not isinstance(self.hub, StockHub):
            services = [p for p in child_pids(hub_pid or 0) if "hub.service" in cmdline(p)]
            pids["service"] = services[0] if services else None
        return pids

    def rss(self) -> dict[str, float | None]:
        values = {name: rss_mib(pid) for name, pid in self.pids().items()}
        values["total"] = sum(v for v in values.values() if v)
        return values


def learnhub_setup(work: Path, prefix: str, start_timeout: int) -> Setup:
    settings = hub_settings(work, courses_dir=ROOT / "courses")
    serve_at_root(settings)
    settings["hub"]["log_level"] = "INFO"
    settings["spawner"]["name_prefix"] = prefix
    settings["spawner"]["start_timeout"] = start_timeout
    hub = HubProcess(workdir=work, settings=settings)

    def grant(users: list[str]) -> None:
        r = hub.api("POST", f"/groups/course-{COURSE}/users", json={"users": users})
        r.raise_for_status()

    return Setup("LearnHub", hub, prefix, COURSE, grant)


def stock_setup(work: Path, prefix: str, start_timeout: int) -> Setup:
    hub = StockHub(workdir=work, image=STOCK_IMAGE, prefix=prefix, start_timeout=start_timeout)
    return Setup("stock", hub, prefix, COURSE)


# --------------------------------------------------------------------------------------------
# Spawning


async def user_model(client: httpx.AsyncClient, setup: Setup, user: str) -> dict[str, Any]:
    r = await client.get(f"{setup.api_url}/users/{user}", headers=setup.headers)
    r.raise_for_status()
    return dict(r.json())


async def spawn_one(client: httpx.AsyncClient, setup: Setup, user: str) -> float:
    """POST a named server and poll every 50 ms until the hub says it is ready."""
    start = time.perf_counter()
    r = await client.post(
        f"{setup.api_url}/users/{user}/servers/{setup.server}", headers=setup.headers
    )
    if r.status_code not in (201, 202):
        raise RuntimeError(f"{setup.label}: spawn of {user} refused: {r.status_code} {r.text}")
    while True:
        server = (await user_model(client, setup, user))["servers"].get(setup.server)
        if server and server.get("ready"):
            return time.perf_counter() - start
        if not server:
            raise RuntimeError(f"{setup.label}: server of {user} failed to start")
        await asyncio.sleep(0.05)


async def stop_all(client: httpx.AsyncClient, setup: Setup, users: list[str]) -> float:
    """DELETE every server at once; seconds until the hub lists none of them as active."""
    start = time.perf_counter()
    await asyncio.gather(
        *(
            client.delete(
                f"{setup.api_url}/users/{u}/servers/{setup.server}", headers=setup.headers
            )
            for u in users
        )
    )
    wanted = set(users)
    while True:
        r = await client.get(
            f"{setup.api_url}/users", params={"state": "active"}, headers=setup.headers
        )
        r.raise_for_status()
        if not wanted & {u["name"] for u in r.json()}:
            return time.perf_counter() - start
        await asyncio.sleep(0.2)


async def spawn_many(client: httpx.AsyncClient, setup: Setup, users: list[str]) -> dict[str, Any]:
    """POST all servers at once; poll the user list every 250 ms until every one is ready."""
    start = time.perf_counter()
    posts = await asyncio.gather(
        *(
            client.post(f"{setup.api_url}/users/{u}/servers/{setup.server}", headers=setup.headers)
            for u in users
        )
    )
    refused = [u for u, r in zip(users, posts, strict=True) if r.status_code not in (201, 202)]
    ready_at: dict[str, float] = {}
    failed: set[str] = set(refused)
    wanted = set(users) - failed
    while wanted - ready_at.keys() - failed:
        r = await client.get(
            f"{setup.api_url}/users", params={"state": "active"}, headers=setup.headers
        )
        r.raise_for_status()
        now = time.perf_counter() - start
        active = {u["name"]: u for u in r.json()}
        for user in wanted - ready_at.keys() - failed:
            server = active.get(user, {}).get("servers", {}).get(setup.server)
            if server and server.get("ready"):
                ready_at[user] = now
            elif not server:
                failed.add(user)
        await asyncio.sleep(0.25)
    times = sorted(ready_at.values())
    return {
        "servers": len(users),
        "ready": len(times),
        "failed": sorted(failed),
        "all_ready_s": max(times) if times and not failed else None,
        "last_ready_s": max(times) if times else None,
        "p50_ready_s": statistics.median(times) if times else None,
        "ready_times_s": times,
    }


async def phase_spawn(setups: list[Setup], cfg: dict[str, Any]) -> dict[str, Any]:
    """Sequential spawns (alternating stock / LearnHub), then idle memory and process RSS."""
    out: dict[str, Any] = {s.label: {"times_s": []} for s in setups}
    kept: dict[str, list[str]] = {s.label: [] for s in setups}
    async with httpx.AsyncClient(timeout=120) as client:
        for i in range(cfg["runs"]):
            for setup in setups:
                user = f"seq{i}"
                setup.create_users([user])
                seconds = await spawn_one(client, setup, user)
                out[setup.label]["times_s"].append(seconds)
                log(f"{setup.label}: sequential spawn {i + 1}/{cfg['runs']}: {seconds:.2f} s")
                if i < cfg["idle"]:
                    kept[setup.label].append(user)
                else:
                    await stop_all(client, setup, [user])
        for setup in setups:
            times = out[setup.label]["times_s"]
            out[setup.label].update(
                p50_s=statistics.median(times),
                p95_s=percentile(times, 0.95),
                min_s=min(times),
                max_s=max(times),
            )
        log(f"{cfg['idle']} servers per setup idle for {cfg['settle']:.0f} s")
        await asyncio.sleep(cfg["settle"])
        memory = memory_by_container(*(f"{s.prefix}-" for s in setups))
        cpu = container_cpu_seconds(*(f"{s.prefix}-" for s in setups))
        for setup in setups:
            mine = [v for k, v in memory.items() if k.startswith(f"{setup.prefix}-")]
            out[setup.label]["idle_memory_mib"] = mine
            out[setup.label]["idle_memory_mib_median"] = statistics.median(mine) if mine else None
            # CPU a server used from container start through the idle wait: nearly all of it
            # is start-up, and it bounds how fast N servers can start on this many cores.
            used = [v for k, v in cpu.items() if k.startswith(f"{setup.prefix}-")]
            out[setup.label]["container_cpu_s"] = used
            out[setup.label]["container_cpu_s_median"] = statistics.median(used) if used else None
            out[setup.label]["rss_mib_idle"] = setup.rss()
            out[setup.label]["rss_servers"] = len(kept[setup.label])
        for setup in setups:
            await stop_all(client, setup, kept[setup.label])
            docker_cleanup(setup.prefix)
    return out


async def phase_concurrent(setups: list[Setup], cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {s.label: {} for s in setups}
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=200)) as client:
        for n in cfg["concurrent"]:
            for setup in setups:
                users = [f"c{n}u{i}" for i in range(n)]
                setup.create_users(users)
                log(f"{setup.label}: {n} concurrent spawns")
                pids = setup.pids()
                cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                result = await spawn_many(client, setup, users)
                # Where the burst's CPU went: the hub-side processes, and the servers themselves
                # (cgroup CPU from container start until all were ready). On 2 cores the sum
                # bounds how soon N servers can be ready.
                result["process_cpu_s"] = {
                    name: round(cpu_seconds(pid) - cpu_before[name], 2)
                    for name, pid in pids.items()
                }
                servers_cpu = container_cpu_seconds(f"{setup.prefix}-")
                result["servers_cpu_s_total"] = round(sum(servers_cpu.values()), 2)
                result["servers_cpu_s_median"] = (
                    statistics.median(servers_cpu.values()) if servers_cpu else None
                )
                result["rss_mib_running"] = setup.rss()
                log(
                    f"{setup.label}: {result['ready']}/{n} ready, last after "
                    f"{result['last_ready_s'] or float('nan'):.1f} s; stopping them all"
                )
                result["stop_all_s"] = await stop_all(client, setup, users)
                log(f"{setup.label}: {n} stopped in {result['stop_all_s']:.1f} s")
                docker_cleanup(setup.prefix)
                out[setup.label][str(n)] = result
    return out


# --------------------------------------------------------------------------------------------
# Page latency under concurrent clients


def _rusage_cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def closed_loop(
    url: str, requests: int, clients: int, tool: str
) -> tuple[list[float], dict[int, int]]:
    """`clients` concurrent clients, each sending its next GET when the last ends.

    Returns each GET's latency in seconds and the count of each status code.
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    if tool == "curl":
        with tempfile.NamedTemporaryFile("w", suffix=".curlrc") as cfg:
            cfg.write(f'url = "{url}"\noutput = "/dev/null"\n' * requests)
            cfg.flush()
            proc = await asyncio.create_subprocess_exec(
                "curl", "--silent", "--no-progress-meter", "--parallel", "--parallel-immediate",
                "--parallel-max", str(clients), "--write-out", "%{http_code} %{time_total}\n",
                "--config", cfg.name,
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, _ = await proc.communicate()
        for line in stdout.decode().splitlines():
            code, seconds = line.split()
            latencies.append(float(seconds))
            statuses[int(code)] = statuses.get(int(code), 0) + 1
    else:
        remaining = requests
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def one_client() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    begin = time.perf_counter()
                    r = await client.get(url)
                    latencies.append(time.perf_counter() - begin)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

            await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies, statuses


async def load(
    url: str,
    requests: int,
    clients: int,
    tool: str = "auto",
    pids: dict[str, int | None] | None = None,
    warmup: int = 0,
) -> dict[str, Any]:
    """Measure a :func:`closed_loop` of ``requests`` GETs after a warm-up.

    With ``tool="curl"`` (the default when curl is installed) the clients are curl's parallel
    transfers (C, cheap on the CPU the server also needs); with ``"httpx"`` they are asyncio
    tasks in this process, which costs noticeably more CPU per request on a 2-core machine.

    The warm-up is 10 single GETs (which must succeed), then ``warmup`` GETs of the same closed
    loop, not counted: a proxy's upstream connection pool is filled and Node's JIT has compiled
    its hot paths, as on a server that has been up for a while. Without it the first second of a
    3-second run measures start-up (CHP alone used twice the CPU per request while cold).

    Besides latency and throughput it records the CPU time each process in ``pids`` used during
    the measured load and the load generator's own (curl: this process's children, which during
    the load is curl alone; httpx: this process), in total and per request.
    """
    if tool == "auto":
        tool = "curl" if shutil.which("curl") else "httpx"
    async with httpx.AsyncClient(timeout=60) as warm:
        for _ in range(10):  # templates, caches; and the page must work at all
            (await warm.get(url)).raise_for_status()
    if warmup:
        await closed_loop(url, warmup, clients, tool)
    pids = {k: v for k, v in (pids or {}).items() if v}
    generator = resource.RUSAGE_CHILDREN if tool == "curl" else resource.RUSAGE_SELF
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu_before["load generator"] = _rusage_cpu(generator)
    start = time.perf_counter()
    latencies, statuses = await closed_loop(url, requests, clients, tool)
    wall = time.perf_counter() - start
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["load generator"] = _rusage_cpu(generator) - cpu_before["load generator"]
    return {
        "url": url,
        "tool": tool,
        "requests": len(latencies),
        "clients": clients,
        "warmup_requests": warmup,
        "statuses": {str(k): v for k, v in statuses.items()},
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "requests_per_s": len(latencies) / wall,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_ms_per_request": {k: v * 1000 / max(len(latencies), 1) for k, v in cpu.items()},
        "loadavg_after": machine()["loadavg"],
    }


async def phase_catalog(setups: list[Setup], cfg: dict[str, Any]) -> dict[str, Any]:
    """The same closed loop (tool, clients, GETs) against each hub's page through its proxy.

    LearnHub's catalog is also measured straight at the service's own port (no proxy), which
    shows what the proxy adds. CPU is recorded per process and for the load generator.
    """
    out = {}
    runs: list[tuple[str, Setup, str]] = []
    for setup in setups:
        path = "hub/login" if setup.label == "stock" else "services/learnhub/"
        runs.append((setup.label, setup, setup.hub.url + path))
        if isinstance(setup.hub, HubProcess):
            port = setup.hub.settings["hub"]["service_port"]
            runs.append((DIRECT, setup, f"http://127.0.0.1:{port}/services/learnhub/"))
    for label, setup, url in runs:
        log(f"{label}: {cfg['catalog_requests']} GETs of {url}, {cfg['catalog_clients']} clients")
        pids = setup.pids()
        if label == DIRECT:
            pids.pop("proxy", None)
        out[label] = result = await load(
            url,
            cfg["catalog_requests"],
            cfg["catalog_clients"],
            cfg["catalog_tool"],
            pids,
            warmup=cfg["catalog_warmup"],
        )
        per = ", ".join(f"{k} {v:.3f}" for k, v in result["cpu_ms_per_request"].items())
        log(
            f"{label}: p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, "
            f"{result['requests_per_s']:.0f} req/s; CPU ms per request: {per}"
        )
    return out


# --------------------------------------------------------------------------------------------
# LearnHub-only and delegated measurements


async def phase_webhook(cfg: dict[str, Any]) -> dict[str, Any]:
    webhook = importlib.import_module("benchmarks.webhook")
    args = argparse.Namespace(
        latency=cfg["webhook_latency"], burst=cfg["webhook_burst"], clients=cfg["webhook_clients"]
    )
    return dict(await webhook.run(args))


def phase_autograde(cfg: dict[str, Any]) -> dict[str, Any]:
    """Sandboxed parallel autograde vs stock serial `nbgrader autograde` (benchmarks/autograde.py).

    Uses the module's own entry point when it offers one returning numbers (``run``/``measure``);
    otherwise its building blocks, exactly as its ``main`` uses them.
    """
    try:
        ag = importlib.import_module("benchmarks.autograde")
    except Exception as exc:  # missing module, or grader package not importable yet
        return {"available": False, "reason": f"benchmarks/autograde.py not importable: {exc!r}"}
    n = cfg["autograde_students"]
    for name in ("run", "measure"):
        fn = getattr(ag, name, None)
        if callable(fn):
            try:
                return {"available": True, "source": f"autograde.{name}", **dict(fn(students=n))}
            except TypeError:
                break  # a different signature: fall back to the building blocks
    needed = ("make_course", "nbgrader", "scores", "autograde_submissions", "SandboxPolicy")
    if not all(hasattr(ag, a) for a in needed):
        return {"available": False, "reason": "benchmarks/autograde.py has no usable entry point"}
    os.environ["PATH"] = ag.VENV_BIN + os.pathsep + os.environ.get("PATH", "")
    students = [f"student{i:02d}" for i in range(n)]
    policy = ag.SandboxPolicy(name_prefix="learnhub-bench-sandbox-")
    parallel = os.cpu_count() or 1
    out: dict[str, Any] = {"available": True, "source": "autograde building blocks"}
    with tempfile.TemporaryDirectory(prefix="learnhub-bench-ag-") as tmp:
        for label in ("sandboxed", "stock"):
            root = Path(tmp) / label
            ag.make_course(root, students)
            log(f"autograde: {label}, {n} submissions")
            start = time.perf_counter()
            if label == "stock":
                ag.nbgrader(root, "autograde", ag.ASSIGNMENT, "--force")
            else:
                ag.autograde_submissions(
                    root, ag.ASSIGNMENT, students, policy=policy, parallel=parallel
                )
            seconds = time.perf_counter() - start
            got = ag.scores(root)
            out[label] = {
                "seconds": seconds,
                "per_submission_s": seconds / n,
                "graded": len(got),
                "full_marks": sum(1 for s in got if s == 10),
            }
    out.update(students=n, parallel=parallel)
    return out


# --------------------------------------------------------------------------------------------
# Report


@dataclass
class Row:
    measure: str
    stock: str
    learnhub: str
    ratio: str
    target: str
    verdict: str


def fmt(value: float | None, unit: str, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} {unit}".strip()


def ratio(stock: float | None, learnhub: float | None) -> str:
    """stock ÷ LearnHub: how many times better LearnHub is on a lower-is-better measure."""
    if not stock or not learnhub:
        return "—"
    return f"{stock / learnhub:.2f}\u00d7"


def verdict(value: float | None, ok: bool | None) -> str:
    if value is None or ok is None:
        return "not measured"
    return "met" if ok else "**not met**"


def table(results: dict[str, Any], cfg: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    spawn = results.get("spawn")
    if spawn:
        st, lh = spawn["stock"], spawn["LearnHub"]
        n = len(lh["times_s"])
        for key, name, limit in (("p50_s", "p50", 1.5), ("p95_s", "p95", 2.5)):
            rows.append(
                Row(
                    f"spawn → ready {name} ({n} sequential)",
                    fmt(st[key], "s"),
                    fmt(lh[key], "s"),
                    ratio(st[key], lh[key]),
                    f"≤ {limit} s",
                    verdict(lh[key], lh[key] <= limit),
                )
            )
        sm, lm = st["idle_memory_mib_median"], lh["idle_memory_mib_median"]
        rows.append(
            Row(
                f"idle server memory (median of {len(lh['idle_memory_mib'])}, "
                f"{cfg['settle']:.0f} s idle)",
                fmt(sm, "MiB", 0),
                fmt(lm, "MiB", 0),
                ratio(sm, lm),
                "≤ 90 MiB",
                verdict(lm, lm is not None and lm <= 90),
            )
        )
        sc, lc = st.get("container_cpu_s_median"), lh.get("container_cpu_s_median")
        if sc is not None or lc is not None:
            rows.append(
                Row(
                    "CPU used per server, start + idle wait (median, cgroup)",
                    fmt(sc, "CPU-s"),
                    fmt(lc, "CPU-s"),
                    ratio(sc, lc),
                    "—",
                    "—",
                )
            )
        srss, lrss = st["rss_mib_idle"], lh["rss_mib_idle"]
        lh_parts = f"hub {lrss['hub'] or 0:.0f} + proxy {lrss['proxy'] or 0:.0f}"
        rows.append(
            Row(
                f"hub + proxy RSS ({lh['rss_servers']} servers running)",
                f"{(srss['hub'] or 0) + (srss['proxy'] or 0):.0f} MiB "
                f"(hub {srss['hub'] or 0:.0f} + proxy {srss['proxy'] or 0:.0f})",
                f"{(lrss['hub'] or 0) + (lrss['proxy'] or 0):.0f} MiB ({lh_parts}); "
                f"+ service {lrss.get('service') or 0:.0f}",
                ratio((srss["hub"] or 0) + (srss["proxy"] or 0), lrss["total"]),
                "—",
                "ratio counts the LearnHub service",
            )
        )
    conc = results.get("concurrent")
    if conc:
        for n in cfg["concurrent"]:
            st, lh = conc["stock"][str(n)], conc["LearnHub"][str(n)]
            target = 40.0 if n == 50 else None
            lv = lh["all_ready_s"]
            fail_note = ""
            if st["failed"] or lh["failed"]:
                fail_note = f" (failed: stock {len(st['failed'])}, LearnHub {len(lh['failed'])})"
            rows.append(
                Row(
                    f"{n} concurrent spawns: all ready{fail_note}",
                    fmt(st["all_ready_s"], "s", 1),
                    fmt(lv, "s", 1),
                    ratio(st["all_ready_s"], lv),
                    f"≤ {target:.0f} s" if target else "—",
                    verdict(lv, lv is not None and lv <= target) if target else "—",
                )
            )
            rows.append(
                Row(
                    f"{n} servers stopped at once: all gone",
                    fmt(st["stop_all_s"], "s", 1),
                    fmt(lh["stop_all_s"], "s", 1),
                    ratio(st["stop_all_s"], lh["stop_all_s"]),
                    "—",
                    "—",
                )
            )
            if "process_cpu_s" in st and "process_cpu_s" in lh:
                rows.append(
                    Row(
                        f"CPU to get {n} servers ready: servers (cgroups) + hub",
                        f"{st['servers_cpu_s_total']:.0f} + {st['process_cpu_s']['hub']:.1f} CPU-s",
                        f"{lh['servers_cpu_s_total']:.0f} + {lh['process_cpu_s']['hub']:.1f} CPU-s",
                        ratio(
                            st["servers_cpu_s_total"] + st["process_cpu_s"]["hub"],
                            lh["servers_cpu_s_total"] + lh["process_cpu_s"]["hub"],
                        ),
                        "—",
                        "—",
                    )
                )
            srss, lrss = st["rss_mib_running"], lh["rss_mib_running"]
            rows.append(
                Row(
                    f"hub + proxy RSS with {n} servers (LearnHub: + service)",
                    fmt((srss["hub"] or 0) + (srss["proxy"] or 0), "MiB", 0),
                    fmt(lrss["total"], "MiB", 0),
                    ratio((srss["hub"] or 0) + (srss["proxy"] or 0), lrss["total"]),
                    "—",
                    "—",
                )
            )
    wh = results.get("webhook")
    if wh and "error" not in wh:
        rows.append(
            Row(
                f"webhook → membership p50 / p99, one purchase at a time ({wh['latency_runs']})",
                "no equivalent",
                f"{wh['webhook_to_membership_p50_ms']:.0f} / "
                f"{wh['webhook_to_membership_p99_ms']:.0f} ms",
                "—",
                "—",
                "—",
            )
        )
        p99, eps = wh["loaded_webhook_to_membership_p99_ms"], wh["events_per_second"]
        rows.append(
            Row(
                f"webhook → membership p50 / p99 during a burst of {wh['burst_events']} events "
                f"({wh['burst_clients']} clients)",
                "no equivalent",
                f"{wh['loaded_webhook_to_membership_p50_ms']:.0f} / {p99:.0f} ms",
                "—",
                "p99 ≤ 300 ms",
                verdict(p99, p99 <= 300),
            )
        )
        rows.append(
            Row(
                "sustained webhook events/s during that burst",
                "no equivalent",
                f"{eps:.0f} /s",
                "—",
                "≥ 300 /s",
                verdict(eps, eps >= 300),
            )
        )
    elif wh:
        rows.append(Row("webhook → membership", "no equivalent", "error", "—", "", wh["error"]))
    ag = results.get("autograde")
    if ag and ag.get("available") and "sandboxed" in ag:
        s, lh = ag["stock"], ag["sandboxed"]
        n = ag.get("students", cfg["autograde_students"])
        rows.append(
            Row(
                f"autograde {n} submissions (stock: serial, unsandboxed; LearnHub: sandboxed, "
                f"{ag.get('parallel', '?')} parallel)",
                f"{s['seconds']:.1f} s ({s['full_marks']}/{n} full marks)",
                f"{lh['seconds']:.1f} s ({lh['full_marks']}/{n} full marks)",
                ratio(s["seconds"], lh["seconds"]),
                "≤ 16 s for 20",
                verdict(lh["seconds"], lh["seconds"] <= 16) if n == 20 else "not comparable (n≠20)",
            )
        )
    elif ag:
        reason = ag.get("reason") or ag.get("error") or "not available"
        rows.append(
            Row(
                "autograde 20 submissions",
                "not available",
                "not available",
                "—",
                "≤ 16 s",
                f"not measured: {reason}",
            )
        )
    cat = results.get("catalog")
    if cat:
        st, lh = cat["stock"], cat["LearnHub"]
        for key, name in (("p50_ms", "p50"), ("p95_ms", "p95")):
            rows.append(
                Row(
                    f"catalog {name}, {lh['clients']} concurrent clients ({lh['tool']}), "
                    f"{lh['requests']} GETs "
                    "(stock: `hub/login`, the nearest stock page)",
                    fmt(st[key], "ms", 0),
                    fmt(lh[key], "ms", 0),
                    ratio(st[key], lh[key]),
                    "≤ 50 ms" if name == "p95" else "—",
                    verdict(lh[key], lh[key] <= 50) if name == "p95" else "—",
                )
            )
        rows.append(
            Row(
                "  requests/s served during that load",
                f"{st['requests_per_s']:.0f}",
                f"{lh['requests_per_s']:.0f}",
                "—",
                "—",
                "—",
            )
        )
        if "cpu_ms_per_request" in st and "cpu_ms_per_request" in lh:
            rows.append(
                Row(
                    "  CPU ms per request: hub / proxy / LearnHub service / load generator",
                    cpu_split(st["cpu_ms_per_request"]),
                    cpu_split(lh["cpu_ms_per_request"]),
                    "—",
                    "—",
                    "—",
                )
            )
        direct = cat.get(DIRECT)
        if direct:
            rows.append(
                Row(
                    "  same load straight at the LearnHub service (no proxy): p50 / p95, req/s, "
                    "CPU ms per request",
                    "—",
                    f"{direct['p50_ms']:.0f} / {direct['p95_ms']:.0f} ms, "
                    f"{direct['requests_per_s']:.0f}/s, "
                    f"{cpu_split(direct.get('cpu_ms_per_request', {}))}",
                    "—",
                    "—",
                    "—",
                )
            )
    return rows


def cpu_split(per_request: dict[str, float]) -> str:
    """``hub / proxy / service / load generator`` CPU milliseconds per request, ``—`` if absent."""
    names = ("hub", "proxy", "service", "load generator")
    return " / ".join(f"{per_request[n]:.2f}" if n in per_request else "—" for n in names)


def markdown(rows: list[Row]) -> str:
    lines = [
        "| measure | stock | LearnHub | stock ÷ LearnHub | target (issue 6) | LearnHub vs target |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.measure} | {r.stock} | {r.learnhub} | {r.ratio} | {r.target} | {r.verdict} |"
        )
    return "\n".join(lines)


def image_info(name: str) -> dict[str, Any]:
    out = subprocess.run(
        ["docker", "image", "inspect", name, "--format", "{{json .}}"],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        return {"name": name, "present": False}
    info = json.loads(out.stdout)
    return {
        "name": name,
        "present": True,
        "id": info["Id"],
        "created": info["Created"],
        "size_mib": round(info["Size"] / 1024 / 1024),
        "context_hash": (info["Config"].get("Labels") or {}).get("learnhub.context-hash"),
    }


def learnhub_image_up_to_date() -> bool | None:
    """Whether learnhub/singleuser:latest was built from the current docker/singleuser/."""
    try:
        from hub.images import (
            DEFAULT_BASE_IMAGE,
            _connect,
            _image_labels,
            build_context,
            context_hash,
            default_specs,
        )

        client = _connect(timeout=60)
        try:
            base = _image_labels(client, DEFAULT_BASE_IMAGE)
            spec = default_specs(ROOT)[0]
            current = _image_labels(client, spec.name)
        finally:
            client.close()
        if base is None or current is None:
            return False
        with build_context(ROOT, spec) as ctx:
            wanted = context_hash(ctx, spec.build_args, base_id=base[0])
        return current[1].get("learnhub.context-hash") == wanted
    except Exception:
        return None


# --------------------------------------------------------------------------------------------


def git_commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True
    ).stdout.strip()
    return out + ("+dirty" if dirty else "")


async def main_async(args: argparse.Namespace) -> int:
    cfg = dict(QUICK if args.quick else FULL)
    cfg["catalog_tool"] = args.catalog_tool
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "config": cfg,
        "commit": git_commit(),
        "machine_at_start": machine(),
    }
    log(f"machine: {results['machine_at_start']['uptime']}")

    needs_hubs = bool({"spawn", "concurrent", "catalog"} & set(phases))
    setups: list[Setup] = []
    prefix = f"lhb{os.getpid()}"
    if needs_hubs:
        ensure_stock_image(log=log)
        if not image_info(LEARNHUB_IMAGE)["present"]:
            from hub.images import build_images

            build_images(ROOT, log=log)
        fresh = learnhub_image_up_to_date()
        if fresh is False:
            log(f"WARNING: {LEARNHUB_IMAGE} is older than docker/singleuser/ (measuring it as is)")
        results["images"] = {
            "stock": image_info(STOCK_IMAGE),
            "learnhub": {**image_info(LEARNHUB_IMAGE), "up_to_date": fresh},
        }
        work = Path(tempfile.mkdtemp(prefix="lh-bench-run-"))
        setups = [
            stock_setup(work / "stock", f"{prefix}-st", args.start_timeout),
            learnhub_setup(work / "learnhub", f"{prefix}-lh", args.start_timeout),
        ]
        (work / "stock").mkdir()
        (work / "learnhub").mkdir()
        results["workdir"] = str(work)
    try:
        for setup in setups:
            log(f"starting the {setup.label} hub ({setup.hub.url})")
            setup.hub.start()
        for phase in phases:
            log(f"--- phase {phase}")
            results.setdefault("loadavg_at_phase_start", {})[phase] = machine()["loadavg"]
            try:
                if phase == "spawn":
                    results["spawn"] = await phase_spawn(setups, cfg)
                elif phase == "concurrent":
                    results["concurrent"] = await phase_concurrent(setups, cfg)
                elif phase == "catalog":
                    results["catalog"] = await phase_catalog(setups, cfg)
                elif phase == "webhook":
                    results["webhook"] = await phase_webhook(cfg)
                elif phase == "autograde":
                    results["autograde"] = await asyncio.to_thread(phase_autograde, cfg)
            except Exception as exc:
                traceback.print_exc()
                results.setdefault("errors", {})[phase] = repr(exc)
                if phase in ("webhook", "autograde"):
                    results[phase] = {"error": repr(exc), "available": False}
                for setup in setups:
                    docker_cleanup(setup.prefix)
    finally:
        for setup in setups:
            with contextlib.suppress(Exception):
                setup.hub.stop()
            docker_cleanup(setup.prefix)
        docker_cleanup("learnhub-bench-sandbox")
    results["machine_at_end"] = machine()
    rows = table(results, cfg)
    results["table"] = [r.__dict__ for r in rows]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print()
    print(markdown(rows))
    print()
    print(
        f"machine: {results['machine_at_end']['nproc']} cores, "
        f"{results['machine_at_end']['memory_gib']} GiB; load average at start "
        f"{' '.join(results['machine_at_start']['loadavg'])}, at end "
        f"{' '.join(results['machine_at_end']['loadavg'])}"
    )
    print(f"wrote {out}")
    return 1 if results.get("errors") else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for development")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    parser.add_argument("--catalog-tool", choices=["auto", "curl", "httpx"], default="auto")
    parser.add_argument("--start-timeout", type=int, default=300, help="per server, both hubs")
    parser.add_argument(
        "--output", help="default: benchmarks/results/latest.json (--quick: latest-quick.json)"
    )
    args = parser.parse_args()
    if not args.output:
        args.output = str(RESULTS / ("latest-quick.json" if args.quick else "latest.json"))

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    try:
        return asyncio.run(main_async(args))
    finally:
        # Belt and braces: whatever happened above, nothing of this run stays behind.
        docker_cleanup(f"lhb{os.getpid()}")


if __name__ == "__main__":
    raise SystemExit(main())
