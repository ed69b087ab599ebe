"""nbgrader preprocessors that LearnHub plugs into nbgrader's autograde pipeline.

:class:`SandboxedExecute` takes the place of nbgrader's ``Execute`` in
``Autograde.autograde_preprocessors``. Everything else stays nbgrader's own: sanitising
(``ClearOutput``, ``OverwriteCells`` restoring locked and test cells from the gradebook,
``CheckCellMetadata``) runs before it, and ``SaveAutoGrades`` scores the outputs it returns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from nbconvert.exporters.exporter import ResourcesDict
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Instance, Unicode

from grader.sandbox import SandboxError, SandboxPolicy, SandboxResult, run_notebook_in_sandbox


class ExecutionGate:
    """A lock held while nbgrader works in this process, released while a sandbox runs.

    nbgrader's gradebook (SQLite), its process-wide ``os.environ`` tweaks and its file
    writes are not meant for concurrent converters; sandbox runs are where the time goes.
    Worker threads hold the gate for everything except the sandbox run, so sandboxes run in
    parallel while gradebook access stays serial.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> ExecutionGate:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let other workers use nbgrader while this thread waits for its sandbox."""
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()


class SandboxedExecute(NbGraderPreprocessor):  # type: ignore[misc]
    """Execute the notebook in a throwaway sandbox container instead of in-process.

    The limits come from ``policy``, which the grading flow builds from the settings and the
    course (:func:`grader.policy.sandbox_policy`); without one, the settings' defaults apply.
    The sandbox outcome is stored in ``metadata.learnhub.sandbox`` of the graded notebook.
    """

    name_prefix = Unicode(SandboxPolicy.name_prefix, help="Prefix of sandbox container names.").tag(
        config=True
    )
    course_id = Unicode("", help="Course id, for container labels and logs.").tag(config=True)

    policy = Instance(SandboxPolicy, allow_none=True, help="Limits and image of the sandbox.")
    gate = Instance(ExecutionGate, allow_none=True, help="Released while the sandbox runs.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: (notebook id, result) of every run of this instance, for the caller to report.
        self.results: list[tuple[str, SandboxResult]] = []
        #: Sandbox failures (not student limits) of this instance, for the caller to report.
        self.failures: list[str] = []

    def sandbox_policy(self) -> SandboxPolicy:
        """The policy in force: ``policy`` if given, else the defaults (with ``name_prefix``)."""
        if self.policy is not None:
            return self.policy
        return SandboxPolicy(name_prefix=self.name_prefix)

    def preprocess(
        self, nb: NotebookNode, resources: ResourcesDict
    ) -> tuple[NotebookNode, ResourcesDict]:
        """Run ``nb`` in the sandbox and copy the outputs back into ``nb``."""
        info = resources.get("nbgrader", {})
        notebook_id = str(info.get("notebook", "submission"))
        labels = {
            "learnhub.course": self.course_id,
            "learnhub.assignment": str(info.get("assignment", "")),
            "learnhub.student": str(info.get("student", "")),
            "learnhub.notebook": notebook_id,
        }
        path = resources.get("metadata", {}).get("path")
        gate = self.gate.released() if self.gate is not None else nullcontext()
        try:
            with gate:
                result = run_notebook_in_sandbox(
                    nb,
                    self.sandbox_policy(),
                    resources_dir=Path(path) if path else None,
                    labels=labels,
                )
            _merge_outputs(nb, result.notebook)
        except SandboxError as exc:
            # nbgrader turns this into a generic "error processing assignment"; keep the cause.
            self.failures.append(f"{notebook_id}: {exc}")
            raise
        nb.metadata.setdefault("learnhub", {})["sandbox"] = result.as_metadata()
        self.results.append((notebook_id, result))
        return nb, resources


def _merge_outputs(target: NotebookNode, executed: NotebookNode) -> None:
    """Take only outputs and execution counts from the sandbox's copy.

    Sources and nbgrader metadata stay those nbgrader restored before execution, so nothing
    coming back out of the sandbox can change what is graded or how many points it is worth.
    """
    if len(target.cells) != len(executed.cells):
        raise SandboxError(
            f"sandbox returned {len(executed.cells)} cells, expected {len(target.cells)}"
        )
    for mine, theirs in zip(target.cells, executed.cells, strict=True):
        if mine.cell_type != theirs.cell_type or mine.source != theirs.source:
            raise SandboxError("sandbox returned a notebook whose cells differ from the input")
        if mine.cell_type == "code":
            mine.outputs = theirs.get("outputs", [])
            mine.execution_count = theirs.get("execution_count")
    if "language_info" in executed.metadata:
        target.metadata["language_info"] = executed.metadata["language_info"]
