"""Instructor course servers cannot reach the host through the grading data (issue #11, 1 and 2).

The attacker is code running in an instructor's real course container (a stolen instructor
account, or a learner's notebook the instructor opened): it writes into the grading directory the
spawner mounts at /home/jovyan/grading. The host's `learnhub grader` commands must never execute
what it planted, nor follow its links to files outside the grading data.
"""

from __future__ import annotations

import re
import shlex
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    ROOT,
    TEST_PREFIX,
    Browser,
    HubProcess,
    browser,
    hub_settings,
    run_learnhub,
    running,
    wait_for_server,
)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = "python-foundations"
ASSIGNMENT = "ps1-data-model"
PASSWORD = "learnhub-demo"
GRADING = "/home/jovyan/grading"


@pytest.fixture(scope="module")
def docker_hub(
    images: None,
    docker_prefix_cleanup: None,
    courses_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HubProcess]:
    """A real hub whose course servers and sandboxes run THIS checkout's course image.

    The `learnhub/singleuser:latest` tag is shared by every checkout on the engine and may be
    rebuilt from another one mid-test; the instructor configuration under test is in the
    image, so the module pins the image it built under a tag of its own.
    """
    from hub import images as image_builder

    (built,) = [
        r
        for r in image_builder.build_images(ROOT, log=print)
        if r.name.startswith("learnhub/singleuser")
    ]
    pinned = f"learnhub/singleuser:{TEST_PREFIX}-grading"
    subprocess.run(["docker", "tag", built.image_id, pinned], check=True)
    workdir = tmp_path_factory.mktemp("hub")
    settings = hub_settings(workdir, courses_dir=courses_dir)
    settings["spawner"]["image"] = pinned
    hub = HubProcess(workdir=workdir, settings=settings)
    try:
        with running(hub):
            yield hub
    finally:
        subprocess.run(["docker", "rmi", pinned], capture_output=True, check=False)


def instructor_container(b: Browser, hub: HubProcess) -> str:
    """Start demo-instructor's course server and return its container's name."""
    assert b.login("demo-instructor", PASSWORD).status_code == 200
    if COURSE not in hub.api("GET", "/users/demo-instructor").json()["servers"]:
        assert b.spawn_course("demo-instructor", COURSE).status_code in (201, 202)
    server = wait_for_server(hub, "demo-instructor", COURSE)
    b.open_server(server["url"])
    names = subprocess.run(
        [
            "docker",
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            "label=learnhub.user=demo-instructor",
            "--filter",
            f"label=learnhub.course={COURSE}",
            "--filter",
            f"label=learnhub.prefix={hub.prefix}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(names) == 1, names
    return names[0]


def in_container(container: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script in the container as its user (uid 1000), as instructor code would."""
    result = subprocess.run(
        ["docker", "exec", "-u", "1000:100", "-w", GRADING, container, "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def snapshot(folder: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """Every entry under `folder`: (mode, uid, gid, content of files)."""
    state = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        info = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        state[str(path.relative_to(folder))] = (info.st_mode, info.st_uid, info.st_gid, content)
    return state


def test_instructor_container_cannot_take_the_host(docker_hub: HubProcess, tmp_path: Path) -> None:
    released = run_learnhub(docker_hub, "grader", "release", COURSE, ASSIGNMENT)
    assert released.returncode == 0, released.stderr

    # Host files the test owns, outside the grading data; the container cannot see them.
    marker = tmp_path / "planted-code-ran"
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (victim / "precious.txt").write_text("the host's own data\n")
    (victim / "precious.txt").chmod(0o600)
    before = snapshot(victim)

    with browser(docker_hub) as b:
        container = instructor_container(b, docker_hub)
        planted_config = (
            "import os, pathlib\n"
            f"pathlib.Path({str(marker)!r}).write_text(f'ran as uid {{os.getuid()}}')\n"
            "c = get_config()\n"
        )
        in_container(
            container,
            # Code the host would execute, and links to host paths for it to follow: the
            # gradebook (SQLite creates a missing target), the autograded and feedback folders
            # nbgrader writes into, and a file the chown walk would reach.
            f"printf '%s' {shlex.quote(planted_config)} > nbgrader_config.py && "
            "rm -f gradebook.db && "
            f"ln -s {victim}/created-by-host.db gradebook.db && "
            "rm -rf autograded feedback && "
            f"ln -s {victim} autograded && ln -s {victim} feedback && "
            f"ln -s {victim}/precious.txt chown-me",
        )
        # A submission of its own, so autograde has something to write.
        in_container(
            container,
            f"mkdir -p submitted/mallory/{ASSIGNMENT} && "
            f"cp release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb submitted/mallory/{ASSIGNMENT}/",
        )

        graded = run_learnhub(docker_hub, "grader", "autograde", COURSE, ASSIGNMENT)
        collected = run_learnhub(docker_hub, "grader", "collect", COURSE, ASSIGNMENT)

        assert not marker.exists(), f"the host executed the planted config: {marker.read_text()}"
        assert snapshot(victim) == before, "a host process followed the container's links"
        # The host's own grading work is unaffected by what the container planted.
        assert graded.returncode == 0, graded.stdout + graded.stderr
        assert collected.returncode == 0, collected.stdout + collected.stderr
        # The planted submission is not the host's: nothing was graded or collected.
        assert "mallory" not in graded.stdout + collected.stdout
        # The instructor's server sees the result of the commands (a fresh gradebook, the
        # release), not its own links any more.
        listing = in_container(container, "ls -la; test -f gradebook.db && ! test -L gradebook.db")
        assert "release" in listing.stdout


PROBE_FILE = "/home/jovyan/LEARNER-CODE-RAN-HERE"


def hostile_submission(nb: dict) -> dict:  # type: ignore[type-arg]
    """The released notebook plus a learner's code and markup aimed at the instructor."""
    code = (
        "from IPython.display import HTML, Javascript, display\n"
        "try:\n"
        f"    open({PROBE_FILE!r}, 'w').write('learner code ran')\n"
        "except OSError:\n"
        "    pass\n"
        "display(HTML('<script>LEARNHUB_XSS_OUTPUT=1</script><b>bold</b>'))\n"
        "display(Javascript('LEARNHUB_XSS_JS=1'))\n"
    )
    nb["cells"] += [
        {
            "cell_type": "markdown",
            "id": "hostile-markdown",
            "metadata": {},
            "source": "# Hi\n<script>window.LEARNHUB_XSS_PROBE=1</script>\n",
        },
        {
            "cell_type": "code",
            "id": "hostile-code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": code,
        },
    ]
    return nb


def test_formgrader_never_runs_or_renders_learner_code(docker_hub: HubProcess) -> None:
    from tests.test_assignments_docker import assignments_api, open_course

    released = run_learnhub(docker_hub, "grader", "release", COURSE, ASSIGNMENT, "--force")
    assert released.returncode == 0, released.stderr
    with browser(docker_hub) as learner:
        assert learner.login("demo-learner", PASSWORD).status_code == 200
        url = open_course(learner, docker_hub, "demo-learner")
        assignments_api(learner, url, "fetch")
        path = f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
        nb = hostile_submission(learner.contents(url, path).json()["content"])
        saved = learner.client.put(
            learner.absolute(url) + f"api/contents/{path}",
            json={"type": "notebook", "format": "json", "content": nb},
            headers=learner.xsrf_headers(url),
        )
        assert saved.status_code == 200, saved.text
        assignments_api(learner, url, "submit")
    for step in ("collect", "autograde"):
        done = run_learnhub(docker_hub, "grader", step, COURSE, ASSIGNMENT)
        assert done.returncode == 0, done.stdout + done.stderr

    with browser(docker_hub) as b:
        container = instructor_container(b, docker_hub)
        server = wait_for_server(docker_hub, "demo-instructor", COURSE)["url"]
        # The formgrader's Autograde button, as the page calls it.
        pressed = b.client.post(
            b.absolute(server) + f"formgrader/api/submission/{ASSIGNMENT}/demo-learner/autograde",
            headers=b.xsrf_headers(server),
            timeout=120,
        )
        assert pressed.status_code == 200, pressed.text
        answer = pressed.json()
        assert answer["success"] is False
        assert "learnhub grader autograde" in answer.get("log", "") + answer.get("error", "")
        absent = in_container(container, f"test -e {PROBE_FILE} && echo PRESENT || echo ABSENT")
        assert absent.stdout.strip() == "ABSENT", "a submission ran in the instructor's server"

        # The graded submission as the formgrader shows it: markup, but no script of the learner.
        listed = b.client.get(
            b.absolute(server) + f"formgrader/api/submitted_notebooks/{ASSIGNMENT}/{ASSIGNMENT}",
            headers=b.xsrf_headers(server),
        )
        assert listed.status_code == 200, listed.text
        (mine,) = [s for s in listed.json() if s["student"] == "demo-learner"]
        page = b.client.get(b.absolute(server) + f"formgrader/submissions/{mine['id']}")
        assert page.status_code == 200, page.text
        html = page.text
        assert "LEARNHUB_XSS_PROBE" in html, "the learner's markdown cell should be shown"
        scripts = re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S | re.I)
        assert scripts, "the page's own scripts should be there"
        # The code cell's source shows the probes as escaped text; no script may carry one.
        assert not [s for s in scripts if "LEARNHUB_XSS" in s], "a learner's script is on the page"
        assert "<script>window.LEARNHUB_XSS_PROBE" not in html
