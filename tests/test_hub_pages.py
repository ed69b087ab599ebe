"""`HubClient.list_all` against answers a real Hub would not give: it stops, and says why.

The real-hub behaviour (260 groups, users past the 200 cap, running servers over three pages)
is in tests/test_hub_paging.py; these are the refusals, with JupyterHub's answers imitated by
an httpx mock transport.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hub.access import hub_groups
from hub.access.hub_groups import PAGINATION_MEDIA_TYPE, HubClient
from hub.errors import HubAPIError

API = "http://hub.test/hub/api"


def client(answer: Any) -> HubClient:
    """A client whose Hub answers each request with ``answer(request)`` (a JSON body)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer(request))

    return HubClient(API, "t0ken", transport=httpx.MockTransport(handler))


def page(request: httpx.Request, total: int, *, step: int | None = None) -> dict[str, Any]:
    """JupyterHub's paginated answer of ``total`` numbered groups, at most 2 a page."""
    offset = int(request.url.params["offset"])
    limit = min(int(request.url.params["limit"]), 2)
    items = [{"name": f"g{i}", "users": []} for i in range(offset, min(offset + limit, total))]
    following = offset + (limit if step is None else step)
    more = {"offset": following, "limit": limit} if offset + limit < total else None
    return {"items": items, "_pagination": {"offset": offset, "limit": limit, "next": more}}


async def test_follows_next_until_the_last_page_and_asks_for_pages() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> dict[str, Any]:
        seen.append(request)
        return page(request, 5)

    async with client(answer) as hub:
        groups = await hub.groups()
    assert sorted(groups) == ["g0", "g1", "g2", "g3", "g4"]
    assert [int(r.url.params["offset"]) for r in seen] == [0, 2, 4]
    assert {r.headers["Accept"] for r in seen} == {PAGINATION_MEDIA_TYPE}


async def test_an_answer_without_pages_is_refused_not_taken_as_the_whole_list() -> None:
    # What a Hub that ignores the pagination media type answers: a bare list.
    async with client(lambda request: [{"name": "g0", "users": []}]) as hub:
        with pytest.raises(HubAPIError, match=r"JupyterHub 2\.0 or newer"):
            await hub.groups()


async def test_a_next_page_that_does_not_move_forward_is_refused() -> None:
    async with client(lambda request: page(request, 10, step=0)) as hub:
        with pytest.raises(HubAPIError, match="does not move past offset 0"):
            await hub.groups()


async def test_pages_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_groups, "MAX_PAGES", 3)
    async with client(lambda request: page(request, 1_000_000)) as hub:
        with pytest.raises(HubAPIError, match="more than 3 pages"):
            await hub.list_users()
