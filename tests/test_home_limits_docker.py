"""A learner cannot fill the Hub's disk: homes have a size, the rest of the container is read-only.

One real hub (JupyterHub + proxy + DockerSpawner, the repository's config) with
``spawner.home: {storage: image, size: 64M}``. Learners' code is played by ``docker exec`` as
the container user (uid 1000) in their running course server: what a notebook cell or the
JupyterLab terminal would run.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.harness import (
    HubProcess,
    hub_settings,
    run_learnhub,
    running,
    stop_server,
    wait_for_server,
)

pytestmark = [pytest.mark.docker]

SIZE_MIB = 64
IMAGE = "learnhub/singleuser:latest"
COURSE = "python-foundations"
#: Seeded by the demo with COURSE.
LEARNER = "demo-learner"
MiB = 1024**2


@pytest.fixture(scope="module")
def quota_hub(
    images: None,
    docker_prefix_cleanup: None,
    courses_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("quota-hub")
    settings = hub_settings(workdir, courses_dir=courses_dir)
    settings["spawner"]["home"] = {"storage": "image", "size": f"{SIZE_MIB}M"}
    hub = HubProcess(workdir=workdir, settings=settings)
    with running(hub):
        yield hub


def learner_with_course(hub: HubProcess, user: str) -> None:
    created = hub.api("POST", "/users", json={"usernames": [user]})
    assert created.status_code == 201, created.text
    granted = run_learnhub(hub, "grant", user, COURSE)
    assert granted.returncode == 0, granted.stderr


def start(hub: HubProcess, engine: docker.DockerClient, user: str) -> Any:
    response = hub.api("POST", f"/users/{user}/servers/{COURSE}")
    assert response.status_code in (201, 202), response.text
    wait_for_server(hub, user, COURSE)
    labels = [f"learnhub.user={user}", f"learnhub.course={COURSE}", f"learnhub.prefix={hub.prefix}"]
    (container,) = engine.containers.list(filters={"label": labels})
    return container


def run_as_learner(container: Any, script: str) -> tuple[int, str]:
    result = container.exec_run(["sh", "-c", script], user="1000:100")
    return result.exit_code, result.output.decode(errors="replace")


def home_images(hub: HubProcess) -> list[Path]:
    return sorted((hub.data_dir / "homes").glob("*.ext4"))


@pytest.fixture(scope="module")
def full_home(quota_hub: HubProcess, engine: docker.DockerClient) -> dict[str, Any]:
    """The demo learner saved a file, then tried to write more than their home holds."""
    container = start(quota_hub, engine, LEARNER)
    code, output = run_as_learner(container, "echo 'my work' > ~/kept.txt")
    assert code == 0, output
    disk_free_before = shutil.disk_usage(quota_hub.data_dir).free
    code, output = run_as_learner(
        container,
        f"dd if=/dev/zero of=$HOME/fill bs=1M count={SIZE_MIB + 32} 2>&1; echo rc=$?; sync",
    )
    disk_free_after = shutil.disk_usage(quota_hub.data_dir).free
    return {
        "container": container,
        "fill_output": output,
        "disk_used_by_fill": disk_free_before - disk_free_after,
    }


def test_home_fills_up_at_its_size_not_the_hub_disk(
    quota_hub: HubProcess, full_home: dict[str, Any]
) -> None:
    output = full_home["fill_output"]
    assert "No space left on device" in output and "rc=1" in output, output
    # 96 MiB were asked for; the home holds 64 MiB, and that is all the host disk gave.
    assert full_home["disk_used_by_fill"] < (SIZE_MIB + 16) * MiB, full_home
    _, df = run_as_learner(full_home["container"], "df -m --output=size,avail $HOME | tail -1")
    size, avail = (int(word) for word in df.split())
    # ext4's journal and inode tables take their share of a small filesystem.
    assert SIZE_MIB * 0.8 <= size <= SIZE_MIB and avail < 2, df
    (image,) = home_images(quota_hub)
    assert image.stat().st_blocks * 512 <= SIZE_MIB * MiB
    log = quota_hub.log_tail(400)
    assert f"home ready: user={LEARNER} course={COURSE} storage=image outcome=created" in log, log


def test_other_learners_home_is_unaffected(
    quota_hub: HubProcess, engine: docker.DockerClient, full_home: dict[str, Any]
) -> None:
    learner_with_course(quota_hub, "quota-neighbour")
    container = start(quota_hub, engine, "quota-neighbour")
    code, output = run_as_learner(
        container, "dd if=/dev/zero of=$HOME/data bs=1M count=16 2>&1 && ls -l $HOME/data"
    )
    assert code == 0, output
    assert "16777216" in output, output
    stop_server(quota_hub, "quota-neighbour", COURSE)


def test_outside_home_and_tmp_is_read_only(full_home: dict[str, Any]) -> None:
    container = full_home["container"]
    # /var/tmp is world-writable in the image: without a read-only root, a learner fills the
    # host disk through the writable layer there.
    for path in ("/var/tmp/x", "/x", "/home/x", "/opt/learnhub/x", "/etc/x", "/usr/local/bin/x"):
        code, output = run_as_learner(container, f"echo x > {path}")
        assert code != 0 and "Read-only file system" in output, (path, output)
    code, output = run_as_learner(container, "echo x > /tmp/ok && cat /tmp/ok")
    assert code == 0 and output.strip() == "x", output


def test_work_survives_a_stop_and_start_of_a_full_home(
    quota_hub: HubProcess, engine: docker.DockerClient, full_home: dict[str, Any]
) -> None:
    stop_server(quota_hub, LEARNER, COURSE)
    container = start(quota_hub, engine, LEARNER)
    code, output = run_as_learner(container, "cat ~/kept.txt; rm ~/fill && echo freed")
    assert code == 0, output
    assert output.split() == ["my", "work", "freed"], output
    log = quota_hub.log_tail(400)
    assert f"user={LEARNER} course={COURSE} storage=image outcome=mounted" in log, log
    assert "full=yes" in log, log
    # Nothing of the home stays mounted on the host while the server runs: the container
    # holds the only mount, so the kernel lets go of it when the container goes.
    assert not any(path.is_mount() for path in (quota_hub.data_dir / "homes").iterdir())


def test_existing_volume_is_copied_into_the_new_home(
    quota_hub: HubProcess, engine: docker.DockerClient
) -> None:
    user = "legacylearner"
    volume = f"{quota_hub.prefix}-{user}--{COURSE.replace('-', '-2d')}"
    # The learner's home from before the limit was switched on (a plain named volume).
    subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            "-u",
            "1000:100",
            "-v",
            f"{volume}:/home/jovyan",
            IMAGE,
            "-c",
            "mkdir -p ~/project && echo 'old work' > ~/project/notes.txt",
        ],
        check=True,
        capture_output=True,
    )
    learner_with_course(quota_hub, user)
    container = start(quota_hub, engine, user)
    code, output = run_as_learner(container, "cat ~/project/notes.txt; stat -c %u ~/project")
    assert code == 0 and output.split() == ["old", "work", "1000"], output
    log = quota_hub.log_tail(400)
    assert f"user={user} course={COURSE} storage=image outcome=migrated" in log, log
