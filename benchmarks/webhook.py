"""Webhook → membership latency and sustained webhook throughput (a measurement, not a test).

Starts a real LearnHub hub + proxy + service with `payments.provider: stripe` pointed at the
loopback Stripe stand-in of the test suite. For each purchase it signs Stripe's events with the
real `stripe` library, posts them through the public proxy and polls the Hub API until the buyer
is in the course group (latency on a quiet hub). Then it posts a burst of purchases from several
concurrent clients and reports events per second, the time until every buyer is a member, and
each buyer's webhook → membership latency under that load (from the moment the last of its
events was accepted to the first membership poll, every 25 ms, that shows it in the group).

    .venv/bin/python benchmarks/webhook.py [--latency 50] [--burst 300] [--clients 8]

`benchmarks/run.py` calls :func:`run` as part of the side-by-side benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import stripe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import child_pids, cmdline, cpu_seconds, percentile  # noqa: E402
from tests.billing.stripe_standin import API_KEY, StripeStandIn  # noqa: E402
from tests.harness import HubProcess, hub_settings  # noqa: E402

COURSE = "algorithms-in-python"
SECRET = "whsec_" + secrets.token_hex(16)


def new_session(standin: StripeStandIn, user: str) -> str:
    return standin.course_checkout(user, COURSE, 6900, COURSE)


def signed(event: dict[str, Any]) -> tuple[str, str]:
    payload = json.dumps(event)
    return payload, stripe.WebhookSignature.generate_signature_header(payload, SECRET)


async def members(client: httpx.AsyncClient, hub: HubProcess) -> set[str]:
    response = await client.get(
        f"{hub.api_url}/groups/course-{COURSE}",
        headers={"Authorization": f"token {hub.admin_token}"},
    )
    return set(response.json()["users"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    standin = StripeStandIn().start()
    work = Path(tempfile.mkdtemp(prefix="lh-webhook-"))
    settings = hub_settings(work, courses_dir=ROOT / "courses")
    settings["hub"]["log_level"] = "WARNING"
    settings["payments"] = {"provider": "stripe", "stripe_api_base": standin.url}
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
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            latencies = []
            for user in users[: args.latency]:
                events = standin.sim.complete_checkout(new_session(standin, user))
                start = time.perf_counter()
                for event in events:
                    payload, header = signed(event)
                    r = await client.post(
                        webhook, content=payload, headers={"Stripe-Signature": header}
                    )
                    r.raise_for_status()
                while user not in await members(client, hub):
                    await asyncio.sleep(0.005)
                latencies.append(time.perf_counter() - start)

            burst_users = users[args.latency :]
            queue: list[tuple[str, str, str]] = []
            pending: dict[str, int] = {}
            for user in burst_users:
                for event in standin.sim.complete_checkout(new_session(standin, user)):
                    queue.append((user, *signed(event)))
                    pending[user] = pending.get(user, 0) + 1
            accepted_at: dict[str, float] = {}
            seen_at: dict[str, float] = {}
            # Where the CPU goes during the burst: hub, LearnHub service, and this process
            # (clients, membership poller and the Stripe stand-in the service fetches from).
            assert hub.proc is not None
            service = next(
                (p for p in child_pids(hub.proc.pid) if "hub.service" in cmdline(p)), None
            )
            pids = {"hub": hub.proc.pid, "service": service, "benchmark": os.getpid()}
            cpu_before = {k: cpu_seconds(v) for k, v in pids.items()}
            start = time.perf_counter()

            async def worker(items: list[tuple[str, str, str]]) -> None:
                for user, payload, header in items:
                    r = await client.post(
                        webhook, content=payload, headers={"Stripe-Signature": header}
                    )
                    r.raise_for_status()
                    pending[user] -= 1
                    if not pending[user]:
                        accepted_at[user] = time.perf_counter()

            async def watch() -> None:
                wanted = set(burst_users)
                while not wanted <= seen_at.keys():
                    now_members = await members(client, hub)
                    now = time.perf_counter()
                    for user in (now_members & wanted) - seen_at.keys():
                        seen_at[user] = now
                    await asyncio.sleep(0.025)

            watcher = asyncio.create_task(watch())
            await asyncio.gather(*(worker(queue[i :: args.clients]) for i in range(args.clients)))
            accepted = time.perf_counter() - start
            cpu_burst = {k: cpu_seconds(v) - cpu_before[k] for k, v in pids.items()}
            await asyncio.wait_for(watcher, timeout=300)
            all_members = max(seen_at.values()) - start
            # A buyer can show up before its last event is accepted (the first one suffices):
            # that counts as zero latency.
            loaded = [max(0.0, seen_at[u] - accepted_at[u]) for u in burst_users]
    finally:
        hub.stop()
        standin.stop()
    return {
        "latency_runs": len(latencies),
        "webhook_to_membership_p50_ms": statistics.median(latencies) * 1000,
        "webhook_to_membership_p99_ms": percentile(latencies, 0.99) * 1000,
        "burst_events": len(queue),
        "burst_clients": args.clients,
        "events_per_second": len(queue) / accepted,
        "burst_all_members_s": all_members,
        "burst_cpu_seconds": {k: round(v, 2) for k, v in cpu_burst.items()},
        "burst_accept_s": accepted,
        "loaded_webhook_to_membership_p50_ms": statistics.median(loaded) * 1000,
        "loaded_webhook_to_membership_p99_ms": percentile(loaded, 0.99) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=int, default=50)
    parser.add_argument("--burst", type=int, default=300, help="purchases in the burst")
    parser.add_argument("--clients", type=int, default=8)
    result = asyncio.run(run(parser.parse_args()))
    out = ROOT / "benchmarks" / "results" / "webhook.json"
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
        f"| sustained webhook events/s ({result['burst_events']} events, "
        f"{result['burst_clients']} clients) | {result['events_per_second']:.0f} |"
    )
    print(
        f"| burst: all {len(range(result['burst_events'] // 2))} buyers members after | "
        f"{result['burst_all_members_s']:.1f} s |"
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
