"""Steps the end-to-end tests share: pay through the Stripe webhook, open a course server,
hand in an assignment through nbgrader's Assignments tab API.

`tests/test_purchase_docker.py`, `tests/test_assignments_docker.py` and
`tests/swarm/test_swarm_platform.py` walk the same learner path on different backends; the
steps live here once so that the three keep doing the same thing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import nbformat
import stripe

from harness.browser import Browser
from harness.hub import HubProcess, wait_for_server


def wait_until(
    condition: Callable[[], object], what: str, timeout: float = 30, interval: float = 0.1
) -> None:
    """Poll `condition` every `interval` seconds; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def webhook_url(hub: HubProcess) -> str:
    """The Stripe webhook, through the hub's public proxy."""
    return hub.url + "services/learnhub/stripe/webhook"


def deliver(hub: HubProcess, events: list[dict[str, Any]], secret: str) -> None:
    """Post `events` to the webhook, each signed with `secret` as Stripe signs; all accepted."""
    for event in events:
        payload = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(payload, secret)
        response = httpx.post(
            webhook_url(hub), content=payload, headers={"Stripe-Signature": header}, timeout=30
        )
        assert response.status_code == 200, response.text


def members(hub: HubProcess, group: str) -> set[str]:
    """The users of a hub group."""
    response = hub.api("GET", f"/groups/{group}")
    assert response.status_code == 200, response.text
    return set(response.json()["users"])


def server_stopped(hub: HubProcess, user: str, course: str) -> bool:
    """Whether `user` has no `course` server any more."""
    return course not in hub.api("GET", f"/users/{user}").json()["servers"]


def open_course(b: Browser, hub: HubProcess, user: str, course: str, timeout: float = 90) -> str:
    """Start `user`'s `course` server unless it runs, wait until it is ready and open it in the
    browser; its URL."""
    if course not in hub.api("GET", f"/users/{user}").json()["servers"]:
        assert b.spawn_course(user, course).status_code in (201, 202)
    server = wait_for_server(hub, user, course, timeout=timeout)
    b.open_server(server["url"])
    return str(server["url"])


def assignments_api(
    b: Browser, server_url: str, course: str, assignment: str, action: str | None = None
) -> list[dict[str, Any]]:
    """What JupyterLab's Assignments tab calls (nbgrader's assignment_list server extension):
    the list, or `action` (fetch, submit, fetch_feedback) on `assignment`."""
    base = b.absolute(server_url)
    headers = b.xsrf_headers(server_url)
    if action is None:
        response = b.client.get(base + "assignments", params={"course_id": course}, headers=headers)
    else:
        response = b.client.post(
            base + f"assignments/{action}",
            data={"course_id": course, "assignment_id": assignment},
            headers=headers,
        )
    assert response.status_code == 200, response.text
    body = json.loads(response.text)
    assert body.get("success", True), body
    return list(body["value"])


def put_reference_solution(b: Browser, server_url: str, source: Path, assignment: str) -> None:
    """Solve the fetched `assignment` with the instructor's reference code from `source` (the
    nbgrader source notebook), keeping the release's cell metadata, and save it."""
    path = f"{assignment}/{assignment}.ipynb"
    solution = nbformat.read(source, as_version=4)  # type: ignore[no-untyped-call]
    fetched = b.contents(server_url, path).json()["content"]
    for cell, ref in zip(fetched["cells"], solution.cells, strict=True):
        if cell["cell_type"] == "code" and cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["source"] = "\n".join(
                line for line in ref.source.splitlines() if "SOLUTION" not in line
            )
    saved = b.client.put(
        b.absolute(server_url) + f"api/contents/{path}",
        json={"type": "notebook", "format": "json", "content": fetched},
        headers=b.xsrf_headers(server_url),
    )
    assert saved.status_code == 200, saved.text
