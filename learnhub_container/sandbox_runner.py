"""Notebook runner that executes INSIDE a LearnHub sandbox container.

The grader copies this file into the container and starts it as PID 1 with
``python -m learnhub_sandbox_runner``. It only uses the standard library, nbformat, nbclient
and jupyter_client (all in the course image), never the ``grader`` package.

Protocol: the notebook (JSON, hidden tests included) arrives on stdin, which the grader
closes after it; the assignment's other files are read from ``--input`` (a read-only bind)
and copied into the writable scratch ``--work`` dir. The notebook is executed there with a
per-cell and a per-notebook time limit, and the result is printed to stdout as one JSON
document after :data:`RESULT_MARKER`. Everything else the runner logs goes to stderr.

Student code runs in the kernel, a child process with the same uid as this runner, so the
runner protects its result channel and the hidden tests from it:

* before it reads anything, the runner makes itself non-dumpable (``PR_SET_DUMPABLE`` 0),
  which makes its ``/proc`` entries root's: the kernel cannot open ``/proc/1/fd/*``, read
  ``/proc/1/mem`` or ``environ`` (without that, on this kernel, a same-uid process with no
  capabilities can read all three). The runner refuses to go on if that fails;
* the notebook is never a file in the container: the runner reads it from stdin to the end
  and puts ``/dev/null`` in its place before the kernel starts, so the hidden tests live only
  in the runner's memory, and reach the kernel one test cell at a time, as it runs;
* the kernel's own stdout/stderr go to ``/dev/null`` (its outputs travel over ZeroMQ);
* as PID 1 of the container's pid namespace the runner ignores signals from student code;
* a display update (``update_display`` by display id) changes outputs of the running cell
  only, never those of an earlier cell (whose outputs the feedback may keep);
* before printing the result, every other process in the container is killed, so nothing
  can write after (or interleave with) the final result; the grader reads the LAST marker.

Tests run as written. Student code shares the kernel with the tests, so before every test
cell (``grade`` and not ``solution`` in nbgrader's metadata) the runner has the kernel put back
what it looked like before any student code ran (:data:`GUARD`): IPython's input and AST
transformers, custom exception handlers, display and exception hooks, ``sys`` hooks, trace
and profile functions, signal handlers and timers, builtins, standard-library modules, the
kernel's and the shell's methods, and the names bound by locked (instructor) cells. The
request answers with a nonce; without that answer the test cell is not run and fails.

Limits count CPU time, not wall-clock time, so a busy host does not change a grade: a cell
may use ``--cell-timeout`` CPU seconds and the notebook ``--notebook-timeout`` (the
container's CPU usage from its cgroup, minus the runner's own). A cell over its budget is
interrupted; one that ignores the interrupt ends the run. Wall-clock limits stay only as a
backstop for code that waits without computing (``--wall-clock-factor`` times the CPU
limits).

Start-up is most of a sandbox's cost, so the runner skips what a one-shot run does not need:
ipykernel's debugger (importing debugpy is a third of a kernel's start), jupyter_client's
0.2 s of IOPub silence at the end of ``wait_for_ready``, and a graceful kernel shutdown (the
kernel is killed with everything else anyway).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import ctypes
import json
import os
import secrets
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
#: Installed in the kernel before any student code runs (see :data:`KERNEL_LAUNCHER`): keeps
#: what the kernel, IPython and the standard library looked like, and puts it back when the
#: runner asks before each test cell. Kept as text: the kernel cannot import this module.
GUARD = r'''
import builtins, gc, os, signal, sys, sysconfig, threading

_MISSING = object()
#: Names IPython's builtin trap adds and removes around every execution.
_TRAPPED = {"exit", "quit", "get_ipython", "display", "__IPYTHON__"}
_SYS_HOOKS = (
    "excepthook", "displayhook", "breakpointhook", "unraisablehook", "stdin", "stdout",
    "stderr", "__excepthook__", "__displayhook__", "__breakpointhook__", "__unraisablehook__",
    "__stdin__", "__stdout__", "__stderr__",
)
#: Attributes of the shell and its parts that hold hooks without being callable.
_HOOK_ATTRS = {
    "custom_exceptions", "display_pub", "display_trap", "builtin_trap", "compile", "events",
    "InteractiveTB", "SyntaxTB", "displayhook", "data_pub", "payload_manager", "session",
    "iopub_socket", "iopub_thread", "pub_socket", "shell_stream", "control_stream",
}
_TRAITS = (
    "ast_transformers", "input_transformers_post", "input_transformer_manager", "autocall",
    "display_formatter", "displayhook_class", "display_pub_class", "shell", "session",
    "iopub_socket", "payload_manager",
)


def _stdlib_dirs():
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib"))


def install(app):
    """Snapshot the pristine kernel; return the function the runner calls."""
    shell, kernel = app.shell, app.kernel

    def block_audit_hooks(event, args):
        # Audit hooks cannot be removed; one could trace and skip a test cell's lines.
        if event == "sys.addaudithook":
            raise RuntimeError("audit hooks are reserved for the grader")

    sys.addaudithook(block_audit_hooks)
    itm = shell.input_transformer_manager
    objects = [
        shell, kernel, itm, shell.displayhook, shell.display_pub, shell.display_trap,
        shell.builtin_trap, shell.compile, shell.events, shell.InteractiveTB, shell.SyntaxTB,
        shell.display_formatter, kernel.session, kernel.iopub_socket,
        getattr(kernel, "iopub_thread", None),
    ]
    objects = [o for o in objects if o is not None and hasattr(o, "__dict__")]
    classes = {}
    for obj in objects:
        for cls in type(obj).__mro__:
            if cls.__module__ != "builtins" and cls not in classes:
                classes[cls] = dict(vars(cls))
    lists = [
        shell.ast_transformers, shell.input_transformers_post, itm.cleanup_transforms,
        itm.line_transforms, itm.token_transformers, sys.meta_path, sys.path_hooks, gc.callbacks,
        *shell.events.callbacks.values(),
    ]
    dicts = [kernel.shell_handlers, kernel.control_handlers, shell.events.callbacks]
    snap = {
        "builtins": {k: v for k, v in vars(builtins).items() if k not in _TRAPPED},
        "sys": {k: getattr(sys, k) for k in _SYS_HOOKS if hasattr(sys, k)},
        "recursion": sys.getrecursionlimit(),
        "objects": [(o, dict(vars(o))) for o in objects],
        "traits": [
            (o, {k: o._trait_values[k] for k in _TRAITS if k in o._trait_values})
            for o in objects if isinstance(getattr(o, "_trait_values", None), dict)
        ],
        "classes": list(classes.items()),
        "lists": [(x, list(x)) for x in lists],
        "dicts": [(x, dict(x)) for x in dicts],
        "signals": {},
        "modules": {},
        "protected": {},
    }
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
        if handler is not None:
            snap["signals"][sig] = handler

    def record_modules():
        """Remember standard-library modules not seen before (imported by trusted cells)."""
        stdlib = _stdlib_dirs()
        for name, module in list(sys.modules.items()):
            if name in snap["modules"] or name in ("__main__", "builtins", "sys"):
                continue
            path = getattr(module, "__file__", None)
            if path is None and name not in sys.builtin_module_names:
                continue
            if path is not None:
                real = os.path.realpath(path)
                if not real.startswith(stdlib) or "site-packages" in real:
                    continue
            snap["modules"][name] = (module, dict(vars(module)))

    def protect(names):
        """After a trusted (locked) cell: keep the values it bound, for the tests."""
        record_modules()
        for name in names:
            value = shell.user_ns.get(name, _MISSING)
            if value is not _MISSING:
                snap["protected"][name] = value
        return "protected"

    def restore(nonce):
        sys.settrace(None)
        sys.setprofile(None)
        threading.settrace(None)
        threading.setprofile(None)
        for name, value in snap["builtins"].items():
            if vars(builtins).get(name, _MISSING) is not value:
                setattr(builtins, name, value)
        for name, value in snap["sys"].items():
            if getattr(sys, name, _MISSING) is not value:
                setattr(sys, name, value)
        sys.setrecursionlimit(snap["recursion"])
        sys.path_importer_cache.clear()
        for name, (module, saved) in snap["modules"].items():
            if sys.modules.get(name) is not module:
                sys.modules[name] = module
            current = vars(module)
            for key, value in saved.items():
                if current.get(key, _MISSING) is not value:
                    current[key] = value
        for cls, saved in snap["classes"]:
            current = vars(cls)
            for key, value in saved.items():
                if current.get(key, _MISSING) is not value:
                    setattr(cls, key, value)
            for key in [k for k in current if k not in saved]:
                if callable(current[key]) or hasattr(current[key], "__get__"):
                    delattr(cls, key)
        for obj, saved in snap["objects"]:
            current = vars(obj)
            for key, value in saved.items():
                if current.get(key, _MISSING) is not value and (
                    key in _HOOK_ATTRS or callable(value)
                ):
                    current[key] = value
            for key in [k for k in current if k not in saved]:
                if callable(getattr(type(obj), key, None)):
                    del current[key]
        for obj, saved in snap["traits"]:
            obj._trait_values.update(saved)
        for container, saved in snap["lists"]:
            container[:] = saved
        for container, saved in snap["dicts"]:
            container.clear()
            container.update(saved)
        if threading.current_thread() is threading.main_thread():
            for which in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF):
                signal.setitimer(which, 0)
            for sig, handler in snap["signals"].items():
                if signal.getsignal(sig) is not handler:
                    signal.signal(sig, handler)
        for name, value in snap["protected"].items():
            if shell.user_ns.get(name, _MISSING) is not value:
                shell.user_ns[name] = value
        return "restored " + nonce

    record_modules()
    builtins.__learnhub_restore__ = restore
    builtins.__learnhub_protect__ = protect
    snap["builtins"]["__learnhub_restore__"] = restore
    snap["builtins"]["__learnhub_protect__"] = protect
'''

#: ``python -m ipykernel_launcher`` (same sys.argv, same sys.path handling), without the
#: debugger: ipykernel enables it whenever debugpy imports, which costs ~0.1 CPU-s per
#: kernel, and no client can attach to it in a sandbox. The :data:`GUARD` is installed right
#: after the kernel ran its start-up code, before the first request from the runner. Its
#: builtins are a private copy: patching the ``builtins`` module does not reach them.
KERNEL_LAUNCHER = (
    "import builtins, runpy, sys\n"
    "sys.modules['debugpy'] = None\n"
    "from ipykernel.kernelapp import IPKernelApp\n"
    "_init_code = IPKernelApp.init_code\n"
    "def _init_code_then_guard(app):\n"
    "    _init_code(app)\n"
    "    IPKernelApp.init_code = _init_code\n"
    "    guard = {'__builtins__': dict(vars(builtins)), '__name__': 'learnhub_guard'}\n"
    f"    exec({GUARD!r}, guard)\n"
    "    guard['install'](app)\n"
    "IPKernelApp.init_code = _init_code_then_guard\n"
    "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)\n"
)
#: Seconds between two looks at the CPU clocks while a notebook runs.
POLL_SECONDS = 0.1
#: CPU seconds a cell may go on after it was interrupted for its limit before the run ends.
INTERRUPT_GRACE_CPU = 2.0
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


def kernel_cpu_seconds() -> float | None:
    """CPU time of everything in the container but the runner: the kernel's process tree.

    None outside a container (no cgroup counter to read).
    """
    container = _cgroup_cpu_seconds()
    if container is None:
        return None
    return max(container - time.process_time(), 0.0)


def _make_non_dumpable() -> None:
    """Make this process's memory, open files and environment unreadable to the kernel.

    Student code runs with our uid; only a non-dumpable process's ``/proc`` entries are out
    of its reach. Raises ``OSError`` when that cannot be arranged: the hidden tests must not
    be read into a process the kernel can read.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(errno)}")


def read_notebook_from_stdin() -> nbformat.NotebookNode:
    """The notebook the grader sent on stdin; stdin is ``/dev/null`` afterwards.

    Read to the end before the kernel starts, so nothing of it is left in the pipe, and the
    pipe itself is closed: no process started later can get at it.
    """
    text = sys.stdin.buffer.read().decode("utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    # Written by the grader from the notebook nbgrader has already read and validated (v4):
    # validating again would compile nbformat's JSON schema in every sandbox.
    nb: nbformat.NotebookNode = nbformat.v4.reads(text)  # type: ignore[no-untyped-call]
    return nb


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
    """Which cell is running, what it has used, and which cells hit their time limit.

    The clock is the kernel's CPU time (:func:`kernel_cpu_seconds`), or wall-clock time
    outside a container.
    """

    def __init__(self, cell_timeout: float) -> None:
        self.cell_timeout = cell_timeout
        self.current = -1
        #: Whether the current cell is executing (between its start and its reply).
        self.running = False
        self.timed_out: list[int] = []
        #: Cells interrupted for their CPU limit, with the clock reading at the interrupt.
        self.interrupted: dict[int, float] = {}
        self.cell_started = self.clock()

    @staticmethod
    def clock() -> float:
        """Seconds on the limits' clock."""
        cpu = kernel_cpu_seconds()
        return time.monotonic() if cpu is None else cpu

    def on_cell_start(self, cell: Any, cell_index: int) -> None:
        self.current = cell_index
        self.running = cell.cell_type == "code"
        self.cell_started = self.clock()

    def cell_seconds(self) -> float:
        """Clock seconds the current cell has used so far."""
        return self.clock() - self.cell_started

    def on_cell_executed(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        self.running = False
        if cell_index in self.interrupted:
            # The runner interrupted it (KeyboardInterrupt, or nothing if caught): say why.
            cell.outputs = [
                o
                for o in cell.outputs
                if not (o.get("output_type") == "error" and o.get("ename") == "KeyboardInterrupt")
            ]
            evalue = f"cell exceeded {self.cell_timeout:g} s of CPU time"
            cell.outputs.append(_error_output("Timeout", evalue))
            self.timed_out.append(cell_index)
            return
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


def is_test_cell(cell: Any) -> bool:
    """An autograder test cell: graded, and not the learner's answer."""
    meta = cell.metadata.get("nbgrader", {}) if cell.cell_type == "code" else {}
    return bool(meta.get("grade")) and not meta.get("solution")


def is_instructor_cell(cell: Any) -> bool:
    """A locked code cell that is neither a test nor an answer (imports, helpers)."""
    meta = cell.metadata.get("nbgrader", {}) if cell.cell_type == "code" else {}
    return bool(meta.get("locked")) and not meta.get("grade") and not meta.get("solution")


def bound_names(source: str) -> list[str]:
    """Names a cell binds at its top level (imports, definitions, assignments)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names += [(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return names


class SandboxClient(NotebookClient):  # type: ignore[misc]
    """nbclient's client with :func:`wait_for_kernel` as the readiness check, which puts the
    kernel back in order before every test cell (see the module docstring)."""

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

    async def async_execute_cell(
        self,
        cell: Any,
        cell_index: int,
        execution_count: int | None = None,
        store_history: bool = True,
    ) -> Any:
        """Restore the kernel before a test cell; protect what an instructor cell bound."""
        self._running_cell = cell_index
        if is_test_cell(cell) and cell.source.strip() and not await self._guard_restore():
            cell.outputs = [
                _error_output(
                    "TestsNotRun",
                    "the sandbox could not restore the kernel before this test cell",
                )
            ]
            _log(f"cell {cell_index}: kernel not restored, test cell not run")
            return cell
        cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        if is_instructor_cell(cell):
            names = bound_names(cell.source)
            if names:
                await self._guard_call(f"__learnhub_protect__({names!r})")
        return cell

    _running_cell = -1

    def _update_display_id(self, display_id: str, msg: dict[str, Any]) -> None:
        """Let a display update change outputs of the running cell only.

        nbclient updates every output with that display id, in any cell: code a test cell
        calls could rewrite an output of a cell that ran before the hidden tests (whose
        outputs the feedback keeps) with the test's source.
        """
        shown = self._display_id_map.get(display_id)
        if not shown:
            return
        own = {i: outputs for i, outputs in shown.items() if i == self._running_cell}
        self._display_id_map[display_id] = own
        try:
            super()._update_display_id(display_id, msg)
        finally:
            self._display_id_map[display_id] = shown

    async def _guard_restore(self) -> bool:
        nonce = secrets.token_hex(16)
        value = await self._guard_call(f"__learnhub_restore__({nonce!r})")
        return value == repr(f"restored {nonce}")

    async def _guard_call(self, expression: str) -> str | None:
        """Evaluate ``expression`` in the kernel as a user expression; its text, or None.

        User expressions skip IPython's input and AST transformers (student code may have
        installed some), and ``silent`` keeps the request out of the history and counts.
        """
        assert self.kc is not None
        msg_id = self.kc.execute(
            "",
            silent=True,
            store_history=False,
            user_expressions={"guard": expression},
            allow_stdin=False,
        )
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    reply = await self.kc.shell_channel.get_msg()
                    if reply.get("parent_header", {}).get("msg_id") == msg_id:
                        break
        except TimeoutError:
            return None
        content = reply.get("content", {})
        result = content.get("user_expressions", {}).get("guard", {})
        if content.get("status") != "ok" or result.get("status") != "ok":
            return None
        text = result.get("data", {}).get("text/plain")
        return text if isinstance(text, str) else None


async def _execute(
    client: SandboxClient,
    km: AsyncKernelManager,
    progress: _Progress,
    notebook_timeout: float,
    wall_clock_factor: float,
) -> str | None:
    """Run the notebook; return an abort kind ("timeout", "kernel-died") or None.

    Every :data:`POLL_SECONDS` the CPU clocks are read: a cell over its budget is
    interrupted; a cell that keeps running :data:`INTERRUPT_GRACE_CPU` seconds after that,
    a notebook over its budget, or one over its wall-clock backstop ends the run.
    """
    started, wall_started = progress.clock(), time.monotonic()
    task = asyncio.ensure_future(
        client.async_execute(
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_prefer_kernel_for_oom_kill,
        )
    )
    while True:
        # Not asyncio.wait_for: nbclient turns the cancellation into DeadKernelError, which
        # would hide that the deadline was the cause.
        done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
        if done:
            break
        over_budget = progress.clock() - started > notebook_timeout
        over_wall = time.monotonic() - wall_started > notebook_timeout * wall_clock_factor
        cell, interrupted_at = progress.current, progress.interrupted.get(progress.current)
        if not progress.running:
            pass  # between cells: only the notebook's budget applies
        elif interrupted_at is None and progress.cell_seconds() > progress.cell_timeout:
            progress.interrupted[cell] = progress.clock()
            _log(f"cell {cell}: over its CPU limit, interrupting")
            await km.interrupt_kernel()
        elif interrupted_at is not None and (
            progress.clock() - interrupted_at > INTERRUPT_GRACE_CPU
        ):
            over_budget = True  # it ignores interrupts: nothing else can run
        if over_budget or over_wall:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception) as exc:
                # Aborting anyway (every process is killed before we report); cleanup
                # errors of a kernel stuck in student code are expected and irrelevant.
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
    nb: nbformat.NotebookNode,
    input_dir: Path,
    work: Path,
    cell_timeout: float,
    notebook_timeout: float,
    wall_clock_factor: float = 4.0,
) -> dict[str, Any]:
    """Execute ``nb`` and return the result document printed for the grader.

    ``input_dir/files`` holds the assignment's other files. ``cell_timeout`` and
    ``notebook_timeout`` are CPU seconds of the kernel's process tree; ``wall_clock_factor``
    times them bounds waiting that uses no CPU.
    """
    started = time.monotonic()
    _copy_inputs(input_dir / "files", work)
    progress = _Progress(cell_timeout)
    km = kernel_manager()
    cell_wall = cell_timeout * wall_clock_factor
    client = SandboxClient(
        nb,
        km=km,
        timeout=max(int(cell_wall), 1),
        startup_timeout=max(int(notebook_timeout * wall_clock_factor), 1),
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": "Timeout",
            "evalue": f"cell exceeded {cell_wall:g} s of wall-clock time",
            "traceback": [
                f"\x1b[0;31mTimeout\x1b[0m: cell exceeded {cell_wall:g} s of wall-clock time"
            ],
        },
        record_timing=False,
        on_cell_start=progress.on_cell_start,
        on_cell_executed=progress.on_cell_executed,
        resources={"metadata": {"path": str(work)}},
    )
    abort = asyncio.run(_execute(client, km, progress, notebook_timeout, wall_clock_factor))
    # At once: whatever student code left running (a fork bomb's 127 processes) would
    # otherwise share the CPU limit with the rest of this run.
    if not _kill_everything_else() and km.has_kernel:
        asyncio.run(_shutdown(km))  # outside a sandbox: stop our own kernel only

    oom_kills = _cgroup_counter(_OOM_FILES, "oom_kill")
    pids_hits = _cgroup_counter(_PIDS_FILES, "max")
    reason, detail, cell_index = "", "", None
    if abort == "timeout":
        reason, detail = "timeout", f"notebook exceeded {notebook_timeout:g} s of CPU time"
        if progress.current in progress.interrupted:
            detail = f"cell {progress.current} exceeded {cell_timeout:g} s and ignored interrupts"
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
        reason, detail = "timeout", f"cell {cell_index} exceeded {cell_timeout:g} s"
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
    parser.add_argument("--cell-timeout", type=float, required=True, help="CPU seconds")
    parser.add_argument("--notebook-timeout", type=float, required=True, help="CPU seconds")
    parser.add_argument("--wall-clock-factor", type=float, default=4.0)
    parser.add_argument(
        "--linger",
        action="store_true",
        help="after the result, wait to be killed instead of exiting (Swarm jobs: a node "
        "removes a task's container only if it still runs when its service is removed)",
    )
    args = parser.parse_args(argv)

    # First: the notebook must only ever be in a process the kernel cannot read.
    _make_non_dumpable()
    nb = read_notebook_from_stdin()
    result = run(
        nb,
        args.input,
        args.work,
        args.cell_timeout,
        args.notebook_timeout,
        args.wall_clock_factor,
    )
    sys.stdout.write("\n" + RESULT_MARKER + "\n")
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    while args.linger:
        # Every other process is gone; as PID 1 only SIGKILL from outside ends this.
        signal.pause()
    return 0


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    # Everything else is dead and the container goes away: skip the interpreter's teardown
    # (closing the unused kernel client's ZeroMQ sockets, nbclient's atexit cleanup).
    os._exit(status)
