"""Stock JupyterHub + stock DockerSpawner: the baseline of the LearnHub benchmark.

Nothing here is tuned. It is what a plain deployment of JupyterHub 6.1 with DockerSpawner 14
looks like: named servers, DummyAuthenticator (users are created through the REST API by the
benchmark's admin service token), the Hub API on the Docker bridge gateway so containers can
reach it, containers addressed by their internal IP and removed when they stop.

Everything machine-specific comes from BENCH_* variables set by ``benchmarks/stock/hub.py``:
ports, data folder, image, container prefix, admin token, and a generous start timeout so a
50-server burst on 2 cores is measured rather than cut off (both setups get the same one).
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 - injected by JupyterHub

env = os.environ
data = Path(env["BENCH_DATA_DIR"])

c.JupyterHub.bind_url = f"http://127.0.0.1:{env['BENCH_PORT']}/"
c.JupyterHub.hub_bind_url = f"http://{env['BENCH_HUB_IP']}:{env['BENCH_HUB_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['BENCH_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.command = [env["BENCH_CHP"]]
c.ConfigurableHTTPProxy.pid_file = str(data / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{data / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(data / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(data / "jupyterhub.pid")
c.JupyterHub.log_level = env.get("BENCH_LOG_LEVEL", "INFO")

c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.services = [{"name": "bench-admin", "api_token": env["BENCH_ADMIN_TOKEN"]}]
c.JupyterHub.load_roles = [{"name": "admin", "services": ["bench-admin"]}]

c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = env["BENCH_IMAGE"]
c.DockerSpawner.prefix = env["BENCH_PREFIX"]
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True
# There is no registry on this machine; the image is local. Not a speed tweak: the default
# ("ifnotpresent") would only inspect the local image too.
c.DockerSpawner.pull_policy = "never"
c.Spawner.start_timeout = int(env.get("BENCH_START_TIMEOUT", "300"))
c.Spawner.http_timeout = int(env.get("BENCH_START_TIMEOUT", "300"))
