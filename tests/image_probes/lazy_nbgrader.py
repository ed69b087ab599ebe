"""Run inside the learner image (by tests/test_images.py): a real Jupyter server with the image's
own extensions, probed over HTTP. Prints one JSON object with what it saw."""

import json
import sys
from importlib.metadata import version

from jupyter_server.serverapp import ServerApp
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

TOKEN = "probe-token-0123456789"
PORT = 8899

app = ServerApp.instance()
app.initialize(
    [
        f"--ServerApp.token={TOKEN}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={PORT}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        "--ServerApp.root_dir=/tmp/probe-root",
    ]
)
seen: dict[str, object] = {"nbgrader_imported_at_start": "nbgrader" in sys.modules}


async def get(path: str, *, token: bool = True, method: str = "GET") -> tuple[int, str]:
    headers = {"Authorization": f"token {TOKEN}"} if token else {}
    body = b"" if method == "POST" else None
    try:
        response = await AsyncHTTPClient().fetch(
            f"http://127.0.0.1:{PORT}{path}",
            method=method,
            headers=headers,
            body=body,
            follow_redirects=False,
        )
    except HTTPClientError as exc:
        return exc.code, ""
    return response.code, response.body.decode()


async def probe() -> None:
    try:
        seen["anonymous_version_status"] = (await get("/nbgrader_version?version=x", token=False))[
            0
        ]
        status, body = await get(f"/nbgrader_version?version={version('nbgrader')}")
        seen["version"] = [status, json.loads(body)]
        status, body = await get("/assignments/validate?path=hello.ipynb", method="POST")
        seen["validate"] = [status, json.loads(body)]
        seen["nbgrader_imported_after_use"] = "nbgrader" in sys.modules
        from nbgrader.server_extensions.assignment_list import handlers as assignment_list
        from nbgrader.server_extensions.validate_assignment import handlers as validate

        from learnhub_container.lazy_nbgrader import ROUTES

        nbgrader_routes = [
            (path, handler.__name__)
            for module in (assignment_list, validate)
            for path, handler in module.default_handlers
        ]
        # As sets: both nbgrader modules define /nbgrader_version with the same handler name.
        seen["routes_match"] = {(p, n) for p, _, n in ROUTES} == set(nbgrader_routes)
    finally:
        print(json.dumps(seen), flush=True)
        app.io_loop.stop()


app.io_loop.add_callback(probe)
app.start()
