"""A spawner that starts nothing: every server is one shared tiny HTTP server of the benchmark.

`benchmarks/scale.py` measures the Hub, the proxy and the LearnHub service with many running
servers; real containers (about 60 MiB each, docs/benchmarks.md) would measure Docker instead.
JupyterHub's own test spawners are not no-ops (`MockSpawner` runs a process per server,
`NeverSpawner` never becomes ready), so this follows their pattern with a `start` that only
returns the address of the benchmark's HTTP server. The Hub still does everything it does for a
real server: a token, the spawn bookkeeping in its database, waiting for the URL to answer, and
a route in the proxy.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.spawner import Spawner
from traitlets import Unicode


class NoopSpawner(Spawner):  # type: ignore[misc]
    """Starts nothing; every server is `shared_url`. Still running after a hub restart."""

    shared_url = Unicode(
        "http://127.0.0.1:0", config=True, help="The shared HTTP server every 'server' is."
    )

    _running = False

    def load_state(self, state: dict[str, Any]) -> None:
        """A server the Hub remembers as running is still running (nothing can have died)."""
        super().load_state(state)
        self._running = bool(state.get("noop_running"))

    def get_state(self) -> dict[str, Any]:
        """Remember that this server runs."""
        state: dict[str, Any] = super().get_state()
        if self._running:
            state["noop_running"] = True
        return state

    def clear_state(self) -> None:
        """Forget it (after stop)."""
        super().clear_state()
        self._running = False

    async def start(self) -> str:
        """Nothing to start: the shared server answers for every one."""
        self._running = True
        return str(self.shared_url)

    async def stop(self, now: bool = False) -> None:
        """Nothing to stop."""
        self._running = False

    async def poll(self) -> int | None:
        """None while running, 0 once stopped (JupyterHub's convention)."""
        return None if self._running else 0
