"""The platform chain on real parts: JupyterHub + configurable-http-proxy + DockerSpawner.

Sign-up and login, a course server per member and course with the notebooks in it, a learner's
edits surviving restarts and materials updates, servers surviving a hub restart, and refusal of
anyone without access, before any container exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest

from hub import images as image_builder
from tests.harness import ROOT, Browser, HubProcess, browser, stop_server, wait_for_server

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

PASSWORD = "learnhub-demo"
COURSE = "python-foundations"


def containers_of(
    engine: docker.DockerClient, user: str, course: str | None = None, prefix: str = ""
) -> list[Any]:
    labels = [f"learnhub.user={user}"] + ([f"learnhub.prefix={prefix}"] if prefix else [])
    if course:
        labels.append(f"learnhub.course={course}")
    return list(engine.containers.list(all=True, filters={"label": labels}))


def test_signup_then_login(docker_hub: HubProcess) -> None:
    with browser(docker_hub) as b:
        page = b.signup("ada-lovelace", "analytical-engine-1843")
        assert page.status_code == 200
        # Signed in at once, on the member home.
        assert page.url.path.endswith("/hub/home")
        response = b.login("ada-lovelace", "analytical-engine-1843")
        assert response.status_code == 200
        assert response.url.path.endswith("/hub/home")
    with browser(docker_hub) as b:
        weak = b.signup("weak-pass", "123")
        assert weak.status_code == 200
        assert "password has at least 8 characters" in weak.text
        response = b.login("ada-lovelace", "wrong-password-000")
        assert response.status_code == 200
        assert "Invalid username or password" in response.text
        assert response.url.path.endswith("/hub/login")


def test_non_member_is_refused_before_any_container(
    docker_hub: HubProcess, engine: docker.DockerClient
) -> None:
    with browser(docker_hub) as b:
        b.signup("grace-hopper", "cobol-compiler-1959")
        assert b.login("grace-hopper", "cobol-compiler-1959").status_code == 200
        response = b.spawn_course("grace-hopper", COURSE)
        assert response.status_code == 403
        message = response.json()["message"]
        assert "do not have access" in message and "Python Foundations" in message
        # Unknown course, and the default server LearnHub does not use.
        assert b.spawn_course("grace-hopper", "no-such-course").status_code == 404
        default = b.client.post(
            "hub/api/users/grace-hopper/server", headers=b.xsrf_headers(b.hub_path())
        )
        assert default.status_code == 400
        assert "own server" in default.json()["message"]
    assert containers_of(engine, "grace-hopper", prefix=docker_hub.prefix) == []
    assert not [v for v in engine.volumes.list() if "grace-2dhopper" in v.name]


def test_course_server_has_the_notebooks_and_limits(
    docker_hub: HubProcess, engine: docker.DockerClient, courses_dir: Path
) -> None:
    with browser(docker_hub) as b:
        assert b.login("demo-learner", PASSWORD).status_code == 200
        response = b.spawn_course("demo-learner", COURSE)
        assert response.status_code in (201, 202), response.text
        server = wait_for_server(docker_hub, "demo-learner", COURSE)
        b.open_server(server["url"])
        listing = b.contents(server["url"])
        assert listing.status_code == 200, listing.text
        names = {item["name"] for item in listing.json()["content"]}
        expected = {p.name for p in (courses_dir / COURSE / "materials").iterdir()}
        assert expected <= names, f"missing {expected - names}"

        # Nothing asked for Chinese: JupyterLab keeps its default language (English).
        assert lab_language(b, server["url"]) == ("default", "Help")

    (container,) = containers_of(engine, "demo-learner", COURSE, docker_hub.prefix)
    attrs = container.attrs
    host = attrs["HostConfig"]
    assert container.name.startswith(f"{docker_hub.prefix}-")
    assert container.labels["learnhub.course"] == COURSE
    assert host["Memory"] == 1024**3  # course.yaml: memory 1G
    assert host["CpuQuota"] == host["CpuPeriod"]  # cpu 1.0
    assert attrs["Config"]["User"] == "1000:100"
    assert "ALL" in host["CapDrop"]
    assert "no-new-privileges" in host["SecurityOpt"]
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    # The home is the learner's own size-limited filesystem (spawner.home.storage: image).
    home = mounts["/home/jovyan"]
    assert home["Type"] == "bind" and home["RW"] is True
    assert home["Source"].startswith(str(docker_hub.data_dir / "homes") + "/")
    assert attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert mounts["/srv/learnhub/materials"]["RW"] is False
    assert not any("docker.sock" in (m.get("Source") or "") for m in attrs["Mounts"])
    uid = container.exec_run(["id", "-u"]).output.decode().strip()
    assert uid == "1000"


def lab_language(b: Browser, server_url: str) -> tuple[str, str]:
    """What the real JupyterLab of ``server_url`` shows, asked as its front end asks: the
    composite ``locale`` of its translation setting (the learner's own setting, else the
    schema's default, which Lab's default setting overrides change), then that locale's
    translations, here the label of the Help menu.

    (Not the list at ``translations/``: jupyterlab_server names the languages there in the
    locale of the learner's *own* settings file only, ignoring defaults; the front end never
    reads it to choose its language.)"""
    base = b.absolute(server_url) + "lab/api/"
    headers = b.xsrf_headers(server_url)
    setting = b.client.get(
        base + "settings/@jupyterlab/translation-extension:plugin", headers=headers
    )
    assert setting.status_code == 200, setting.text
    found = setting.json()
    locale = str(
        found["settings"].get("locale", found["schema"]["properties"]["locale"]["default"])
    )
    pack = b.client.get(base + "translations/" + locale, headers=headers)
    assert pack.status_code == 200, pack.text
    help_label = pack.json()["data"].get("jupyterlab", {}).get("Help", ["Help"])
    return locale, str(help_label[0])


def test_jupyterlab_speaks_the_learners_language(
    docker_hub: HubProcess, engine: docker.DockerClient
) -> None:
    """A learner who reads LearnHub in Chinese gets JupyterLab in Chinese: the zh-CN language
    pack in the image, chosen at spawn from the ``learnhub-lang`` cookie."""
    with browser(docker_hub) as b:
        b.signup("li-lei", "tsinghua-garden-1911")
        granted = run_cli(docker_hub, "grant", "li-lei", COURSE)
        assert granted.returncode == 0, granted.stderr
        assert b.login("li-lei", "tsinghua-garden-1911").status_code == 200
        # The language toggle on any page remembers the choice in the learnhub-lang cookie.
        assert b.client.get("hub/home?lang=zh-CN").status_code == 200
        # The image tag is shared by every checkout on a machine, and another one's test run
        # may have re-tagged its own build since this session's: make it this checkout's again
        # (a no-op when it is), right before the spawn that uses it.
        image_builder.build_images(ROOT, log=print)
        assert b.spawn_course("li-lei", COURSE).status_code in (201, 202)
        server = wait_for_server(docker_hub, "li-lei", COURSE)
        (container,) = containers_of(engine, "li-lei", COURSE, docker_hub.prefix)
        assert "LEARNHUB_LAB_LOCALE=zh_CN" in container.attrs["Config"]["Env"]
        b.open_server(server["url"])
        assert lab_language(b, server["url"]) == ("zh_CN", "帮助"), container.attrs["Image"]
        # (The server is left running: the module's teardown removes it with the others.)


def test_edits_survive_restart_and_materials_update(
    docker_hub: HubProcess, courses_dir: Path
) -> None:
    materials = courses_dir / COURSE / "materials"
    with browser(docker_hub) as b:
        assert b.login("demo-learner", PASSWORD).status_code == 200
        if COURSE not in docker_hub.api("GET", "/users/demo-learner").json()["servers"]:
            b.spawn_course("demo-learner", COURSE)
        server = wait_for_server(docker_hub, "demo-learner", COURSE)
        b.open_server(server["url"])
        # The learner edits the README and writes a file of their own.
        assert b.put_file(server["url"], "README.md", "# my notes\n").status_code == 200
        assert b.put_file(server["url"], "scratch.py", "print('mine')\n").status_code == 201

        stop_server(docker_hub, "demo-learner", COURSE, timeout=30)
        # Meanwhile the instructor updates the README and adds a notebook.
        (materials / "README.md").write_text("# Welcome, version 2\n")
        (materials / "99-bonus.md").write_text("# Bonus material\n")

        assert b.spawn_course("demo-learner", COURSE).status_code in (201, 202)
        server = wait_for_server(docker_hub, "demo-learner", COURSE)
        b.open_server(server["url"])
        readme = b.contents(server["url"], "README.md").json()
        assert readme["content"] == "# my notes\n"
        assert b.contents(server["url"], "scratch.py").json()["content"] == "print('mine')\n"
        assert b.contents(server["url"], "99-bonus.md").status_code == 200
        updated = b.contents(server["url"], "README.updated.md")
        assert updated.status_code == 200
        assert "version 2" in updated.json()["content"]


def test_servers_survive_a_hub_restart(docker_hub: HubProcess, engine: docker.DockerClient) -> None:
    with browser(docker_hub) as b:
        assert b.login("demo-learner", PASSWORD).status_code == 200
        if COURSE not in docker_hub.api("GET", "/users/demo-learner").json()["servers"]:
            b.spawn_course("demo-learner", COURSE)
        wait_for_server(docker_hub, "demo-learner", COURSE)
    (before,) = containers_of(engine, "demo-learner", COURSE, docker_hub.prefix)

    docker_hub.stop(kill_proxy=False)
    docker_hub.start()

    model = docker_hub.api("GET", "/users/demo-learner").json()["servers"][COURSE]
    assert model["ready"] is True
    (after,) = containers_of(engine, "demo-learner", COURSE, docker_hub.prefix)
    assert after.id == before.id
    with browser(docker_hub) as b:
        assert b.login("demo-learner", PASSWORD).status_code == 200
        b.open_server(model["url"])
        assert b.contents(model["url"], "README.md").status_code == 200


def run_cli(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = hub.env()
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=os.fspath(hub.workdir),
    )


def test_cli_grant_and_revoke(docker_hub: HubProcess, engine: docker.DockerClient) -> None:
    with browser(docker_hub) as b:
        b.signup("alan-turing", "enigma-bombe-1940")
        assert b.login("alan-turing", "enigma-bombe-1940").status_code == 200
        assert b.spawn_course("alan-turing", COURSE).status_code == 403

        granted = run_cli(docker_hub, "grant", "alan-turing", COURSE)
        assert granted.returncode == 0, granted.stderr
        assert "granted" in granted.stdout
        assert b.spawn_course("alan-turing", COURSE).status_code in (201, 202)
        wait_for_server(docker_hub, "alan-turing", COURSE)

        revoked = run_cli(docker_hub, "revoke", "alan-turing", COURSE)
        assert revoked.returncode == 0, revoked.stderr
        assert "files are kept" in revoked.stdout
        servers = docker_hub.api("GET", "/users/alan-turing").json()["servers"]
        assert COURSE not in servers or not servers[COURSE].get("ready")
        assert b.spawn_course("alan-turing", COURSE).status_code == 403
    # The learner's home is kept for a re-purchase.
    assert list((docker_hub.data_dir / "homes").glob(f"{docker_hub.prefix}-alan-2dturing--*.ext4"))

    unknown = run_cli(docker_hub, "grant", "alan-turing", "no-such-course")
    assert unknown.returncode == 2
    assert "no such course" in unknown.stderr and "'no-such-course'" in unknown.stderr


def test_cli_courses_list(docker_hub: HubProcess) -> None:
    result = run_cli(docker_hub, "courses", "list")
    assert result.returncode == 0, result.stderr
    assert COURSE in result.stdout and "$49.00" in result.stdout


def test_bad_settings_stop_the_hub_with_one_message(docker_hub: HubProcess, tmp_path: Path) -> None:
    bad = tmp_path / "learnhub.yaml"
    bad.write_text(json.dumps({"spawner": {"backnd": "docker"}}))
    env = {**docker_hub.env(), "LEARNHUB_CONFIG": str(bad)}
    jupyterhub = str(Path(sys.executable).parent / "jupyterhub")
    config = str(Path(__file__).resolve().parent.parent / "jupyterhub_config.py")
    result = subprocess.run(
        [jupyterhub, "-f", config],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    assert f"{bad}: invalid settings" in result.stderr
    assert "spawner.backnd: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_home_lists_my_courses_and_refusal_page(docker_hub: HubProcess) -> None:
    with browser(docker_hub) as b:
        home = b.login("demo-learner", PASSWORD)
        assert home.status_code == 200
        mine = home.text.split('id="learnhub-home"', 1)[1]
        assert 'data-course="python-foundations"' in mine.split("More courses")[0]
        assert 'class="learnhub-other" data-course="algorithms-in-python"' in mine
        # Launch when stopped, Resume when an earlier test left it running.
        assert (
            "/spawn/demo-learner/python-foundations" in mine
            or "/user/demo-learner/python-foundations/" in mine
        )
        # Opening a course one has not paid for, the way a browser would: a clear page, no trace.
        refused = b.client.get("hub/spawn/demo-learner/algorithms-in-python")
        assert refused.status_code == 403
        assert "do not have access" in refused.text
        assert "Traceback" not in refused.text
