"""Webhook → membership latency and sustained webhook throughput (a measurement, not a test).

Starts a real LearnHub hub + proxy + service with `payments.provider: stripe` pointed at the
loopback Stripe stand-in of the test suite. For each purchase it signs Stripe's events with the
real `stripe` library, posts them through the public proxy and polls the Hub API until the buyer
is in the course group (latency on a quiet hub). Then it posts a burst of purchases from several
concurrent clients and reports events per second, the time until every buyer is a member, and
each buyer's webhook → membership latency under that load (from the moment the last of its
events was accepted, and also from the moment it was sent, to the first membership poll, every
25 ms, that shows it in the group).

The load generator shares the machine's cores with what it measures, so it is kept lean: every
event is signed and its whole HTTP request built before the burst (the signatures stay well
within Stripe's 300 s tolerance), and the requests go out on raw keep-alive connections. The
JSON reports the CPU time of every process during the burst: the hub, the LearnHub service,
the proxy (CHP), and in this process the generator, the membership poller and the Stripe
stand-in (which the service re-fetches from), each on its own.

    .venv/bin/python benchmarks/webhook.py [--latency 50] [--burst 300] [--clients 8]
        [--rate EVENTS_PER_S] [--stripe-latency-ms MS] [--log-level INFO]

`--rate` paces the burst (open loop, each client at its share of the rate) instead of sending
as fast as the webhook answers; `--stripe-latency-ms` makes the stand-in answer as slowly as
Stripe over the internet. `benchmarks/run.py` calls :func:`run` as part of the side-by-side
benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import stripe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import child_pids, cmdline, cpu_seconds, loadavg, percentile  # noqa: E402
from harness.hub import HubProcess, hub_settings  # noqa: E402
from harness.stripe_standin import API_KEY, StripeStandIn  # noqa: E402

COURSE = "algorithms-in-python"
GROUP = f"course-{COURSE}"
SECRET = "whsec_" + secrets.token_hex(16)
#: How often the membership poller asks the Hub.
POLL_SECONDS = 0.025


def new_session(standin: StripeStandIn, user: str) -> str:
    return standin.course_checkout(user, COURSE, 6900, COURSE)


def webhook_request(url: str, event: dict[str, Any]) -> bytes:
    """The complete HTTP/1.1 request Stripe would send for ``event``, signed now."""
    payload = json.dumps(event).encode()
    header = stripe.WebhookSignature.generate_signature_header(payload.decode(), SECRET)
    parts = urlsplit(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nStripe-Signature: {header}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


class Connection:
    """One keep-alive HTTP/1.1 connection that sends ready-made requests (cheap on the CPU)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request``; return the status and the body."""
        self.writer.write(request)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = 0
        chunked = False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        body = b""
        while size := int((await self.reader.readline()).strip(), 16):
            body += await self.reader.readexactly(size + 2)
        await self.reader.readline()
        return status, body

    def close(self) -> None:
        self.writer.close()


class Watcher(threading.Thread):
    """Polls the course group every 25 ms on its own thread; records when each buyer shows up.

    Its own thread, so that its CPU time is told apart from the generator's
    (``time.thread_time``).
    """

    def __init__(self, api_url: str, token: str, wanted: set[str]) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(api_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port
        self.path = f"{parts.path}/groups/{GROUP}"
        self.headers = {"Authorization": f"token {token}"}
        self.wanted = set(wanted)
        self.seen_at: dict[str, float] = {}
        self.polls = 0
        self.cpu = 0.0
        self.stop = threading.Event()

    def members(self, conn: http.client.HTTPConnection) -> set[str]:
        conn.request("GET", self.path, headers=self.headers)
        response = conn.getresponse()
        body = response.read()
        self.polls += 1
        return set(json.loads(body)["users"])

    def run(self) -> None:
        start = time.thread_time()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            while not self.stop.is_set() and not self.wanted <= self.seen_at.keys():
                now_members = self.members(conn)
                now = time.perf_counter()
                for user in (now_members & self.wanted) - self.seen_at.keys():
                    self.seen_at[user] = now
                self.stop.wait(POLL_SECONDS)
        finally:
            conn.close()
            self.cpu = time.thread_time() - start


def watcher_token(hub: HubProcess) -> str:
    """A token that may read groups, made by the Hub (so it is cheap to check).

    The admin token comes from the config, and JupyterHub hashes such tokens 16384 times on every
    request: polling with it would cost the hub ~2 ms per poll that the platform never pays.
    """
    name = "bench-watcher"
    hub.api("POST", f"/users/{name}", json={"admin": True}).raise_for_status()
    response = hub.api(
        "POST", f"/users/{name}/tokens", json={"scopes": ["read:groups"], "note": "benchmark"}
    )
    response.raise_for_status()
    return str(response.json()["token"])


def process_ids(hub: HubProcess) -> dict[str, int | None]:
    """The hub, the LearnHub service and the proxy (configurable-http-proxy)."""
    assert hub.proc is not None
    children = child_pids(hub.proc.pid)
    service = next((p for p in children if "hub.service" in cmdline(p)), None)
    proxy = next((p for p in children if "configurable-http-proxy" in cmdline(p)), None)
    return {"hub": hub.proc.pid, "service": service, "proxy": proxy}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rate = float(getattr(args, "rate", 0) or 0)
    stripe_latency = float(getattr(args, "stripe_latency_ms", 0) or 0) / 1000
    standin = StripeStandIn().start()
    work = Path(tempfile.mkdtemp(prefix="lh-webhook-"))
    settings = hub_settings(work, courses_dir=ROOT / "courses")
    settings["hub"]["log_level"] = getattr(args, "log_level", None) or "WARNING"
    settings["payments"] = {"provider": "stripe", "stripe_api_base": standin.url}
    standin.record_sessions_in = f"sqlite:///{work / 'var' / 'service' / 'learnhub.sqlite'}"
    hub = HubProcess(
        workdir=work,
        settings=settings,
        extra_env={
            "LEARNHUB_STRIPE_SECRET_KEY": API_KEY,
            "LEARNHUB_STRIPE_WEBHOOK_SECRETS": SECRET,
        },
    )
    hub.start()
    webhook = hub.url + "services/learnhub/stripe/webhook"
    total = args.latency + args.burst
    users = [f"buyer-{i}" for i in range(total)]
    hub.api("POST", "/users", json={"usernames": users})
    load_start = loadavg()
    try:
        token = watcher_token(hub)
        # Stripe holds every checkout session before its events are sent.
        sessions = {user: new_session(standin, user) for user in users}
        standin.latency = stripe_latency
        latencies = []
        conn = await Connection.open(webhook)
        poll = Watcher(hub.api_url, token, set())
        poll_conn = http.client.HTTPConnection(poll.host, poll.port, timeout=60)
        for user in users[: args.latency]:
            requests = [
                webhook_request(webhook, e) for e in standin.sim.complete_checkout(sessions[user])
            ]
            start = time.perf_counter()
            for request in requests:
                status, body = await conn.send(request)
                assert status == 200, body
            while user not in await asyncio.to_thread(poll.members, poll_conn):
                await asyncio.sleep(0.005)
            latencies.append(time.perf_counter() - start)
        poll_conn.close()

        burst_users = users[args.latency :]
        queue: list[tuple[str, bytes]] = []
        pending: dict[str, int] = {}
        for user in burst_users:
            for event in standin.sim.complete_checkout(sessions[user]):
                queue.append((user, webhook_request(webhook, event)))
                pending[user] = pending.get(user, 0) + 1
        connections = [await Connection.open(webhook) for _ in range(args.clients)]
        accepted_at: dict[str, float] = {}
        sent_at: dict[str, float] = {}
        answer_times: list[float] = []
        pids = process_ids(hub)
        watcher = Watcher(hub.api_url, token, set(burst_users))
        cpu_before = {k: cpu_seconds(v) for k, v in pids.items()}
        self_before = cpu_seconds(os.getpid())
        generator_before = time.thread_time()
        load_burst = loadavg()
        watcher.start()
        start = time.perf_counter()

        async def client(index: int, conn: Connection, items: list[tuple[str, bytes]]) -> None:
            for k, (user, request) in enumerate(items):
                if rate:
                    # Open loop: this client's k-th event is due at its slot of the rate.
                    delay = start + (index + k * args.clients) / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                sent = time.perf_counter()
                status, body = await conn.send(request)
                now = time.perf_counter()
                assert status == 200, body
                answer_times.append(now - sent)
                pending[user] -= 1
                if not pending[user]:
                    accepted_at[user] = now
                    sent_at[user] = sent

        await asyncio.gather(
            *(client(i, connections[i], queue[i :: args.clients]) for i in range(args.clients))
        )
        accepted = time.perf_counter() - start
        generator_cpu = time.thread_time() - generator_before
        await asyncio.to_thread(watcher.join, 300)
        watcher.stop.set()
        window = time.perf_counter() - start
        cpu_burst = {k: cpu_seconds(v) - cpu_before[k] for k, v in pids.items()}
        own = cpu_seconds(os.getpid()) - self_before
        cpu_burst["generator"] = generator_cpu
        cpu_burst["poller"] = watcher.cpu
        # The rest of this process's CPU in the window: the stand-in's threads.
        cpu_burst["stripe_standin"] = max(0.0, own - generator_cpu - watcher.cpu)
        for c in connections:
            c.close()
        conn.close()
        seen_at = watcher.seen_at
        all_members = max(seen_at.values()) - start
        # A buyer can show up before its last event is accepted (the first one suffices):
        # that counts as zero latency.
        loaded = [max(0.0, seen_at[u] - accepted_at[u]) for u in burst_users]
        # The same from the moment that last event was sent: it also counts the time the
        # webhook took to answer (with synchronous processing, all of it).
        from_sent = [max(0.0, seen_at[u] - sent_at[u]) for u in burst_users]
    finally:
        hub.stop()
        standin.stop()
    events = len(queue)
    return {
        "latency_runs": len(latencies),
        "webhook_to_membership_p50_ms": statistics.median(latencies) * 1000,
        "webhook_to_membership_p99_ms": percentile(latencies, 0.99) * 1000,
        "burst_events": events,
        "burst_clients": args.clients,
        "burst_rate_target": rate or None,
        "stripe_latency_ms": stripe_latency * 1000,
        "log_level": settings["hub"]["log_level"],
        "events_per_second": events / accepted,
        "processed_events_per_second": events / all_members,
        "burst_all_members_s": all_members,
        "burst_accept_s": accepted,
        "webhook_answer_p50_ms": statistics.median(answer_times) * 1000,
        "webhook_answer_p99_ms": percentile(answer_times, 0.99) * 1000,
        "loaded_webhook_to_membership_p50_ms": statistics.median(loaded) * 1000,
        "loaded_webhook_to_membership_p99_ms": percentile(loaded, 0.99) * 1000,
        "loaded_sent_to_membership_p50_ms": statistics.median(from_sent) * 1000,
        "loaded_sent_to_membership_p99_ms": percentile(from_sent, 0.99) * 1000,
        "burst_cpu_window_s": window,
        "burst_cpu_seconds": {k: round(v, 3) for k, v in cpu_burst.items()},
        "burst_cpu_ms_per_event": {k: round(v / events * 1000, 3) for k, v in cpu_burst.items()},
        "membership_polls": watcher.polls,
        "loadavg": {"start": load_start, "burst": load_burst, "end": loadavg()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=int, default=50)
    parser.add_argument("--burst", type=int, default=300, help="purchases in the burst")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0, help="events/s (0: as fast as answered)")
    parser.add_argument("--stripe-latency-ms", type=float, default=0)
    parser.add_argument("--log-level", default="WARNING", help="of the hub and the service")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "webhook.json"
    )
    options = parser.parse_args()
    result = asyncio.run(run(options))
    out = options.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print("| measure | LearnHub |")
    print("|---|---|")
    print(f"| webhook → membership p50 | {result['webhook_to_membership_p50_ms']:.0f} ms |")
    print(f"| webhook → membership p99 | {result['webhook_to_membership_p99_ms']:.0f} ms |")
    print(
        "| webhook → membership under the burst p50 / p99 | "
        f"{result['loaded_webhook_to_membership_p50_ms']:.0f} / "
        f"{result['loaded_webhook_to_membership_p99_ms']:.0f} ms |"
    )
    print(
        "| the same, from sending the buyer's last event p50 / p99 | "
        f"{result['loaded_sent_to_membership_p50_ms']:.0f} / "
        f"{result['loaded_sent_to_membership_p99_ms']:.0f} ms |"
    )
    paced = f", paced at {options.rate:.0f}/s" if options.rate else ""
    print(
        f"| sustained webhook events/s ({result['burst_events']} events, "
        f"{result['burst_clients']} clients{paced}) | {result['events_per_second']:.0f} accepted, "
        f"{result['processed_events_per_second']:.0f} processed |"
    )
    print(
        f"| webhook answer p50 / p99 | {result['webhook_answer_p50_ms']:.1f} / "
        f"{result['webhook_answer_p99_ms']:.1f} ms |"
    )
    print(
        f"| burst: all {result['burst_events'] // 2} buyers members after | "
        f"{result['burst_all_members_s']:.1f} s |"
    )
    per_event = ", ".join(f"{k} {v:.2f}" for k, v in result["burst_cpu_ms_per_event"].items())
    print(f"| CPU ms per event | {per_event} |")
    print(f"\nload average {result['loadavg']}\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
