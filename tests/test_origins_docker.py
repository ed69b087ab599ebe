"""One origin per user server, on the real stack (hub + proxy + DockerSpawner).

The attack (issue #12, finding 2): a learner's server serves a page of theirs with a script.
Without subdomains it is served from the Hub's own origin, where a script can read `/hub/token`
and make API tokens for whoever opens the link. With LearnHub's default it is served only from
`<learner>.localhost`, and the Hub's origin does not serve it.
"""

from __future__ import annotations

from urllib.parse import urlparse

import httpx
import pytest

from tests.harness import HubProcess, browser, wait_for_server

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

PASSWORD = "learnhub-demo"
COURSE = "python-foundations"
SCRIPT = "<script>fetch('/hub/token').then(r => r.text()).then(steal)</script>"


def origin(url: str) -> str:
    """`scheme://host:port` of ``url``."""
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}"


def test_a_learners_page_is_not_served_from_the_hubs_origin(docker_hub: HubProcess) -> None:
    hub_origin = origin(docker_hub.url + "hub/token")
    with browser(docker_hub) as b:
        assert b.login("demo-learner", PASSWORD).status_code == 200
        if COURSE not in docker_hub.api("GET", "/users/demo-learner").json()["servers"]:
            assert b.spawn_course("demo-learner", COURSE).status_code in (201, 202)
        server = wait_for_server(docker_hub, "demo-learner", COURSE)
        b.open_server(server["url"])
        assert b.put_file(server["url"], "x.html", SCRIPT).status_code in (200, 201)

        page = b.client.get(b.absolute(server["url"]) + "files/x.html")
        assert page.status_code == 200 and SCRIPT in page.text
        served_from = origin(str(page.url))
        assert served_from != hub_origin, (
            f"a learner's script is served from the Hub's origin {hub_origin}: it can read "
            "/hub/token as whoever opens it"
        )
        port = urlparse(docker_hub.url).port
        assert served_from == f"http://demo-learner.localhost:{port}"

    # The same path on the Hub's host: a visitor signed in to the Hub gets no learner page from
    # the Hub's origin, wherever JupyterHub's redirects lead.
    path = urlparse(b.absolute(server["url"])).path + "files/x.html"
    with browser(docker_hub) as visitor:
        assert visitor.login("demo-admin", PASSWORD).status_code == 200
        at_hub = visitor.client.get(hub_origin + path)
        for response in (*at_hub.history, at_hub):
            if origin(str(response.url)) == hub_origin:
                assert SCRIPT not in response.text, f"{response.url} serves the learner's script"


def test_service_stays_on_the_hubs_origin(docker_hub: HubProcess) -> None:
    """The trusted LearnHub service keeps the Hub's host (hub/subdomains.py)."""
    catalog = httpx.get(docker_hub.url + "services/learnhub/", timeout=60)
    assert catalog.status_code == 200
    assert origin(str(catalog.url)) == origin(docker_hub.url)
