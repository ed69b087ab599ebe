"""Publishing materials without a restart (issue #13, item 4), on real Docker.

The operator publishes the course repository's materials (`learnhub materials publish`); a
learner's course server runs and they edit a file. The instructor edits the materials in their
copy (what their course server mounts at ~/grading/materials) and presses "Publish materials" on
the dashboard, as themselves; the root grading worker makes the version. The running server
keeps the version it started with; at its next start the learner gets the new one merged into
their home as nbgitpuller would: a file they never touched is updated, a file they edited is
kept with the new version beside it, a new file arrives, and WHATS-NEW.md says what changed.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import docker
import pytest

from tests.harness import HubProcess, browser, run_learnhub, stop_server, wait_for_server

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = "python-foundations"
USER = "publish-learner"
MINE = "# My own notes on this course\n"
NEW_README = "# Python Foundations\n\nRevised for the spring cohort.\n"
SERVICE = "services/learnhub/"
DASHBOARD = f"{SERVICE}instructor/{COURSE}"


def start(hub: HubProcess, engine: docker.DockerClient) -> Any:
    response = hub.api("POST", f"/users/{USER}/servers/{COURSE}")
    assert response.status_code in (201, 202), response.text
    wait_for_server(hub, USER, COURSE)
    labels = [f"learnhub.user={USER}", f"learnhub.course={COURSE}", f"learnhub.prefix={hub.prefix}"]
    (container,) = engine.containers.list(filters={"label": labels})
    return container


def sh(container: Any, script: str) -> str:
    result = container.exec_run(["sh", "-c", script], user="1000:100")
    assert result.exit_code == 0, result.output.decode(errors="replace")
    return str(result.output.decode())


def test_a_published_version_reaches_the_learner_at_their_next_start(
    docker_hub: HubProcess, engine: docker.DockerClient
) -> None:
    created = docker_hub.api("POST", "/users", json={"usernames": [USER]})
    assert created.status_code == 201, created.text
    assert run_learnhub(docker_hub, "grant", COURSE, USER).returncode == 0
    first = run_learnhub(docker_hub, "materials", "publish", COURSE)
    assert first.returncode == 0, first.stderr
    assert f"published {COURSE} v1" in first.stdout

    container = start(docker_hub, engine)
    assert "Version v1" in sh(container, "cat /home/jovyan/WHATS-NEW.md")
    # The learner edits the README; the first notebook they leave alone.
    sh(container, f"printf '{MINE}' > /home/jovyan/README.md")

    # The instructor revises their copy (as in their course server): the README, a notebook,
    # and a new notebook; then publishes from the dashboard, signed in as themselves.
    copy = docker_hub.data_dir / "formgrader" / COURSE / "materials"
    assert (copy / "README.md").is_file()  # the operator's publish gave them the materials
    (copy / "README.md").write_text(NEW_README)
    notebook = json.loads((copy / "01-data-model.ipynb").read_text())
    notebook["cells"].insert(0, {"cell_type": "markdown", "metadata": {}, "source": ["New intro"]})
    (copy / "01-data-model.ipynb").write_text(json.dumps(notebook))
    (copy / "05-async.ipynb").write_text((copy / "04-dataclasses-errors-testing.ipynb").read_text())
    with browser(docker_hub) as b:
        assert b.login("demo-instructor", "learnhub-demo").status_code == 200
        b.client.get(SERVICE + "login", params={"next": b.hub_path()[:-4] + SERVICE})
        page = b.client.get(DASHBOARD)
        assert 'id="learnhub-publish-form"' in page.text, page.text
        token = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert token
        queued = b.client.post(
            DASHBOARD + "/jobs",
            data={"_xsrf": token.group(1), "kind": "publish", "assignment": ""},
            headers={"Accept": "application/json"},
        )
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["job"]["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            jobs = b.client.get(DASHBOARD + "/jobs", headers={"Accept": "application/json"})
            job = next(j for j in jobs.json()["jobs"] if j["id"] == job_id)
            if not job["active"]:
                break
            time.sleep(0.5)
    assert job["state"] == "done", job
    assert job["summary"].startswith("Published v2: 1 new, 2 changed, 0 removed."), job

    # No restart of anything: the running server still has the version it started with.
    assert "Revised" not in sh(container, "cat /srv/learnhub/materials/README.md")
    assert sh(container, "cat /home/jovyan/README.md") == MINE

    # Its next start brings v2, merged.
    stop_server(docker_hub, USER, COURSE)
    container = start(docker_hub, engine)
    home = "/home/jovyan"
    assert sh(container, f"cat {home}/README.md") == MINE
    assert sh(container, f"cat {home}/README.updated.md") == NEW_README
    assert "New intro" in sh(container, f"cat {home}/01-data-model.ipynb")
    assert sh(container, f"test -f {home}/01-data-model.updated.ipynb || echo none") == "none\n"
    sh(container, f"test -f {home}/05-async.ipynb")
    notice = sh(container, f"cat {home}/WHATS-NEW.md")
    assert "Version v2" in notice
    assert "- new: `05-async.ipynb`" in notice
    assert "- changed: `README.md`" in notice and "- changed: `01-data-model.ipynb`" in notice
    assert "NAME.updated.EXT" in notice and "版本 v2" in notice
    stop_server(docker_hub, USER, COURSE)
