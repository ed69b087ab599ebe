"""Backup while running → wipe → restore: a learner's work, access, submission and grade survive.

One real hub (DockerSpawner, the LearnHub service, the HTTP exchange, sandboxed autograde): a
new member is given a course (`learnhub grant`, the path a payment takes), writes a file in
their home (an ext4 image in use by their running container: the backup freezes it), fetches
and submits an assignment through the exchange, is graded; `learnhub backup` runs with all of
that live; the hub stops, its containers go, the data folder is deleted; `learnhub restore`
rebuilds it and the hub starts again on it.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.docker import docker_cleanup
from hub.backup import restore
from hub.errors import LearnHubError
from hub.settings import load_settings
from tests.harness import (
    Browser,
    HubProcess,
    browser,
    hub_settings,
    run_learnhub,
    running,
    wait_for_server,
)

pytestmark = [pytest.mark.docker]

COURSE = "python-foundations"
ASSIGNMENT = "ps1-data-model"
USER = "bea-backup"
PASSWORD = "analytical-engine-1843"
NOTE = "my notes survive a restore\n"


@pytest.fixture(scope="module")
def hub(
    images: None,
    docker_prefix_cleanup: None,
    courses_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HubProcess]:
    """The module's hub; small homes, so copying and hashing them stays cheap."""
    workdir = tmp_path_factory.mktemp("hub")
    settings = hub_settings(workdir, courses_dir=courses_dir)
    settings["spawner"]["home"] = {"size": "256M"}
    process = HubProcess(workdir=workdir, settings=settings)
    with running(process):
        yield process


def assignments(b: Browser, server_url: str, action: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    """nbgrader's Assignments tab API in the learner's server (it calls LearnHub's exchange)."""
    base = b.absolute(server_url)
    if action is None:
        response = b.client.get(
            base + "assignments", params={"course_id": COURSE}, headers=b.xsrf_headers(server_url)
        )
    else:
        response = b.client.post(
            base + f"assignments/{action}",
            data={"course_id": COURSE, "assignment_id": ASSIGNMENT},
            headers=b.xsrf_headers(server_url),
        )
    assert response.status_code == 200, response.text
    body = json.loads(response.text)
    assert body.get("success", True), body
    return list(body["value"])


def open_course(b: Browser, hub: HubProcess) -> str:
    if COURSE not in hub.api("GET", f"/users/{USER}").json()["servers"]:
        assert b.spawn_course(USER, COURSE).status_code in (201, 202)
    server = wait_for_server(hub, USER, COURSE)
    b.open_server(server["url"])
    return str(server["url"])


def test_backup_wipe_restore(hub: HubProcess, tmp_path: Path) -> None:
    started = time.monotonic()

    def step(what: str) -> None:
        # What each step costs, in the output of a failed (or -s) run.
        print(f"[{time.monotonic() - started:6.1f} s] {what}")

    assert run_learnhub(hub, "grader", "release", COURSE, ASSIGNMENT).returncode == 0
    with browser(hub) as b:
        b.signup(USER, PASSWORD)
        assert b.login(USER, PASSWORD).status_code == 200
        step("signed up, logged in")
        granted = run_learnhub(hub, "grant", USER, COURSE)
        assert granted.returncode == 0, granted.stderr
        step("granted")
        url = open_course(b, hub)
        assert b.put_file(url, "notes.txt", NOTE).status_code in (200, 201)
        step("server ready, file written")
        assignments(b, url, "fetch")
        assert any(a["status"] == "submitted" for a in assignments(b, url, "submit"))
    step("fetched, submitted")
    assert run_learnhub(hub, "grader", "collect", COURSE, ASSIGNMENT).returncode == 0
    step("collected")
    graded = run_learnhub(hub, "grader", "autograde", COURSE, ASSIGNMENT)
    assert graded.returncode == 0, graded.stderr
    assert f"{USER} " in graded.stdout

    step("graded")
    # The learner's server still runs: their home image is in use while it is copied.
    dest = tmp_path / "backup"
    backed_up = run_learnhub(hub, "backup", str(dest))
    assert backed_up.returncode == 0, backed_up.stderr
    step("backed up")
    manifest = json.loads((dest / "manifest.json").read_text())
    files = {entry["path"]: entry for entry in manifest["files"]}
    assert "data/admin-token" not in files and "data/jupyterhub_cookie_secret" not in files
    assert files["data/service"]["uid"] != 0  # the service's part stays the service's
    (home,) = [p for p in files if p.startswith("data/homes/") and p.endswith(".ext4")]
    assert files[home]["size"] == 256 * 1024**2
    # Sparse: the copied image takes about what the learner's files use, not 256 MiB.
    assert (dest / home).stat().st_blocks * 512 < 64 * 1024**2

    hub.stop()
    docker_cleanup(hub.prefix)  # the containers (and their hold on the home image) go too
    step("hub stopped, containers removed")
    shutil.rmtree(hub.data_dir)

    restored = run_learnhub(hub, "restore", str(dest))
    assert restored.returncode == 0, restored.stderr
    step("restored")
    assert (hub.data_dir / "service").stat().st_uid == files["data/service"]["uid"]
    # Once is enough: a second restore is refused before it writes (checked in this process,
    # one start-up of the CLI cheaper; the CLI prints the same message with status 2).
    with pytest.raises(LearnHubError, match="the data folder is not empty"):
        restore(load_settings(hub.config_path, {}), dest, say=print)

    hub.start()
    step("hub started again")
    # Access: the membership the service re-applies from LearnHub's entitlements.
    group = hub.api("GET", f"/groups/course-{COURSE}").json()
    assert USER in group["users"]
    with browser(hub) as b:
        assert b.login(USER, PASSWORD).status_code == 200
        # Grade: LearnHub's database feeds the member home page.
        home_page = b.client.get("hub/home").text
        progress = home_page.split(f'data-assignment="{ASSIGNMENT}"', 1)[1].split("</li>", 1)[0]
        assert "score 0 / 10" in progress, progress
        step("home page checked")
        url = open_course(b, hub)
        note = b.contents(url, "notes.txt")
        assert note.status_code == 200 and note.json()["content"] == NOTE
        # Submission: the exchange still has it.
        assert any(a["status"] == "submitted" for a in assignments(b, url))
    step("server ready again, file and submission checked")
    exported = run_learnhub(hub, "grader", "export", COURSE, ASSIGNMENT)
    assert exported.returncode == 0, exported.stderr
    rows = {row["student"]: row for row in csv.DictReader(io.StringIO(exported.stdout))}
    assert float(rows[USER]["score"]) == 0.0
    step("grade exported")
