"""The spawner's readiness probe: prompt for one server, bounded when many start at once."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

from hub import spawner
from hub.spawner import PROBE_RATE, CourseSpawnerMixin, probe_interval


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_probe_interval_is_prompt_for_few_and_rate_bounded_for_many() -> None:
    assert probe_interval(1) == 0.05
    assert probe_interval(5) == 0.05
    for starting in (6, 20, 50, 200):
        # All servers' probes together stay at PROBE_RATE a second.
        assert starting / probe_interval(starting) <= PROBE_RATE + 1e-9
    assert probe_interval(50) > probe_interval(20) > probe_interval(5)


async def test_returns_once_the_server_listens_and_counts_itself_out() -> None:
    port = free_port()
    connections: list[bytes] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.read())  # the probe sends nothing and hangs up
        writer.close()

    async def listen_later() -> asyncio.Server:
        await asyncio.sleep(0.3)
        return await asyncio.start_server(accept, "127.0.0.1", port)

    fake = SimpleNamespace()  # the probe needs nothing of the spawner but the address
    later = asyncio.create_task(listen_later())
    await CourseSpawnerMixin.wait_until_listening(fake, "127.0.0.1", port, within=10)  # type: ignore[arg-type]
    assert later.done()  # it did not return before the port was open
    server = await later
    await asyncio.sleep(0.05)
    server.close()
    assert connections == [b""]
    assert spawner._STARTING[0] == 0


async def test_gives_up_after_within_seconds_and_counts_itself_out() -> None:
    fake = SimpleNamespace()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await CourseSpawnerMixin.wait_until_listening(fake, "127.0.0.1", free_port(), within=0.3)  # type: ignore[arg-type]
    assert loop.time() - started >= 0.3
    assert spawner._STARTING[0] == 0
