"""A stock JupyterHub whose "servers" are one shared HTTP server: many ready servers, cheaply.

Used by tests/test_hub_paging.py to have more running servers than one page of the Hub API
holds, without a process or container each. Everything the Hub records is real: it starts each
named server through its spawner, waits for the URL to answer, adds the proxy route and reports
the server as ready with its start time; only the process behind the URL is shared. Settings
come from STUB_* variables set by the test.

Its page cap (``api_page_max_limit``) is STUB_PAGE_MAX (JupyterHub's default is 200): the
Hub spends about 0.5 s of a busy 2-core machine on each server start and about 0.1 s on each
new user, so 205 running servers took two minutes to set up; a smaller page needs fewer.
The code under test does not know the cap; it follows the Hub's `_pagination.next`.
"""

import os
from pathlib import Path

from jupyterhub.spawner import Spawner

c = get_config()  # noqa: F821 - injected by JupyterHub

env = os.environ
data = Path(env["STUB_DATA_DIR"])


class SharedServerSpawner(Spawner):  # type: ignore[misc]
    """Every server is the test's one HTTP server: started at once, always running."""

    async def start(self) -> tuple[str, int]:
        return ("127.0.0.1", int(env["STUB_SERVER_PORT"]))

    async def poll(self) -> None:
        return None

    async def stop(self, now: bool = False) -> None:
        return None


c.JupyterHub.bind_url = f"http://127.0.0.1:{env['STUB_PORT']}/"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{env['STUB_HUB_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['STUB_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.pid_file = str(data / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{data / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(data / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(data / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = False
c.JupyterHub.api_page_max_limit = int(env["STUB_PAGE_MAX"])
c.JupyterHub.api_page_default_limit = int(env["STUB_PAGE_MAX"])

# Users are made through the REST API; nobody logs in.
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.services = [{"name": "stub-admin", "api_token": env["STUB_ADMIN_TOKEN"]}]
c.JupyterHub.load_roles = [{"name": "admin", "services": ["stub-admin"]}]
c.JupyterHub.spawner_class = SharedServerSpawner
