"""The two open targets of issue 15, measured through the public TLS edge, beside stock.

    .venv/bin/python benchmarks/edge.py [--quick] [--phases catalog,webhook] [--rate 300]
        [--events N] [--watch db|api] [--py-spy PATH]

One run starts, on loopback only:

- LearnHub as production runs it: Debian's nginx with the site file ``learnhub edge config``
  writes (TLS with a test CA's wildcard certificate for ``learn.test``, the anonymous catalog
  cached and revalidated by ETag), configurable-http-proxy, the Hub and the LearnHub service,
  with ``payments.provider: stripe`` pointed at the test suite's loopback Stripe stand-in;
- stock JupyterHub (``benchmarks/stock/``) behind the same nginx, in a server block with the
  same TLS settings and no cache (stock has no page that could be cached: its login page sets
  a cookie).

``catalog``: 100 concurrent HTTPS clients (curl, HTTP/1.1 keep-alive: one connection per
client, as 100 browsers would hold; a TLS handshake only when curl opens a connection) in a
closed loop, after a warm-up under the same load: LearnHub's catalog and stock's login page
through the edge, then both straight at their configurable-http-proxy (plain HTTP, how
docs/benchmarks.md measured them before). Reports p50/p95/p99, requests/s, the edge cache's
hit ratio (its ``X-LearnHub-Cache`` header), new connections per request, and the CPU per
request of nginx, CHP, the Hub, the service and curl.

``webhook``: purchases signed with the stripe library's own scheme, posted to the public
``https://learn.test:<port>/services/learnhub/stripe/webhook`` through nginx, which passes that
path straight to the service (everything else goes through CHP). First a few one at a time;
then an open loop: event *i* is due at ``start + i / rate`` and goes out on an idle keep-alive
TLS connection (32 are opened before the loop starts; a new one when none is idle, at most
256), whether or not earlier events have been answered, as Stripe sends them; each connection
is a blocking TLS socket on a thread of its own (OpenSSL does the TLS; asyncio's Python-level
TLS cost more CPU per event than nginx), all signed before the clock starts; the sender is a
process of its own, apart from the Stripe stand-in and the membership reader. The count and the
time are bounded (``--events``, ``--deadline``). For each buyer: the time from the moment the
webhook accepted its last event (and from the moment that event was due) to the moment it is a
member of the course group in the Hub. ``--watch db`` (default) reads the group from the Hub's
own SQLite database (WAL) every 25 ms; ``--watch api`` polls ``GET /hub/api/groups/<group>``
instead, which costs the Hub CPU that grows with the group (see docs/benchmarks.md, "Why the
webhook figures differed").

``--py-spy PATH`` records the Hub and the service with py-spy (from PyPI; not a dependency of
LearnHub) during the open loop, as raw stacks in the run's folder.

Prints a Markdown table (target, stock, LearnHub through the edge) with ``uptime``'s load
average at each phase, and writes ``benchmarks/results/edge.json`` (``--quick``:
``edge-quick.json``). A measurement, not a test: nothing fails when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import queue
import resource
import shutil
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    child_pids,
    cmdline,
    cpu_seconds,
    loadavg,
    machine,
    percentile,
    serve_at_root,
)
from benchmarks.stock.hub import StockHub  # noqa: E402
from benchmarks.stock.image import STOCK_IMAGE  # noqa: E402
from benchmarks.webhook import (  # noqa: E402
    COURSE,
    GROUP,
    POLL_SECONDS,
    SECRET,
    Connection,
    Watcher,
    process_ids,
    watcher_token,
    webhook_request,
)
from harness.docker import TEST_PREFIX, docker_cleanup  # noqa: E402
from harness.edge import DEBIAN_MAIN, EdgeCA, make_ca, run_nginx, wait_for_port  # noqa: E402
from harness.hub import HubProcess, hub_settings, run_learnhub  # noqa: E402
from harness.stripe_standin import API_KEY, StripeStandIn, open_course_checkout  # noqa: E402
from harness.system import free_port  # noqa: E402
from hub.store import Database  # noqa: E402

HOST = "learn.test"
RESULTS = ROOT / "benchmarks" / "results"
PHASES = ("catalog", "webhook")
#: The targets of issue 15 (from issue 6).
CATALOG_P95_TARGET_MS = 50.0
WEBHOOK_P99_TARGET_MS = 300.0
WEBHOOK_RATE_TARGET = 300.0

FULL = {
    "catalog_requests": 6000,
    "catalog_warmup": 1500,
    "catalog_clients": 100,
    "rate": WEBHOOK_RATE_TARGET,
    "events": 3000,
    "latency": 30,
    "deadline": 120.0,
    "connections": 32,
}
#: Connections the open loop opens at most (Stripe does not open thousands to one endpoint; at
#: a load of 60 an unbounded sender opened more than nginx's 768 per worker).
MAX_CONNECTIONS = 256
QUICK = {
    "catalog_requests": 2000,
    "catalog_warmup": 500,
    "catalog_clients": 100,
    "rate": WEBHOOK_RATE_TARGET,
    "events": 900,
    "latency": 10,
    "deadline": 60.0,
    "connections": 32,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def uptime() -> str:
    """What ``uptime`` says now (its load average is what the tables quote)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------------------------
# The stack


@dataclass
class EdgeHub(HubProcess):
    """LearnHub whose public URL is the edge; the benchmark's own API calls go to the proxy."""

    @property
    def url(self) -> str:
        return self.bind_url.replace("127.0.0.1", "localhost")


@dataclass
class Stack:
    """Everything one run started."""

    work: Path
    ca: EdgeCA
    hub: EdgeHub
    stock: StockHub | None
    standin: StripeStandIn
    nginx: subprocess.Popen[bytes] | None
    https_port: int
    stock_https_port: int
    #: The folder of the service's PostgreSQL cluster (``--database postgres``).
    postgres: Path | None = None

    @property
    def public(self) -> str:
        return f"https://{HOST}:{self.https_port}/"

    def nginx_pids(self) -> list[int]:
        if self.nginx is None:
            return []
        return [self.nginx.pid, *child_pids(self.nginx.pid)]

    def pids(self) -> dict[str, list[int]]:
        """Processes whose CPU the run reports, by role."""
        ids = process_ids(self.hub)
        out = {name: [pid] for name, pid in ids.items() if pid}
        service = ids.get("service")
        intake = (
            [p for p in child_pids(service) if "hub.billing.intake" in cmdline(p)]
            if service
            else []
        )
        if intake:
            out["webhook intake"] = intake
        out["nginx"] = self.nginx_pids()
        if self.stock is not None and self.stock.proc is not None:
            out["stock hub"] = [self.stock.proc.pid]
            proxy = self.stock.proxy_pid()
            if proxy:
                out["stock proxy"] = [proxy]
        return out


def cpu_of(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}


def run_queue_seconds(pid: int) -> float:
    """Time the threads of ``pid`` alive now have spent runnable but waiting for a CPU.

    The second field of each thread's ``/proc/<pid>/task/<tid>/schedstat``: on a loaded
    machine a process that uses little CPU may still be slow because it waits for one
    (threads that have exited are not counted).
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def run_queue_of(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(run_queue_seconds(p) for p in group) for name, group in pids.items()}


def stock_site(stack_ca: EdgeCA, port: int, upstream_port: int) -> str:
    """nginx server block for stock JupyterHub: the edge's TLS settings, no cache."""
    return f"""
server {{
    listen 127.0.0.1:{port} ssl http2;
    server_name {HOST};
    ssl_certificate "{stack_ca.chain_pem}";
    ssl_certificate_key "{stack_ca.key_pem}";
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:stock_tls:10m;
    ssl_session_timeout 1d;
    location / {{
        proxy_pass http://127.0.0.1:{upstream_port};
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_buffering off;
        proxy_request_buffering off;
    }}
}}
"""


PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: ``--database`` choices, as printed with each run.
DATABASES = {
    "sqlite": "SQLite (WAL, synchronous=FULL), LearnHub's default",
    "postgres": "PostgreSQL 15 on loopback (fsync and synchronous_commit on), production's",
}


def start_postgres() -> tuple[str, Path]:
    """A PostgreSQL cluster on loopback; returns the service's database URL and its folder.

    Production's durability, unlike the test suite's throwaway cluster: ``fsync``,
    ``synchronous_commit`` and ``full_page_writes`` keep PostgreSQL's defaults (on), so a
    commit, and the webhook's 200 after it, waits for the disk as on SQLite (FULL).
    """
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        raise SystemExit(
            f"--database postgres needs PostgreSQL 15 ({PG_BIN}/initdb) and runuser: "
            "apt-get install postgresql"
        )
    # A folder of its own: the run's folder is private to this user, not to postgres.
    base = Path(tempfile.mkdtemp(prefix="lh-bench-pg-"))
    shutil.chown(base, "postgres", "postgres")
    port = free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)

    as_postgres(str(PG_BIN / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres")
    as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(base / "data"),
        "-l",
        str(base / "log"),
        "-w",
        "-o",
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base}",
        "start",
    )
    as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "learnhub")
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/learnhub", base


def stop_postgres(base: Path) -> None:
    """Stop the cluster :func:`start_postgres` started in ``base`` and remove it."""
    stop = [str(PG_BIN / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "stop"]
    subprocess.run(["runuser", "-u", "postgres", "--", *stop], check=False, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def start_stack(
    work: Path, *, with_stock: bool, log_level: str, database: str, intake: bool = True
) -> Stack:
    """CA, Stripe stand-in, LearnHub (+ stock) and nginx in front; raises if one fails.

    ``database``: ``sqlite`` (LearnHub's default, a file under the data directory) or
    ``postgres`` (production's, docs/how-to/production.md) for the service's database.
    ``intake``: the webhook intake process (``hub.webhook_port``, as production.md sets it);
    without it the service takes webhooks itself.
    """
    ca = make_ca(work, HOST)
    standin = StripeStandIn().start()
    settings = hub_settings(work / "learnhub", courses_dir=ROOT / "courses")
    (work / "learnhub").mkdir()
    serve_at_root(settings)
    https_port, http_port, stock_https_port = free_port(), free_port(), free_port()
    settings["hub"]["public_url"] = f"https://{HOST}:{https_port}/"
    settings["hub"]["log_level"] = log_level
    if intake:
        settings["hub"]["webhook_port"] = free_port()
    settings["spawner"]["name_prefix"] = f"lhb{os.getpid()}-lh"
    settings["payments"] = {"provider": "stripe", "stripe_api_base": standin.url}
    settings["edge"] = {
        "certificate": str(ca.chain_pem),
        "certificate_key": str(ca.key_pem),
        "listen_address": "127.0.0.1",
        "http_port": http_port,
        "cache_dir": str(work / "nginx" / "cache"),
    }
    postgres = None
    if database == "postgres":
        url, postgres = start_postgres()
        settings["database"] = {"learnhub_url": url}
        standin.record_sessions_in = url
    else:
        standin.record_sessions_in = (
            f"sqlite:///{Path(settings['hub']['data_dir']) / 'service' / 'learnhub.sqlite'}"
        )
    hub = EdgeHub(
        workdir=work / "learnhub",
        settings=settings,
        extra_env={
            "LEARNHUB_STRIPE_SECRET_KEY": API_KEY,
            "LEARNHUB_STRIPE_WEBHOOK_SECRETS": SECRET,
        },
    )
    stock = None
    if with_stock:
        (work / "stock").mkdir()
        stock = StockHub(workdir=work / "stock", image=STOCK_IMAGE, prefix=f"lhb{os.getpid()}-st")
    stack = Stack(work, ca, hub, stock, standin, None, https_port, stock_https_port, postgres)
    log(f"starting LearnHub ({hub.url}, public {stack.public})")
    hub.start()
    if stock is not None:
        log(f"starting stock JupyterHub ({stock.url})")
        stock.start()
    site = work / "learnhub.conf"
    written = run_learnhub(hub, "edge", "config", "--output", str(site))
    if written.returncode != 0:
        raise RuntimeError(f"learnhub edge config failed:\n{written.stderr}")
    extra = ""
    if stock is not None:
        (work / "stock.conf").write_text(stock_site(ca, stock_https_port, stock.port))
        extra = f"  include {work / 'stock.conf'};\n"
    stack.nginx = run_nginx(work / "nginx", site, main=DEBIAN_MAIN, http=extra)
    wait_for_port(https_port, stack.nginx, work / "nginx" / "error.log")
    if stock is not None:
        wait_for_port(stock_https_port, stack.nginx, work / "nginx" / "error.log")
    return stack


def stop_stack(stack: Stack) -> None:
    if stack.nginx is not None and stack.nginx.poll() is None:
        stack.nginx.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            stack.nginx.wait(timeout=30)
    for hub in (stack.hub, stack.stock):
        if hub is not None:
            with contextlib.suppress(Exception):
                hub.stop()
    stack.standin.stop()
    if stack.postgres is not None:
        stop_postgres(stack.postgres)
    docker_cleanup(f"lhb{os.getpid()}")
    # The course networks (and their firewall chains) the Hub made, named by the harness.
    docker_cleanup(TEST_PREFIX)


# --------------------------------------------------------------------------------------------
# Catalog: 100 keep-alive HTTPS clients


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def curl_loop(
    url: str,
    warmup: int,
    requests: int,
    clients: int,
    curl_args: list[str],
    pids: dict[str, list[int]],
) -> dict[str, Any]:
    """``clients`` curl transfers at a time, each starting the next GET when it ends.

    HTTP/1.1, so each concurrent transfer holds its own keep-alive connection, as one browser
    per client would (with HTTP/2 curl would multiplex all of them on one connection). One curl
    process does the warm-up and the measured GETs, so the measured ones reuse the warm-up's
    connections: their TLS handshakes are behind them, as a browser's are after its first page.
    Each answer's line is read as curl writes it; the measurement starts at the line that ends
    the warm-up, and CPU is read there and at the last line (curl's own from /proc at the
    first, and from this process's children once curl has ended).
    Returns the measured rows (status, seconds, edge cache status, new connections), the
    wall time and the CPU seconds per process.
    """
    total = warmup + requests
    children_before = _children_cpu()
    with tempfile.NamedTemporaryFile("w", suffix=".curlrc") as cfg:
        cfg.write(f'url = "{url}"\noutput = "/dev/null"\n' * total)
        cfg.flush()
        proc = await asyncio.create_subprocess_exec(
            "curl", "--silent", "--no-progress-meter", "--show-error", "--http1.1", "--parallel",
            "--parallel-immediate", "--parallel-max", str(clients), *curl_args,
            "--write-out",
            "%{http_code} %{time_total} %{num_connects} [%header{x-learnhub-cache}]\n",
            "--config", cfg.name,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        rows: list[tuple[int, float, str, int]] = []
        start, before = time.perf_counter(), cpu_of(pids)
        end, after = start, before
        curl_at_start = 0.0
        while line := await proc.stdout.readline():
            code, seconds, connects, cache = line.decode().rstrip("\n").split(" ", 3)
            rows.append((int(code), float(seconds), cache.strip("[]"), int(connects)))
            if len(rows) == warmup:
                start, before = time.perf_counter(), cpu_of(pids)
                curl_at_start = cpu_seconds(proc.pid)
            if len(rows) == total:
                end, after = time.perf_counter(), cpu_of(pids)
        await proc.wait()
    # curl's CPU after the warm-up: all of it (this process's reaped children, which during
    # the run are curl alone) less what it had used when the warm-up ended.
    after["curl"] = _children_cpu() - children_before - curl_at_start
    before["curl"] = 0.0
    bad = {code for code, *_ in rows if code != 200}
    if bad or len(rows) != total:
        raise RuntimeError(f"{url}: {len(rows)} of {total} answered, statuses {sorted(bad)}")
    return {
        "rows": rows[warmup:],
        "wall": end - start,
        "cpu": {name: after[name] - before[name] for name in after},
    }


async def measure_page(
    label: str,
    url: str,
    curl_args: list[str],
    cfg: dict[str, Any],
    pids: dict[str, list[int]],
) -> dict[str, Any]:
    """Warm up and measure one closed loop; CPU per request of each process and of curl."""
    log(f"{label}: {cfg['catalog_warmup']} + {cfg['catalog_requests']} GETs of {url}")
    load_before = loadavg()
    run = await curl_loop(
        url,
        cfg["catalog_warmup"],
        cfg["catalog_requests"],
        cfg["catalog_clients"],
        curl_args,
        pids,
    )
    rows, wall, cpu = run["rows"], run["wall"], run["cpu"]
    latencies = [seconds for _, seconds, _, _ in rows]
    statuses: dict[str, int] = {}
    caches: dict[str, int] = {}
    for code, _, cache, _ in rows:
        statuses[str(code)] = statuses.get(str(code), 0) + 1
        caches[cache or "-"] = caches.get(cache or "-", 0) + 1
    hits = caches.get("HIT", 0)
    result = {
        "url": url,
        "requests": len(rows),
        "clients": cfg["catalog_clients"],
        "statuses": statuses,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "requests_per_s": len(rows) / wall,
        "cache": caches,
        "cache_hit_ratio": hits / len(rows) if any(c != "-" for c in caches) else None,
        "new_connections_per_request": sum(r[3] for r in rows) / len(rows),
        "cpu_ms_per_request": {k: round(v * 1000 / len(rows), 3) for k, v in cpu.items() if v},
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    per = ", ".join(f"{k} {v:.3f}" for k, v in result["cpu_ms_per_request"].items())
    log(
        f"{label}: p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, p99 "
        f"{result['p99_ms']:.1f} ms, {result['requests_per_s']:.0f} req/s, cache {caches}, "
        f"new connections/request {result['new_connections_per_request']:.3f}; "
        f"CPU ms/request: {per}"
    )
    return result


async def phase_catalog(stack: Stack, cfg: dict[str, Any]) -> dict[str, Any]:
    tls = ["--cacert", str(stack.ca.ca_pem)]
    pids = stack.pids()
    chp_port = int(stack.hub.bind_url.rsplit(":", 1)[1].strip("/"))
    runs: list[tuple[str, str, list[str]]] = []
    if stack.stock is not None:
        runs.append((
            "stock through the edge",
            f"https://{HOST}:{stack.stock_https_port}/hub/login",
            [*tls, "--resolve", f"{HOST}:{stack.stock_https_port}:127.0.0.1"],
        ))  # fmt: skip
    runs.append((
        "LearnHub through the edge",
        f"{stack.public}services/learnhub/",
        [*tls, "--resolve", f"{HOST}:{stack.https_port}:127.0.0.1"],
    ))  # fmt: skip
    if stack.stock is not None and not cfg["quick"]:
        runs.append(("stock, CHP only", f"{stack.stock.url}hub/login", []))
    # The proxy routes by host (subdomains): ask for the public host name at CHP's port.
    runs.append((
        "LearnHub, CHP only",
        f"http://{HOST}:{chp_port}/services/learnhub/",
        ["--resolve", f"{HOST}:{chp_port}:127.0.0.1"],
    ))  # fmt: skip
    out = {}
    for label, url, args in runs:
        out[label] = await measure_page(label, url, args, cfg, pids)
    return out


# --------------------------------------------------------------------------------------------
# Webhook: an open loop through the edge


class DatabaseWatcher(threading.Thread):
    """Reads the course group's members from the Hub's own SQLite database every 25 ms.

    What the Hub's API would answer, without the Hub's CPU: JupyterHub commits a group change
    before it answers the POST, and its database runs in WAL mode, so a reader sees each commit
    as it lands and blocks no one.
    """

    def __init__(self, database: Path, wanted: set[str]) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.wanted = set(wanted)
        self.seen_at: dict[str, float] = {}
        self.polls = 0
        self.cpu = 0.0
        self.stop = threading.Event()

    def members(self, db: sqlite3.Connection) -> set[str]:
        self.polls += 1
        rows = db.execute(
            "SELECT users.name FROM users JOIN user_group_map m ON m.user_id = users.id "
            "JOIN groups ON groups.id = m.group_id WHERE groups.name = ?",
            (GROUP,),
        )
        return {name for (name,) in rows}

    def run(self) -> None:
        start = time.thread_time()
        db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10)
        try:
            while not self.stop.is_set() and not self.wanted <= self.seen_at.keys():
                now_members = self.members(db)
                now = time.perf_counter()
                for user in (now_members & self.wanted) - self.seen_at.keys():
                    self.seen_at[user] = now
                self.stop.wait(POLL_SECONDS)
        finally:
            db.close()
            self.cpu = time.thread_time() - start


class Pool:
    """Keep-alive TLS connections to the edge: an idle one for each event, else a new one."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.port = port
        self.context = context
        self.idle: list[Connection] = []
        self.opened = 0

    async def get(self) -> Connection:
        if self.idle:
            return self.idle.pop()
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self.context, server_hostname=HOST
        )
        self.opened += 1
        return Connection(reader, writer)

    async def warm(self, count: int) -> None:
        """Open ``count`` connections before the load, as a sender that has been delivering
        for a while holds them (TLS handshakes are not what the open loop measures)."""
        opened = await asyncio.gather(*(self.get() for _ in range(count)))
        self.idle.extend(opened)

    def put(self, conn: Connection) -> None:
        self.idle.append(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()


class BlockingConnection:
    """One keep-alive TLS connection to the edge, used from one thread at a time.

    Blocking sockets: TLS records are read and written by OpenSSL itself, without asyncio's
    Python-level TLS layer, which made the sender cost more CPU per event than nginx.
    """

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname=HOST)
        self.reader = self.sock.makefile("rb")

    def send(self, request: bytes) -> int:
        """Send ``request``; read the whole answer; return its status."""
        self.sock.sendall(request)
        status = int(self.reader.readline().split(b" ", 2)[1])
        length, chunked = 0, False
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            self.reader.read(length)
            return status
        while size := int(self.reader.readline().strip(), 16):
            self.reader.read(size + 2)
        self.reader.readline()
        return status

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
            self.sock.close()


def open_loop(
    port: int, cafile: str, requests: list[bytes], rate: float, connections: int, deadline: float
) -> dict[str, Any]:
    """Send ``requests[i]`` at ``start + i / rate`` on an idle keep-alive TLS connection (a new
    one, with a sender thread of its own, when none is idle), whatever happened to the earlier
    ones; wait for the answers at most ``deadline`` seconds after the last is due. Returns the
    times (``time.perf_counter``, CLOCK_MONOTONIC, comparable across processes), the statuses
    and this process's CPU."""
    cpu_start = time.process_time()
    context = ssl.create_default_context(cafile=cafile)
    n = len(requests)
    due, sent, answered = [0.0] * n, [0.0] * n, [0.0] * n
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    work: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    idle = threading.Semaphore(0)  # one token per sender waiting for work
    senders: list[threading.Thread] = []
    opened = [0]

    def sender(conn: BlockingConnection | None, *, waiting: bool) -> None:
        # A sender opened for an event already queued does not announce itself idle first.
        conn = conn or new_connection()
        while True:
            if waiting:
                idle.release()
            waiting = True
            i = work.get()
            if i is None:
                conn.close()
                return
            sent[i] = time.perf_counter()
            try:
                status = conn.send(requests[i])
            except (OSError, ValueError, IndexError):
                status = 0
                conn.close()
            answered[i] = time.perf_counter()
            with lock:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 0:
                try:
                    conn = new_connection()
                except OSError:
                    return  # the edge refuses connections: this sender stops

    def new_connection() -> BlockingConnection:
        with lock:
            opened[0] += 1
        return BlockingConnection(port, context)

    def add_sender(conn: BlockingConnection | None, *, waiting: bool) -> None:
        thread = threading.Thread(
            target=sender, args=(conn,), kwargs={"waiting": waiting}, daemon=True
        )
        thread.start()
        senders.append(thread)

    # Opened before the load, as a sender that has been delivering for a while holds them
    # (TLS handshakes are not what the open loop measures).
    for _ in range(connections):
        add_sender(new_connection(), waiting=True)
    start = time.perf_counter()
    for i in range(n):
        due[i] = start + i / rate
        delay = due[i] - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if not idle.acquire(blocking=False) and len(senders) < MAX_CONNECTIONS:
            # Every connection waits for an answer: one more, opened on its own thread (the
            # schedule does not wait for its handshake; the first sender free takes the event).
            # Past MAX_CONNECTIONS the event waits for a free one (its send lag says so).
            add_sender(None, waiting=False)
        work.put(i)
    sending = time.perf_counter() - start
    until = time.perf_counter() + deadline
    while sum(1 for t in answered if t) < n and time.perf_counter() < until:
        time.sleep(0.05)
    for _ in senders:
        work.put(None)
    return {
        "start": start,
        "sending": sending,
        "due": due,
        "sent": sent,
        "answered": answered,
        "statuses": statuses,
        "opened": opened[0],
        "cpu": time.process_time() - cpu_start,
    }


def run_open_loop(*args: Any) -> dict[str, Any]:
    """:func:`open_loop` in a process of its own (the generator's CPU and GIL are its own)."""
    return open_loop(*args)


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": statistics.median(values) * 1000,
        "p95_ms": percentile(values, 0.95) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "max_ms": max(values) * 1000,
    }


async def phase_webhook(stack: Stack, cfg: dict[str, Any], args: argparse.Namespace) -> Any:
    hub, standin = stack.hub, stack.standin
    webhook = f"{stack.public}services/learnhub/stripe/webhook"
    context = ssl.create_default_context(cafile=str(stack.ca.ca_pem))
    pool = Pool(stack.https_port, context)
    events_wanted = int(cfg["events"])
    rate = float(cfg["rate"])
    # Every purchase of a one-off course is two events (checkout.session.completed,
    # payment_intent.succeeded); buyers must exist in the Hub to be put in its group.
    buyers = [f"buyer-{i}" for i in range((events_wanted + 1) // 2)]
    one_by_one = [f"single-{i}" for i in range(int(cfg["latency"]))]
    log(f"creating {len(buyers) + len(one_by_one)} Hub users and their checkout sessions")
    everyone = one_by_one + buyers
    for i in range(0, len(everyone), 200):
        r = hub.api("POST", "/users", json={"usernames": everyone[i : i + 200]})
        if r.status_code not in (201, 409):
            raise RuntimeError(f"creating users failed: {r.status_code} {r.text}")
    # The service's own database records each session as its checkout would (one connection
    # for all of them: a Database per session made this the slowest part of the run).
    assert standin.record_sessions_in is not None
    recorder = Database(standin.record_sessions_in)
    client = standin.client()
    try:
        sessions = {
            user: open_course_checkout(client, user, COURSE, 6900, COURSE, recorder)
            for user in everyone
        }
    finally:
        recorder.dispose()
    database = Path(hub.settings["hub"]["data_dir"]) / "jupyterhub.sqlite"
    token = watcher_token(hub) if args.watch == "api" else ""

    # One purchase at a time, through the edge.
    single: list[float] = []
    probe = DatabaseWatcher(database, set())
    probe_db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    for user in one_by_one:
        requests = [
            webhook_request(webhook, e) for e in standin.sim.complete_checkout(sessions[user])
        ]
        start = time.perf_counter()
        for request in requests:
            conn = await pool.get()
            status, body = await conn.send(request)
            pool.put(conn)
            if status != 200:
                raise RuntimeError(f"webhook answered {status}: {body[:200]!r}")
        while user not in probe.members(probe_db):
            await asyncio.sleep(0.005)
        single.append(time.perf_counter() - start)
    probe_db.close()
    log(f"one at a time ({len(single)}): p50 {statistics.median(single) * 1000:.0f} ms")

    # The open loop: every event signed and its request built first (~0.3 ms each).
    items: list[tuple[str, bytes]] = []
    last_of: dict[str, int] = {}
    for user in buyers:
        for event in standin.sim.complete_checkout(sessions[user]):
            if len(items) == events_wanted:
                break
            last_of[user] = len(items)
            items.append((user, webhook_request(webhook, event)))
    buyers = [u for u in buyers if u in last_of]
    n = len(items)
    watcher: DatabaseWatcher | Watcher
    if args.watch == "api":
        watcher = Watcher(hub.api_url, token, set(buyers))
    else:
        watcher = DatabaseWatcher(database, set(buyers))
    pids = stack.pids()
    pids.pop("stock hub", None)
    pids.pop("stock proxy", None)
    # The generator runs in a process of its own: in this one it shared a GIL with the Stripe
    # stand-in and the membership reader, and sent events seconds late under load.
    loop = asyncio.get_running_loop()
    sender = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    await loop.run_in_executor(sender, int)  # started, with this module imported
    spies = start_py_spy(args.py_spy, pids, stack.work, n / rate + 10)
    load_before = uptime()
    before = cpu_of(pids)
    waited_before = run_queue_of(pids)
    own_before = cpu_seconds(os.getpid())
    watcher.start()
    try:
        out = await loop.run_in_executor(
            sender,
            run_open_loop,
            stack.https_port,
            str(stack.ca.ca_pem),
            [request for _, request in items],
            rate,
            int(cfg["connections"]),
            float(cfg["deadline"]),
        )
    finally:
        sender.shutdown()
    start, sending, statuses = out["start"], out["sending"], out["statuses"]
    due, sent, answered = out["due"], out["sent"], out["answered"]
    accepted = max(answered) - start
    deadline = start + n / rate + float(cfg["deadline"])
    await asyncio.to_thread(watcher.join, max(0.0, deadline - time.perf_counter()))
    watcher.stop.set()
    window = time.perf_counter() - start
    cpu = {name: value - before[name] for name, value in cpu_of(pids).items()}
    waited = {name: value - waited_before[name] for name, value in run_queue_of(pids).items()}
    cpu["load generator"] = out["cpu"]
    cpu["benchmark process (stand-in, reader)"] = cpu_seconds(os.getpid()) - own_before
    load_after = uptime()
    for spy in spies:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(timeout=60)
    pool.close()
    seen = watcher.seen_at
    missing = [u for u in buyers if u not in seen]
    # A buyer whose last event was never answered (by the deadline) has no acceptance time:
    # counted among the unanswered, not in the latency.
    answered_buyers = [u for u in buyers if u in seen and answered[last_of[u]]]
    from_accepted = [max(0.0, seen[u] - answered[last_of[u]]) for u in answered_buyers]
    from_due = [max(0.0, seen[u] - due[last_of[u]]) for u in buyers if u in seen]
    lag = [sent[i] - due[i] for i in range(n) if sent[i]]
    answer = [answered[i] - sent[i] for i in range(n) if answered[i] and sent[i]]
    result = {
        "events": n,
        "buyers": len(buyers),
        "rate_target": rate,
        "watch": args.watch,
        "single_purchases": len(single),
        "single_p50_ms": statistics.median(single) * 1000,
        "single_p99_ms": percentile(single, 0.99) * 1000,
        "sent_per_s": n / sending,
        "accepted_per_s": sum(1 for t in answered if t) / accepted,
        "unanswered_by_deadline": sum(1 for t in answered if not t),
        "statuses": statuses,
        "connections_opened": out["opened"],
        "send_lag": summary(lag),
        "answer": summary(answer),
        "accepted_to_member": summary(from_accepted),
        "due_to_member": summary(from_due),
        "buyers_not_members_by_deadline": len(missing),
        "all_members_s": (max(seen.values()) - start) if seen else None,
        # Per buyer, in the order their last event was due: seconds from the start to its
        # acceptance, and milliseconds from acceptance to membership (where the tail comes
        # from: a stall shows as a run of late buyers).
        "timeline": [
            [round(answered[last_of[u]] - start, 3), round((seen[u] - answered[last_of[u]]) * 1000)]
            for u in answered_buyers
        ],
        "window_s": window,
        "cpu_ms_per_event": {k: round(v * 1000 / n, 3) for k, v in cpu.items()},
        "run_queue_ms_per_event": {k: round(v * 1000 / n, 3) for k, v in waited.items()},
        "membership_polls": watcher.polls,
        "watcher_cpu_s": round(watcher.cpu, 3),
        "uptime_before": load_before,
        "uptime_after": load_after,
    }
    log(
        f"open loop: {n} events due at {rate:.0f}/s, sent at {result['sent_per_s']:.0f}/s, "
        f"accepted at {result['accepted_per_s']:.0f}/s, statuses {statuses}; accepted → "
        f"member p50/p95/p99 {fmt_ms(result['accepted_to_member'])}; not members "
        f"{len(missing)}; CPU ms/event {result['cpu_ms_per_event']}; waiting for a CPU "
        f"ms/event {result['run_queue_ms_per_event']}"
    )
    return result


def start_py_spy(
    py_spy: str | None, pids: dict[str, list[int]], work: Path, seconds: float
) -> list[subprocess.Popen[bytes]]:
    """py-spy recording the Hub and the service for ``seconds`` (raw stacks in ``work``)."""
    if not py_spy:
        return []
    spies = []
    for name in ("hub", "service", "webhook intake"):
        for pid in pids.get(name, []):
            out = work / f"py-spy-{name}.txt"
            spies.append(
                subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "-p",
                        str(pid),
                        "-d",
                        str(int(seconds) + 1),
                        "-r",
                        "100",
                        "-f",
                        "raw",
                        "-o",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            log(f"py-spy recording {name} ({pid}) into {out}")
    return spies


# --------------------------------------------------------------------------------------------
# The table


def fmt_ms(values: dict[str, float | None]) -> str:
    parts = [values.get(k) for k in ("p50_ms", "p95_ms", "p99_ms")]
    return " / ".join("-" if v is None else f"{v:.0f}" for v in parts) + " ms"


def met(value: float | None, target: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value <= target else "**not met**"


def table(results: dict[str, Any]) -> str:
    rows = [
        "| measure | target | stock | LearnHub through the edge | LearnHub vs target |",
        "|---|---|---|---|---|",
    ]
    cat = results.get("catalog") or {}
    lh = cat.get("LearnHub through the edge")
    st = cat.get("stock through the edge")
    if lh:
        stock_cell = (
            f"{st['p50_ms']:.0f} / {st['p95_ms']:.0f} / {st['p99_ms']:.0f} ms, "
            f"{st['requests_per_s']:.0f} req/s (`hub/login`)"
            if st
            else "-"
        )
        hit = lh["cache_hit_ratio"]
        rows.append(
            f"| catalog p50 / p95 / p99, {lh['clients']} HTTPS keep-alive clients, "
            f"{lh['requests']} GETs | p95 ≤ {CATALOG_P95_TARGET_MS:.0f} ms | {stock_cell} | "
            f"{lh['p50_ms']:.0f} / {lh['p95_ms']:.0f} / {lh['p99_ms']:.0f} ms, "
            f"{lh['requests_per_s']:.0f} req/s, cache hits "
            f"{'-' if hit is None else f'{hit:.1%}'} | "
            f"{met(lh['p95_ms'], CATALOG_P95_TARGET_MS)} |"
        )
    for label in ("stock, CHP only", "LearnHub, CHP only"):
        if label in cat:
            r = cat[label]
            rows.append(
                f"| {label} (plain HTTP, as measured before) | - | "
                + (
                    f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f} / {r['p99_ms']:.0f} ms, "
                    f"{r['requests_per_s']:.0f} req/s | - | - |"
                    if label.startswith("stock")
                    else f"- | {r['p50_ms']:.0f} / {r['p95_ms']:.0f} / {r['p99_ms']:.0f} ms, "
                    f"{r['requests_per_s']:.0f} req/s | - |"
                )
            )
    wh = results.get("webhook")
    if wh and "accepted_to_member" in wh:
        p99 = wh["accepted_to_member"]["p99_ms"]
        ok = met(p99, WEBHOOK_P99_TARGET_MS)
        if (
            wh["accepted_per_s"] < WEBHOOK_RATE_TARGET * 0.95
            or wh["buyers_not_members_by_deadline"]
            or wh.get("unanswered_by_deadline")
        ):
            ok = "**not met**"
        rows.append(
            f"| webhook accepted → member p50 / p95 / p99, open loop {wh['events']} events due "
            f"at {wh['rate_target']:.0f}/s through the edge | p99 ≤ "
            f"{WEBHOOK_P99_TARGET_MS:.0f} ms at {WEBHOOK_RATE_TARGET:.0f}/s | no equivalent | "
            f"{fmt_ms(wh['accepted_to_member'])}; accepted at {wh['accepted_per_s']:.0f}/s; "
            f"{wh.get('unanswered_by_deadline', 0)} events unanswered, "
            f"{wh['buyers_not_members_by_deadline']} buyers not members by the deadline | {ok} |"
        )
        rows.append(
            f"| the same from the moment each event was due | - | no equivalent | "
            f"{fmt_ms(wh['due_to_member'])} | - |"
        )
        rows.append(
            f"| webhook answer p50 / p95 / p99 (through nginx) | - | no equivalent | "
            f"{fmt_ms(wh['answer'])} | - |"
        )
        rows.append(
            f"| one purchase at a time ({wh['single_purchases']}), p50 / p99 | - | no equivalent "
            f"| {wh['single_p50_ms']:.0f} / {wh['single_p99_ms']:.0f} ms | - |"
        )
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------


def git_commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out + ("+dirty" if dirty else "")


async def main_async(args: argparse.Namespace) -> int:
    cfg: dict[str, Any] = {**(QUICK if args.quick else FULL), "quick": args.quick}
    for key in ("rate", "events", "deadline"):
        if getattr(args, key):
            cfg[key] = getattr(args, key)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}; known: {PHASES}")
    if not shutil.which("curl") and "catalog" in phases:
        raise SystemExit("curl not found: apt-get install curl (it is the catalog's load)")
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "config": cfg,
        "commit": git_commit(),
        "database": args.database,
        "machine_at_start": machine(),
        "uptime": {},
    }
    log(f"machine: {results['machine_at_start']['uptime']}")
    log(f"the service's database: {DATABASES[args.database]}")
    results["webhook_intake"] = not args.no_intake
    log("webhooks: " + ("the service itself" if args.no_intake else "the webhook intake process"))
    work = Path(tempfile.mkdtemp(prefix="lh-bench-edge-"))
    results["workdir"] = str(work)
    stack = None
    errors = {}
    try:
        stack = start_stack(
            work,
            with_stock="catalog" in phases,
            log_level=args.log_level,
            database=args.database,
            intake=not args.no_intake,
        )
        for phase in phases:
            results["uptime"][f"{phase} start"] = uptime()
            log(f"--- phase {phase}: {results['uptime'][f'{phase} start']}")
            try:
                if phase == "catalog":
                    results["catalog"] = await phase_catalog(stack, cfg)
                else:
                    results["webhook"] = await phase_webhook(stack, cfg, args)
            except Exception as exc:  # reported; the next phase still runs
                traceback.print_exc()
                errors[phase] = repr(exc)
            results["uptime"][f"{phase} end"] = uptime()
    finally:
        if stack is not None:
            stop_stack(stack)
    results["errors"] = errors
    results["machine_at_end"] = machine()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print()
    print(table(results))
    print()
    for moment, text in results["uptime"].items():
        print(f"- {moment}: `{text}`")
    print(f"\nthe service's database: {DATABASES[args.database]}")
    print(f"wrote {out}; logs in {work}")
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="under ~3 minutes, smaller counts")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    parser.add_argument("--rate", type=float, help="webhook events/s (default 300)")
    parser.add_argument("--events", type=int, help="webhook events in the open loop")
    parser.add_argument("--deadline", type=float, help="seconds to wait for the last member")
    parser.add_argument("--watch", choices=["db", "api"], default="db")
    parser.add_argument("--log-level", default="WARNING", help="of the Hub and the service")
    parser.add_argument("--py-spy", help="path of a py-spy binary: record the Hub and service")
    parser.add_argument(
        "--database",
        choices=sorted(DATABASES),
        default="sqlite",
        help="the service's database: sqlite (default) or postgres (production's; a local "
        "PostgreSQL 15 cluster, started and stopped by the run)",
    )
    parser.add_argument(
        "--no-intake",
        action="store_true",
        help="the service takes webhooks itself (no hub.webhook_port; the demo's way)",
    )
    parser.add_argument("--output", help="default: benchmarks/results/edge[-quick].json")
    args = parser.parse_args()
    if not args.output:
        args.output = str(RESULTS / ("edge-quick.json" if args.quick else "edge.json"))
    try:
        return asyncio.run(main_async(args))
    finally:
        docker_cleanup(f"lhb{os.getpid()}")


if __name__ == "__main__":
    raise SystemExit(main())
