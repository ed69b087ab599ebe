"""Every `learnhub` command that needs the Docker engine says so in one line when it cannot
reach it: exit status 2, the engine's address and what to do, no traceback.

Run through the real command line (the venv's `learnhub` script) with DOCKER_HOST pointing at
a socket nobody listens on, so nothing here touches the engine or the host's firewall.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness import ROOT, TEST_PREFIX

LEARNHUB = ROOT / ".venv" / "bin" / "learnhub"

#: Commands that talk to the Docker engine (backup and restore copy files and databases only).
DOCKER_COMMANDS = [
    ("network", "apply"),
    ("network", "remove"),
    ("images", "build"),
    ("demo", "--skip-images"),
    ("courses", "validate", "python-foundations", "--run"),
]


def learnhub(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``learnhub ARGS`` with its own settings and an engine address where nothing listens."""
    config = tmp_path / "learnhub.yaml"
    config.write_text(
        f"courses_dir: {ROOT / 'courses'}\n"
        f"hub:\n  data_dir: {tmp_path / 'var'}\n"
        f"spawner:\n  name_prefix: {TEST_PREFIX}\n  network: {TEST_PREFIX}-net\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEARNHUB_", "DOCKER_"))}
    env["DOCKER_HOST"] = f"unix://{tmp_path / 'no-docker.sock'}"
    env["LEARNHUB_CONFIG"] = str(config)
    # The venv's editable install maps `hub` to one checkout; run this one's code.
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [str(LEARNHUB), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.mark.parametrize("command", DOCKER_COMMANDS, ids=" ".join)
def test_an_unreachable_engine_is_one_line_and_exit_status_2(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = learnhub(tmp_path, *command)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("learnhub: ")]
    assert len(errors) == 1, result.stderr
    [error] = errors
    assert error.startswith("learnhub: cannot reach the Docker engine at "), error
    assert f"unix://{tmp_path / 'no-docker.sock'}" in error, error
    assert "No such file or directory" in error, error
    assert "DOCKER_HOST" in error and "systemctl start docker" in error, error
