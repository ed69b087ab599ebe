"""A learner's real course container fetches and submits through the HTTP exchange.

Real hub, real DockerSpawner container from the course image (with its baked-in nbgrader config
and ``learnhub_container.exchange`` package), the container's own ``JUPYTERHUB_API_TOKEN``
checked by the platform's own exchange in the LearnHub service, which the container reaches on
its network's gateway (the one host port the firewall lets through for it, besides the Hub's).
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.harness import HubProcess, browser, wait_for_server

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = "python-foundations"
AID = "ps1-data-model"
PASSWORD = "learnhub-demo"
SERVICE_PREFIX = "/@/space%20word/services/learnhub/"


def release_archive(tmp_path: Path) -> bytes:
    """``nbgrader generate_assignment`` of the real course assignment, as a ``.tar.gz``."""
    root = tmp_path / "course"
    source = Path(__file__).resolve().parents[2] / "courses" / COURSE / "source" / AID
    (root / "source").mkdir(parents=True)
    subprocess.run(["cp", "-r", str(source), str(root / "source" / AID)], check=True)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.course_id = {COURSE!r}\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{tmp_path / 'gb.db'}'\n"
    )
    bin_dir = str(Path(sys.executable).parent)
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", AID, "--force"],
        cwd=root,
        check=True,
        capture_output=True,
        env={"PATH": bin_dir + ":/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted((root / "release" / AID).rglob("*")):
            if path.is_file():
                archive.add(path, arcname=path.relative_to(root / "release" / AID).as_posix())
    return buffer.getvalue()


async def test_course_container_fetches_and_submits(
    docker_hub: HubProcess, engine: docker.DockerClient, tmp_path: Path
) -> None:
    with browser(docker_hub) as b:
        assert b.login("demo-learner", PASSWORD).status_code == 200
        assert b.spawn_course("demo-learner", COURSE).status_code in (201, 202)
    wait_for_server(docker_hub, "demo-learner", COURSE)
    (container,) = engine.containers.list(
        filters={
            "label": [
                "learnhub.user=demo-learner",
                f"learnhub.course={COURSE}",
                f"learnhub.prefix={docker_hub.prefix}",
            ]
        }
    )
    # No exchange folder is mounted into the learner's container.
    assert not any("exchange" in (m.get("Destination") or "") for m in container.attrs["Mounts"])
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["LEARNHUB_EXCHANGE_URL"].endswith(f"{SERVICE_PREFIX}exchange/")

    # The operator releases through the platform's own exchange (its token carries the
    # LearnHub scope); the container reaches that exchange on the one host port it may.
    base = f"{docker_hub.url}services/learnhub/exchange/v1/courses/{COURSE}/"
    operator = {"Authorization": f"token {docker_hub.admin_token}"}
    async with httpx.AsyncClient(timeout=60) as http:
        released = await http.put(
            base + f"assignments/{AID}", headers=operator, content=release_archive(tmp_path)
        )
        assert released.status_code == 201, released.text

    async def run(*cmd: str) -> tuple[int, str]:
        result: Any = await asyncio.to_thread(container.exec_run, list(cmd), workdir="/home/jovyan")
        return int(result.exit_code), result.output.decode(errors="replace")

    code, out = await run("nbgrader", "list")
    assert code == 0 and f"{COURSE} {AID}" in out, out
    code, out = await run("nbgrader", "fetch_assignment", AID)
    assert code == 0, out
    code, out = await run("test", "-f", f"/home/jovyan/{AID}/{AID}.ipynb")
    assert code == 0
    code, out = await run("nbgrader", "submit", AID)
    assert code == 0 and f"Submitted as: {COURSE} {AID}" in out, out
    async with httpx.AsyncClient(timeout=60) as http:
        listed = await http.get(base + "submissions", headers=operator)
    assert listed.status_code == 200, listed.text
    [sub] = listed.json()["submissions"]
    assert sub["student_id"] == "demo-learner"
    code, out = await run("nbgrader", "list", "--cached")
    assert code == 0 and f"{COURSE} demo-learner {AID}" in out, out
    # The container's token is refused for instructor operations.
    code, out = await run("nbgrader", "list", "--inbound")
    assert code != 0 and "instructor access" in out, out
