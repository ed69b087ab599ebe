"""The sandbox on its own: limits, wall clock, inputs, cleanup (real Docker)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import SimpleNamespace

import docker
import nbformat
import pytest
import requests

from grader.sandbox import (
    DEFAULT_ENV,
    SandboxError,
    SandboxResult,
    run_notebook_in_sandbox,
    run_notebook_in_sandbox_async,
)
from tests.grader.conftest import sandbox_containers, short_policy

pytestmark = pytest.mark.docker


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def _outputs(result: SandboxResult) -> str:
    return json.dumps([c.get("outputs", []) for c in result.notebook.cells])


def test_isolation_facts(sandbox_engine: None) -> None:
    code = (
        "import os, socket\n"
        "print('UID', os.getuid(), os.getgid())\n"
        "print('CWD', os.getcwd())\n"
        "for path in ('/', '/opt', os.getcwd(), '/tmp'):\n"
        "    try:\n"
        "        open(os.path.join(path, 'probe'), 'w').close(); print('WRITABLE', path)\n"
        "    except OSError:\n"
        "        print('READONLY', path)\n"
        "print('CAPS', [l for l in open('/proc/self/status') if l.startswith('CapEff')])\n"
        "print('IFACES', sorted(n for _, n in socket.if_nameindex()))\n"
    )
    result = run_notebook_in_sandbox(_notebook(code), short_policy(), resources_dir=None)
    text = _outputs(result)
    assert result.outcome == "ok", result.detail
    assert "UID 1000 100" in text and "CWD /sandbox/work" in text
    assert "READONLY /\\n" in text and "READONLY /opt" in text
    assert "WRITABLE /sandbox/work" in text and "WRITABLE /tmp" in text
    assert "CapEff" in text and "0000000000000000" in text  # no effective capabilities
    assert "IFACES ['lo']" in text


def test_assignment_files_are_copied_but_not_symlinks(sandbox_engine: None, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.txt").write_text("more")
    os.symlink("/etc/hostname", tmp_path / "host-link")
    code = (
        "import os\n"
        "print(open('data.csv').read(), open('sub/more.txt').read())\n"
        "print('LINK', os.path.exists('host-link'))"
    )
    result = run_notebook_in_sandbox(_notebook(code), short_policy(), resources_dir=tmp_path)
    text = _outputs(result)
    assert "a,b\\n1,2" in text and "more" in text and "LINK False" in text


def test_kernel_is_ipykernel_with_student_files_on_path(
    sandbox_engine: None, tmp_path: Path
) -> None:
    # The runner launches ipykernel itself (without its debugger); the kernel must still be
    # the image's IPython kernel, with the working folder importable as usual.
    (tmp_path / "helper.py").write_text("ANSWER = 42\n")
    code = (
        "import sys, helper\n"
        "print('SHELL', type(get_ipython()).__name__)\n"
        "print('HELPER', helper.ANSWER)\n"
        "print('DEBUGPY', sys.modules.get('debugpy', 'absent'))\n"
        "print('ARGV0', sys.argv[0].rsplit('/', 1)[-1])\n"
    )
    result = run_notebook_in_sandbox(_notebook(code), short_policy(), resources_dir=tmp_path)
    text = _outputs(result)
    assert result.outcome == "ok", text
    assert "SHELL ZMQInteractiveShell" in text and "HELPER 42" in text
    assert "DEBUGPY None" in text and "ARGV0 ipykernel_launcher.py" in text
    assert result.notebook.metadata["language_info"]["name"] == "python"
    # The container's CPU time (a kernel start at the very least) is reported.
    assert result.cpu_seconds is not None and result.cpu_seconds > 0
    assert result.as_metadata()["cpu_seconds"] == round(result.cpu_seconds, 3)


def test_kernel_that_cannot_start_is_a_sandbox_error(sandbox_engine: None) -> None:
    # Only the kernel sees PYTHONHOME (the runner runs with -E): it dies before any student
    # code ran, which must not be graded as the submission's fault.
    policy = short_policy(env={**DEFAULT_ENV, "PYTHONHOME": "/nonexistent"})
    with pytest.raises(SandboxError, match="Kernel died before replying"):
        run_notebook_in_sandbox(_notebook("print(1)"), policy, resources_dir=None)
    assert sandbox_containers() == []


def test_notebook_deadline_marks_every_remaining_cell(sandbox_engine: None) -> None:
    stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    nb = _notebook("x = 1", stubborn, "print('never')", "print('never either')")
    policy = short_policy(cell_timeout=3, notebook_timeout=8.0)
    result = run_notebook_in_sandbox(nb, policy, resources_dir=None)
    assert (result.outcome, result.reason) == ("limit", "timeout"), result.detail
    assert result.seconds < policy.wall_clock_limit
    for cell in result.notebook.cells[1:]:
        assert any(o["output_type"] == "error" for o in cell.outputs), cell


def test_hard_wall_clock_kills_the_container(sandbox_engine: None) -> None:
    # The grader's own limit (wall-clock backstop + grace) fires before the runner's.
    policy = short_policy(
        cell_timeout=30, notebook_timeout=30.0, wall_clock_factor=1.0, startup_grace=-24.0
    )
    result = run_notebook_in_sandbox(
        _notebook("import time\ntime.sleep(60)", "print(1)"), policy, resources_dir=None
    )
    assert (result.outcome, result.reason) == ("limit", "timeout")
    assert "killed" in result.detail
    assert all(any(o["output_type"] == "error" for o in c.outputs) for c in result.notebook.cells)
    assert result.seconds < 20
    assert sandbox_containers() == []


def test_async_wrapper_runs_sandboxes_concurrently(sandbox_engine: None) -> None:
    async def both() -> list[SandboxResult]:
        policy = short_policy()
        return list(
            await asyncio.gather(
                run_notebook_in_sandbox_async(
                    _notebook("print(6 * 7)"), policy, resources_dir=None
                ),
                run_notebook_in_sandbox_async(
                    _notebook("print(6 * 9)"), policy, resources_dir=None
                ),
            )
        )

    first, second = asyncio.run(both())
    assert "42" in _outputs(first) and "54" in _outputs(second)
    assert first.container != second.container
    assert sandbox_containers() == []


class _WedgedContainer:
    """What docker-py hands back for a container the engine can neither kill nor remove."""

    name = id = "lhtest-wedged"

    def start(self) -> None:
        pass

    def wait(self, timeout: float) -> dict[str, int]:
        raise requests.exceptions.ReadTimeout("no answer within the wall-clock limit")

    def kill(self) -> None:
        raise docker.errors.APIError("cannot kill container", response=_response(500))

    def remove(self, force: bool) -> None:
        raise docker.errors.APIError("cannot remove container", response=_response(500))


class _Stdin:
    """The container's stdin as the attach call hands it back; takes the notebook."""

    def settimeout(self, timeout: float) -> None:
        assert timeout > 0

    def sendall(self, data: bytes) -> None:
        assert data.startswith(b"{")

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass


def _response(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = "http+docker://localhost/containers/lhtest-wedged"
    response.reason = "Internal Server Error"
    return response


def test_a_container_the_engine_cannot_kill_is_a_sandbox_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = SimpleNamespace(
        containers=SimpleNamespace(create=lambda *a, **k: _WedgedContainer()),
        api=SimpleNamespace(attach_socket=lambda *a, **k: _Stdin()),
    )
    policy = short_policy(cell_timeout=5, notebook_timeout=5.0)
    with pytest.raises(SandboxError, match="could not kill it"):
        run_notebook_in_sandbox(
            _notebook("print(1)"),
            policy,
            resources_dir=None,
            client=client,  # type: ignore[arg-type]
        )
    assert "remove it with: docker rm -f lhtest-wedged" in caplog.text


def test_cell_limit_is_cpu_time_and_waiting_has_a_wall_clock_backstop(
    sandbox_engine: None,
) -> None:
    # A busy cell is interrupted for its CPU time and the notebook goes on; a cell that only
    # waits uses no CPU and is stopped by the backstop (cell limit x wall-clock factor).
    nb = _notebook(
        "while True: pass", "print('after the busy cell')", "import time; time.sleep(60)"
    )
    # A factor large enough that a loaded host cannot stretch the busy cell past it.
    policy = short_policy(cell_timeout=1, notebook_timeout=30.0, wall_clock_factor=15.0)
    result = run_notebook_in_sandbox(nb, policy, resources_dir=None)
    busy, after, waiting = (c.outputs for c in result.notebook.cells)
    assert [o.get("ename") for o in busy] == ["Timeout"], busy
    assert "1 s of CPU time" in busy[0]["evalue"]
    assert "after the busy cell" in json.dumps(after)
    assert any(
        o.get("ename") == "Timeout" and "wall-clock" in o.get("evalue", "") for o in waiting
    ), waiting
    assert (result.outcome, result.reason, result.cell) == ("limit", "timeout", 0)
