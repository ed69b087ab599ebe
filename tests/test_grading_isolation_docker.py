"""Instructor course servers cannot reach the host through the grading data (issue #11, 1 and 2).

The attacker is code running in an instructor's real course container (a stolen instructor
account, or a learner's notebook the instructor opened): it writes into the grading directory the
spawner mounts at /home/jovyan/grading. The host's `learnhub grader` commands must never execute
what it planted, nor follow its links to files outside the grading data.
"""

from __future__ import annotations

import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from tests.harness import Browser, HubProcess, browser, run_learnhub, wait_for_server

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = "python-foundations"
ASSIGNMENT = "ps1-data-model"
PASSWORD = "learnhub-demo"
GRADING = "/home/jovyan/grading"


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
