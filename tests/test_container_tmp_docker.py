"""A learner's /tmp is bounded: writing past its size fails with ENOSPC, in a real container.

The container gets the same ``tmpfs`` host config, user and capabilities as a course server
(:data:`hub.spawner.SCRATCH_TMPFS`, passed by :class:`hub.spawner.LearnHubDockerSpawner`).
"""

from __future__ import annotations

import docker
import pytest

from hub.spawner import SCRATCH_TMPFS, SCRATCH_TMPFS_MIB
from tests.harness import TEST_PREFIX

IMAGE = "learnhub/singleuser:latest"


@pytest.mark.usefixtures("images", "docker_prefix_cleanup")
def test_tmp_is_a_bounded_tmpfs() -> None:
    client = docker.from_env()
    over = SCRATCH_TMPFS_MIB + 16
    container = client.containers.run(
        IMAGE,
        [
            "sh",
            "-c",
            # Fill /tmp past its size; then show the learner may still use it, and run from it.
            f"dd if=/dev/zero of=/tmp/fill bs=1M count={over} 2>&1; echo rc=$?; "
            "df -m /tmp | tail -1; rm /tmp/fill && printf '#!/bin/sh\\necho ok\\n' > /tmp/run && "
            "chmod +x /tmp/run && /tmp/run",
        ],
        name=f"{TEST_PREFIX}-tmpfs",
        user="1000:100",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        tmpfs=SCRATCH_TMPFS,
        entrypoint=[],
        detach=True,
    )
    try:
        status = container.wait(timeout=120)
        output = container.logs().decode()
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 0, output
    assert "No space left on device" in output and "rc=1" in output, output
    assert "ok" in output.splitlines()[-1], output
    size_mib = int(output.splitlines()[-2].split()[1])
    assert SCRATCH_TMPFS_MIB - 1 <= size_mib <= SCRATCH_TMPFS_MIB, output
