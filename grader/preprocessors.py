"""nbgrader preprocessors that LearnHub plugs into nbgrader's autograde pipeline.

:class:`SandboxedExecute` takes the place of nbgrader's ``Execute`` in
``Autograde.autograde_preprocessors``. Everything else stays nbgrader's own: sanitising
(``ClearOutput``, ``OverwriteCells`` restoring locked and test cells from the gradebook,
``CheckCellMetadata``) runs before it, and ``SaveAutoGrades`` scores the outputs it returns.
:class:`RestoreLockedCells` is nbgrader's ``OverwriteCells`` minus one warning: the one it logs
for every test cell with hidden tests of every learner, which is how hidden tests come back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from nbconvert.exporters.exporter import ResourcesDict
from nbformat import NotebookNode
from nbgrader import utils as nbgrader_utils
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells
from traitlets import Instance, Unicode

from grader.kube_sandbox import run_notebook_in_kube_job
from grader.sandbox import SandboxError, SandboxPolicy, SandboxResult, run_notebook_in_sandbox
from grader.swarm_sandbox import run_notebook_in_swarm


def run_sandboxed(
    nb: NotebookNode,
    policy: SandboxPolicy,
    *,
    resources_dir: Path | None,
    labels: Mapping[str, str] | None = None,
) -> SandboxResult:
    """Run ``nb`` in the sandbox backend ``policy`` names: a Docker container on this host, a
    one-shot Swarm service on the cluster (``spawner.backend: swarm``), or a Kubernetes Job
    (``spawner.backend: kubernetes``; untested against a live cluster, docs/how-to/kubernetes.md).
    """
    if policy.backend == "swarm":
        return run_notebook_in_swarm(nb, policy, resources_dir=resources_dir, labels=labels)
    if policy.backend == "kubernetes":
        # Called on nbgrader's worker threads, which run no event loop of their own.
        return asyncio.run(
            run_notebook_in_kube_job(
                nb,
                policy,
                namespace=policy.kubernetes_namespace,
                resources_dir=resources_dir,
                labels=labels,
            )
        )
    return run_notebook_in_sandbox(nb, policy, resources_dir=resources_dir, labels=labels)


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
                result = run_sandboxed(
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


class RestoreLockedCells(OverwriteCells):  # type: ignore[misc]
    """nbgrader's ``OverwriteCells``, without a warning where nothing unexpected happened.

    The student version of a test cell has its hidden tests removed, so its checksum never
    matches the gradebook's: ``OverwriteCells`` puts the source back (that is how hidden tests
    are run) and logs "Attribute 'checksum' for cell ... has changed!" at WARNING, for every
    such cell of every learner, untouched notebooks included (about five lines per learner,
    200 for 40 learners). Here that case is logged at DEBUG; a locked cell the learner did edit
    still gets nbgrader's warning.
    """

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        """``OverwriteCells.preprocess_cell``, remembering whether ``cell`` is the release's."""
        self._as_released = self._is_student_version(cell)
        try:
            return super().preprocess_cell(cell, resources, cell_index)  # type: ignore[no-any-return]
        finally:
            self._as_released = False

    def _is_student_version(self, cell: NotebookNode) -> bool:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is None or not nbgrader_utils.is_locked(cell):
            return False
        try:
            source = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
        except MissingEntry:
            return False
        released = NotebookNode(cell_type=source.cell_type, source=source.source)  # type: ignore[no-untyped-call]
        try:
            ClearHiddenTests(enforce_metadata=False)._remove_hidden_test_region(released)
        except RuntimeError:  # unbalanced delimiters: let nbgrader report whatever differs
            return False
        return bool(cell.source == released.source)

    def report_change(self, name: str, attr: str, old: Any, new: Any) -> None:
        """nbgrader's warning, except for the checksum of a test cell as it was released."""
        if attr == "checksum" and getattr(self, "_as_released", False):
            self.log.debug("restored the hidden tests of cell %s", name)
            return
        super().report_change(name, attr, old, new)


class RefuseAutotests(NbGraderPreprocessor):  # type: ignore[misc]
    """Takes the place of nbgrader's ``InstantiateTests`` when the host generates a release.

    ``InstantiateTests`` expands ``### AUTOTEST`` lines by starting a kernel *on the host* and
    running the source notebook's code in it. Sources are edited in the formgrader, inside an
    instructor's course container, and come back to the host (grader/ownership.py): running
    them there would hand the host to whatever code ran in that container. A notebook with an
    autotest line is refused with what to do instead.
    """

    autotest_delimiter = Unicode("AUTOTEST", help="nbgrader's autotest marker.").tag(config=True)

    def preprocess(
        self, nb: NotebookNode, resources: ResourcesDict
    ) -> tuple[NotebookNode, ResourcesDict]:
        """Fail on the first code cell with an autotest line; else change nothing."""
        for cell in nb.cells:
            if cell.cell_type == "code" and self.autotest_delimiter in cell.source:
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "?")
                raise ValueError(
                    f"cell {grade_id} has an {self.autotest_delimiter} line: LearnHub does not "
                    "run notebooks on its host to generate tests; write the assert statements "
                    "out in the cell"
                )
        return nb, resources
