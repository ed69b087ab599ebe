"""Run the real nbgrader CLI, as an instructor would on the host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


class NbgraderFailed(AssertionError):
    """nbgrader exited with an error; the message carries its output.

    An AssertionError, so pytest reports it as a failed test with the output shown.
    """


def run_nbgrader(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real nbgrader CLI in ``cwd``; raise :class:`NbgraderFailed` with its output.

    nbgrader's gradebook shells out to `alembic`, so the venv's bin folder goes on PATH.
    """
    venv_bin = str(Path(sys.executable).parent)
    try:
        return subprocess.run(
            [sys.executable, "-m", "nbgrader", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            env={**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")},
        )
    except subprocess.CalledProcessError as exc:
        raise NbgraderFailed(
            f"nbgrader {' '.join(args)} failed:\n{exc.stdout}\n{exc.stderr}"
        ) from None
