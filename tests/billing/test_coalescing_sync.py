"""CoalescingSync: every caller's change is applied, and bursts share runs."""

from __future__ import annotations

import asyncio

import pytest

from hub.access.hub_groups import CoalescingSync
from hub.errors import HubAPIError


async def test_burst_shares_runs_and_every_caller_sees_a_later_run() -> None:
    state = {"committed": 0, "applied": 0, "runs": 0}

    async def run() -> None:
        state["runs"] += 1
        seen = state["committed"]
        await asyncio.sleep(0.05)
        state["applied"] = seen

    sync = CoalescingSync(run)

    async def caller() -> int:
        state["committed"] += 1
        mine = state["committed"]
        await sync()
        return state["applied"] - mine  # >= 0: my change was applied

    results = await asyncio.gather(*(caller() for _ in range(50)))
    assert all(r >= 0 for r in results)
    assert state["applied"] == 50
    assert state["runs"] <= 3


async def test_errors_reach_the_callers_of_that_run_and_the_next_run_is_fresh() -> None:
    calls = {"n": 0}

    async def run() -> None:
        calls["n"] += 1
        await asyncio.sleep(0.01)
        if calls["n"] == 1:
            raise HubAPIError("hub down")

    sync = CoalescingSync(run)
    first = asyncio.ensure_future(sync())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(sync())
    with pytest.raises(HubAPIError):
        await first
    await second  # the follow-up run succeeded
    assert calls["n"] == 2
