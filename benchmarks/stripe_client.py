"""CPU per Stripe re-fetch through each of the stripe library's HTTP paths LearnHub could use.

A webhook event's re-fetch (``GET /v1/checkout/sessions/<id>`` with its expansions) is most of
the service's CPU at 300 events/s (docs/benchmarks.md). This script measures, in its own
process, the CPU one re-fetch costs the caller through:

- ``requests-threads``: LearnHub's blocking path (:class:`hub.billing.client.StripeHTTP`,
  requests on a pool of 32 threads: how the service re-fetched until 2026-12-05);
- ``aiohttp``: LearnHub's awaited path (``raw_request_async`` through
  :class:`hub.billing.client.AsyncStripeHTTP`, 32 in flight on one event loop);
- ``httpx``: the stripe library's default awaited path (``stripe.HTTPXClient``).

The Stripe stand-in (tests' wire-format server) runs in a process of its own, so only the
caller's CPU is counted; ``--tls`` puts it behind TLS with a test CA, as Stripe is.

    .venv/bin/python benchmarks/stripe_client.py [--requests 3000] [--tls]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stripe  # noqa: E402

from harness.edge import make_ca  # noqa: E402
from harness.stripe_standin import API_KEY, StripeStandIn, open_course_checkout  # noqa: E402
from hub.billing.client import POOL_SIZE, StripeAPI  # noqa: E402

EXPAND = ["line_items", "payment_intent", "payment_intent.latest_charge", "invoice"]
WARM_UP = 100


def serve(folder: str | None, ready: Any) -> None:
    """The stand-in, with one checkout session, until the parent ends."""
    standin = StripeStandIn()
    url = standin.url
    if folder is not None:
        ca = make_ca(Path(folder), "localhost")  # ca.pem: the caller trusts it too
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(ca.chain_pem, ca.key_pem)
        standin.server.socket = context.wrap_socket(standin.server.socket, server_side=True)
        url = f"https://localhost:{standin.server.server_address[1]}"
    standin.start()
    if folder is not None:
        stripe.ca_bundle_path = str(Path(folder) / "ca.pem")  # this process only
    local = stripe.StripeClient(API_KEY, base_addresses={"api": url})
    session_id = open_course_checkout(local, "alice", "python-basics", 4900, "Python")
    ready.put((url, session_id))
    threading.Event().wait()


def measure(run: Callable[[int], None], count: int) -> tuple[float, float]:
    """(CPU ms per request, requests per second) of ``run(count)`` after a warm-up."""
    run(WARM_UP)
    cpu, wall = time.process_time(), time.perf_counter()
    run(count)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / count * 1000, count / wall


def blocking(client: stripe.StripeClient, path: str) -> Callable[[int], None]:
    threads = ThreadPoolExecutor(POOL_SIZE)

    def one(_: int) -> None:
        assert isinstance(client.raw_request("get", path, expand=EXPAND).data, dict)

    def batch(n: int) -> None:
        for _ in threads.map(one, range(n)):  # each result read: a failed request raises
            pass

    return batch


def awaited(
    client: stripe.StripeClient, path: str, loop: asyncio.AbstractEventLoop
) -> Callable[[int], None]:
    async def batch(n: int) -> None:
        gate = asyncio.Semaphore(POOL_SIZE)

        async def one() -> None:
            async with gate:
                answer = await client.raw_request_async("get", path, expand=EXPAND)
                assert isinstance(answer.data, dict)

        await asyncio.gather(*(one() for _ in range(n)))

    return lambda n: loop.run_until_complete(batch(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--tls", action="store_true", help="the stand-in behind TLS (test CA)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="stripe-client-bench-") if args.tls else None
    ready: Any = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(folder, ready), daemon=True)
    server.start()
    url, session_id = ready.get(timeout=30)
    if folder is not None:
        stripe.ca_bundle_path = str(Path(folder) / "ca.pem")
    path = f"/v1/checkout/sessions/{session_id}"
    httpx_client = stripe.StripeClient(
        API_KEY, base_addresses={"api": url}, http_client=stripe.HTTPXClient()
    )
    learnhub = StripeAPI(API_KEY, url)
    loop = asyncio.new_event_loop()
    paths = {
        "requests-threads": blocking(learnhub, path),
        "aiohttp": awaited(learnhub, path, loop),
        "httpx": awaited(httpx_client, path, loop),
    }
    print(f"{args.requests} re-fetches, {POOL_SIZE} in flight, {'TLS' if args.tls else 'HTTP'}")
    print(f"{'path':<18} {'CPU ms/request':>15} {'requests/s':>11}")
    for name, run in paths.items():
        cpu, rate = measure(run, args.requests)
        print(f"{name:<18} {cpu:>15.3f} {rate:>11.0f}")
    loop.run_until_complete(learnhub.aclose())
    server.terminate()


if __name__ == "__main__":
    main()
