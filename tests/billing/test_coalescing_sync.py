"""CoalescingSync: every caller's change is applied, and bursts share runs."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pytest

from hub.access.hub_groups import AccessSync, CoalescingSync
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


async def test_a_failed_addition_is_retried_with_back_off_until_it_lands() -> None:
    """A purchase whose group addition times out at a busy Hub is added seconds later, not at
    the next reconcile; additions failing meanwhile ride along on the same retry."""
    added: list[set[str]] = []
    failures = {"left": 3}

    async def add(users: Collection[str]) -> None:
        await asyncio.sleep(0)
        if failures["left"]:
            failures["left"] -= 1
            raise HubAPIError("ReadTimeout")
        added.append(set(users))

    async def run() -> None:
        raise AssertionError("an addition never runs the whole sync")

    sync = AccessSync(run, add, retry_delays=(0.01, 0.01, 0.01))
    with pytest.raises(HubAPIError):
        await sync.add_granted(["ada"])  # the caller still hears of the failure
    with pytest.raises(HubAPIError):
        await sync.add_granted(["bo"])
    assert sync.pending == {"ada", "bo"}
    assert sync._retrying is not None
    await asyncio.wait_for(sync._retrying, timeout=30)
    assert sync.pending == frozenset()
    # The first retry failed (third failure), the second added both at once.
    assert added == [{"ada", "bo"}]
    assert failures["left"] == 0


async def test_a_retry_gives_up_after_its_last_delay_and_leaves_it_to_the_reconcile() -> None:
    attempts = {"n": 0}

    async def add(users: Collection[str]) -> None:
        attempts["n"] += 1
        raise HubAPIError("hub down")

    async def run() -> None:
        pass

    sync = AccessSync(run, add, retry_delays=(0.0, 0.0))
    with pytest.raises(HubAPIError):
        await sync.add_granted(["ada"])
    assert sync._retrying is not None
    await sync._retrying
    assert attempts["n"] == 3  # the call and both retries, then no more
    assert sync.pending == frozenset()
