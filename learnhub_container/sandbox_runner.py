"""Notebook runner that executes INSIDE a LearnHub sandbox container.

The grader copies this file into the container and starts it as PID 1 with
``python -m learnhub_sandbox_runner``. It only uses the standard library, nbformat, nbclient
and jupyter_client (all in the course image), never the ``grader`` package.

Protocol: the notebook and the assignment's other files are read from ``--input`` (a
read-only bind), copied into the writable scratch ``--work`` dir, executed there with a
per-cell and a per-notebook time limit, and the result is printed to stdout as one JSON
document after :data:`RESULT_MARKER`. Everything else the runner logs goes to stderr.

Student code runs in the kernel, a child process with the same uid as this runner, so the
runner protects its result channel from it:

* the runner makes itself non-dumpable, so the kernel cannot open ``/proc/1/fd/1`` or read
  its memory;
* the kernel's own stdout/stderr go to ``/dev/null`` (its outputs travel over ZeroMQ);
* as PID 1 of the container's pid namespace the runner ignores signals from student code;
* before printing the result, every other process in the container is killed, so nothing
  can write after (or interleave with) the final result; the grader reads the LAST marker.

Start-up is most of a sandbox's cost, so the runner skips what a one-shot run does not need:
ipykernel's debugger (importing debugpy is a third of a kernel's start), jupyter_client's
0.2 s of IOPub silence at the end of ``wait_for_ready``, and a graceful kernel shutdown (the
kernel is killed with everything else anyway).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from queue import Empty
from typing import Any, cast

import nbformat
import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbclient.util import run_hook

RESULT_MARKER = "----- LEARNHUB-SANDBOX-RESULT -----"
#: Text kept per output; nbgrader's LimitOutput trims further, this only bounds the transfer.
MAX_TEXT_CHARS = 100_000
_OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")
_PIDS_FILES = ("/sys/fs/cgroup/pids.events", "/sys/fs/cgroup/pids/pids.events")
_CPU_STAT_V2 = "/sys/fs/cgroup/cpu.stat"
_CPU_USAGE_V1 = "/sys/fs/cgroup/cpuacct/cpuacct.usage"
_PR_SET_DUMPABLE = 4
#: ``python -m ipykernel_launcher`` (same sys.argv, same sys.path handling), without the
#: debugger: ipykernel enables it whenever debugpy imports, which costs ~0.1 CPU-s per
#: kernel, and no client can attach to it in a sandbox.
KERNEL_LAUNCHER = (
    "import runpy, sys\n"
    "sys.modules['debugpy'] = None\n"
    "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)\n"
)
#: Milliseconds between the client's attempts to reach the kernel's ports while it starts
#: (ZeroMQ's default is 100; a local connect attempt costs next to nothing).
RECONNECT_MS = 10


def _log(message: str) -> None:
    print(f"learnhub-sandbox-runner: {message}", file=sys.stderr, flush=True)


def _cgroup_counter(paths: tuple[str, ...], key: str) -> int:
    """A counter from a cgroup v2 or v1 events file, 0 when unavailable."""
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return int(parts[1])
    return 0


def _cgroup_cpu_seconds() -> float | None:
    """CPU time used so far by the whole container (runner, kernel, anything else)."""
    usec = _cgroup_counter((_CPU_STAT_V2,), "usage_usec")
    if usec:
        return usec / 1e6
    try:
        return int(Path(_CPU_USAGE_V1).read_text()) / 1e9
    except (OSError, ValueError):
        return None


def _make_non_dumpable() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        _log(f"prctl(PR_SET_DUMPABLE) failed: errno {ctypes.get_errno()}")


def _copy_inputs(source: Path, work: Path) -> None:
    for item in source.iterdir():
        if item.is_symlink():
            continue  # never follow links out of the input folder
        target = work / item.name
        if item.is_dir():
            shutil.copytree(item, target, symlinks=True)
        else:
            shutil.copyfile(item, target)


def _error_output(ename: str, evalue: str) -> nbformat.NotebookNode:
    output: nbformat.NotebookNode = nbformat.v4.new_output(  # type: ignore[no-untyped-call]
        "error", ename=ename, evalue=evalue, traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"]
    )
    return output


def _truncate(nb: nbformat.NotebookNode) -> None:
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text")
            if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
                output["text"] = text[:MAX_TEXT_CHARS] + "\n[output truncated by the sandbox]\n"
            for mime, value in list(output.get("data", {}).items()):
                if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
                    output["data"][mime] = value[:MAX_TEXT_CHARS]


class _Progress:
    """Which cell is running and which cells hit their time limit."""

    def __init__(self) -> None:
        self.current = -1
        self.timed_out: list[int] = []

    def on_cell_start(self, cell: Any, cell_index: int) -> None:
        self.current = cell_index

    def on_cell_executed(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        # Same as nbgrader's Execute.on_cell_executed: a timeout reply has no matching
        # error output, so add it; nbgrader then scores the cell 0 instead of full marks.
        content = (execute_reply or {}).get("content", {})
        if content.get("status") != "error":
            return
        if content.get("ename") == "Timeout":
            self.timed_out.append(cell_index)
        if not any(
            o.get("output_type") == "error" and o.get("ename") == content.get("ename")
            for o in cell.outputs
        ):
            cell.outputs.append(
                nbformat.v4.new_output(  # type: ignore[no-untyped-call]
                    "error",
                    ename=content.get("ename", "Error"),
                    evalue=content.get("evalue", ""),
                    traceback=content.get("traceback") or [content.get("evalue", "")],
                )
            )


def mark_unfinished(nb: nbformat.NotebookNode, start: int, ename: str, evalue: str) -> int | None:
    """Put an error into the offending cell and every code cell after it.

    nbgrader gives full marks to a test cell without an error output, so cells that never
    ran must carry an error too. Returns the index of the offending code cell.
    """
    first: int | None = None
    for index in range(max(start, 0), len(nb.cells)):
        cell = nb.cells[index]
        if cell.cell_type != "code":
            continue
        if first is None:
            first = index
            cell.outputs = [*cell.get("outputs", []), _error_output(ename, evalue)]
        else:
            cell.outputs = [
                _error_output("NotExecuted", f"cell not run: the sandbox stopped ({evalue})")
            ]
    return first


def _prefer_kernel_for_oom_kill() -> None:
    """Runs in the kernel process before exec: make it the OOM killer's first choice.

    Raising one's own ``oom_score_adj`` needs no privilege; the kernel and everything it
    forks are then killed before the runner, which survives to report the limit.
    """
    # The fork inherited the runner's non-dumpable flag, which makes /proc/self root-owned;
    # the kernel becomes dumpable at exec anyway, so lift it here already.
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass


class SandboxKernelSpecs(KernelSpecManager):  # type: ignore[misc]
    """One kernel, whatever the name: ipykernel in this interpreter, via KERNEL_LAUNCHER.

    That is the image's ``python3`` kernel; spelling it out spares the search of the kernel
    folders, which imports IPython into the runner just to find its folder.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            name="python3",
            argv=[sys.executable, "-c", KERNEL_LAUNCHER, "-f", "{connection_file}"],
            display_name="Python 3 (ipykernel)",
            language="python",
            interrupt_mode="signal",
            metadata={},
        )


def kernel_manager() -> AsyncKernelManager:
    """A manager for the sandbox's kernel (never one named by the submission's metadata).

    The runner owns this manager, so nbclient neither shuts the kernel down gracefully at
    the end (it waits for the kernel to exit) nor on an abort; the runner kills it.
    """
    context = zmq.asyncio.Context()
    context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
    return AsyncKernelManager(
        kernel_name="python3", kernel_spec_manager=SandboxKernelSpecs(), context=context
    )


async def wait_for_kernel(kc: AsyncKernelClient) -> None:
    """Return once the kernel answers ``kernel_info`` and IOPub delivers.

    Same handshake as jupyter_client's ``wait_for_ready`` minus its final step, which drains
    IOPub until it has been silent for 0.2 s: nbclient ignores IOPub messages that are not
    replies to the cell it runs, so leftovers do no harm. The caller bounds the wait.
    """
    while True:
        kc.kernel_info()
        try:
            reply = await kc.shell_channel.get_msg(timeout=1)
        except Empty:
            reply = None
        if reply is not None and reply["msg_type"] == "kernel_info_reply":
            try:
                await kc.iopub_channel.get_msg(timeout=0.2)
                return
            except Empty:
                pass  # IOPub not connected yet: ask again
        if not await kc.is_alive():
            # Not DeadKernelError: no student code has run, so this is the sandbox failing
            # (the grader reports an error), never a limit the submission hit.
            raise RuntimeError("Kernel died before replying to kernel_info")


class SandboxClient(NotebookClient):  # type: ignore[misc]
    """nbclient's client with :func:`wait_for_kernel` as the readiness check."""

    async def async_start_new_kernel_client(self) -> AsyncKernelClient:
        assert self.km is not None
        kc = cast(AsyncKernelClient, self.km.client())  # the manager is asynchronous
        self.kc = kc
        kc.start_channels()
        async with asyncio.timeout(self.startup_timeout):
            await wait_for_kernel(kc)
        kc.allow_stdin = False
        await run_hook(self.on_notebook_start, notebook=self.nb)
        return kc


async def _execute(client: NotebookClient, notebook_timeout: float) -> str | None:
    """Run the notebook; return an abort kind ("timeout", "kernel-died") or None."""
    task = asyncio.ensure_future(
        client.async_execute(
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_prefer_kernel_for_oom_kill,
        )
    )
    # Not asyncio.wait_for: nbclient turns the cancellation into DeadKernelError, which
    # would hide that the deadline was the cause.
    done, _ = await asyncio.wait({task}, timeout=notebook_timeout)
    if not done:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception) as exc:
            # Aborting anyway (every process is killed before we report); cleanup errors
            # of a kernel stuck in student code are expected and irrelevant.
            _log(f"notebook deadline: execution stopped ({type(exc).__name__})")
        return "timeout"
    try:
        task.result()
    except DeadKernelError:
        return "kernel-died"
    return None


async def _shutdown(km: AsyncKernelManager) -> None:
    await km.shutdown_kernel(now=True)


def run(
    input_dir: Path, work: Path, notebook: str, cell_timeout: int, notebook_timeout: float
) -> dict[str, Any]:
    """Execute ``notebook`` and return the result document printed for the grader."""
    started = time.monotonic()
    _copy_inputs(input_dir / "files", work)
    # Written by the grader from the notebook nbgrader has already read and validated (v4):
    # validating again would compile nbformat's JSON schema in every sandbox.
    text = (input_dir / notebook).read_text(encoding="utf-8")
    nb: nbformat.NotebookNode = nbformat.v4.reads(text)  # type: ignore[no-untyped-call]
    progress = _Progress()
    km = kernel_manager()
    client = SandboxClient(
        nb,
        km=km,
        timeout=cell_timeout,
        startup_timeout=max(int(notebook_timeout), 1),
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": "Timeout",
            "evalue": f"cell exceeded {cell_timeout} s",
            "traceback": [f"\x1b[0;31mTimeout\x1b[0m: cell exceeded {cell_timeout} s"],
        },
        record_timing=False,
        on_cell_start=progress.on_cell_start,
        on_cell_executed=progress.on_cell_executed,
        resources={"metadata": {"path": str(work)}},
    )
    abort = asyncio.run(_execute(client, notebook_timeout))
    # At once: whatever student code left running (a fork bomb's 127 processes) would
    # otherwise share the CPU limit with the rest of this run.
    if not _kill_everything_else() and km.has_kernel:
        asyncio.run(_shutdown(km))  # outside a sandbox: stop our own kernel only

    oom_kills = _cgroup_counter(_OOM_FILES, "oom_kill")
    pids_hits = _cgroup_counter(_PIDS_FILES, "max")
    reason, detail, cell_index = "", "", None
    if abort == "timeout":
        reason, detail = "timeout", f"notebook exceeded {notebook_timeout:g} s"
        cell_index = mark_unfinished(nb, progress.current, "Timeout", detail)
    elif abort == "kernel-died":
        # A fork bomb often ends in the OOM killer too: the process limit is the cause.
        if pids_hits:
            reason, detail = "pids", "kernel died after hitting the process limit"
        elif oom_kills:
            reason, detail = "memory", "kernel killed: memory limit exceeded"
        else:
            reason, detail = "kernel-died", "the kernel died"
        cell_index = mark_unfinished(nb, progress.current, "KernelDied", detail)
    elif pids_hits:
        reason, detail = "pids", f"process limit reached {pids_hits} time(s)"
    elif oom_kills:
        reason, detail = "memory", "a process was killed: memory limit exceeded"
    elif progress.timed_out:
        cell_index = progress.timed_out[0]
        reason, detail = "timeout", f"cell {cell_index} exceeded {cell_timeout} s"
    _truncate(nb)
    return {
        "outcome": "limit" if reason else "ok",
        "reason": reason,
        "detail": detail,
        "cell": cell_index,
        "seconds": round(time.monotonic() - started, 3),
        "cpu_seconds": _cgroup_cpu_seconds(),
        "notebook": nb,
    }


def _kill_everything_else() -> bool:
    """SIGKILL every other process in the container (we are PID 1 of its namespace).

    Returns False, killing nothing, outside a sandbox (debugging, tests): there the other
    processes are the caller's.
    """
    if os.getpid() != 1:
        return False
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    # Reap what we can so the pid limit does not keep counting zombies.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.005)
    return True


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point used by the grader."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--notebook", required=True)
    parser.add_argument("--cell-timeout", type=int, required=True)
    parser.add_argument("--notebook-timeout", type=float, required=True)
    args = parser.parse_args(argv)

    _make_non_dumpable()
    result = run(args.input, args.work, args.notebook, args.cell_timeout, args.notebook_timeout)
    sys.stdout.write("\n" + RESULT_MARKER + "\n")
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    # Everything else is dead and the container goes away: skip the interpreter's teardown
    # (closing the unused kernel client's ZeroMQ sockets, nbclient's atexit cleanup).
    os._exit(status)
