"""`learnhub grader worker`: run the grading jobs instructors queue from their dashboard.

The worker runs as root beside the Hub (a managed service without URL), because grading needs
the Docker engine (sandboxes) and the root-only grading folders, exactly as `learnhub grader`
does. It takes no network input: its only input is rows of `grading_jobs`, which the LearnHub
service (the most exposed process) writes. So each claimed row is checked again
(:func:`hub.grading_jobs.request_from_row`) against the catalog loaded from `course.yaml` for
that job and the kind's allow-list before anything runs; a refused row is marked failed with its
reason and nothing else happens. The work itself is :class:`grader.course.GradingCourse`, the
code the CLI runs.

LearnHub's database belongs to the service's user: root opens none of its files. The worker
forks a child that drops to that user and does every database call for it
(:class:`ServiceUserJobStore`), over a socket pair, one JSON line per call.

A job left ``running`` by a worker that died (its ``host:pid`` no longer runs here, or runs a
process that started after the claim: the pid was given again) is queued again and resumed:
autograde grades only what its recorded digests say is new or changed (`grader/records.py`), so
a resumed run continues where the dead one stopped. The sandbox
containers the dead worker left (killed, it removed none) go first: they carry its
``host:pid`` and the platform's ``spawner.name_prefix`` as labels
(:func:`grader.sandbox.remove_abandoned_sandboxes`), so another platform's sandboxes, and a
live process's, are never touched.

A worker told to stop (SIGINT or SIGTERM: the Hub stopping its services, Ctrl-C on `learnhub
demo`) never dies half-way through a database call. Between jobs it ends at once. A job in
hand that is quick (release, collect, feedback, export, extend, publish: seconds) is finished;
an autograde stops at its next submission boundary (the sandboxes already started finish, no
new one starts) and its row is released, queued again with its progress
(:meth:`hub.grading_jobs.JobStore.release`), for the next worker to resume. Then it logs
"grading worker stopped" and exits 0. Its entry point is :mod:`hub.grading_worker`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.exc import OperationalError

from grader.owner import owner_alive, process_owner
from hub.courses import Catalog
from hub.errors import LearnHubError
from hub.grading_jobs import JobRefused, JobStore, request_from_row
from hub.privilege import ServiceAccount, drop_privileges, prepare_data_dir
from hub.settings import Settings
from hub.stop_signals import stop_on_signals
from hub.store import Database

log = logging.getLogger("learnhub.grader.worker")

#: A running job whose worker runs on another host and has not reported for this long is
#: taken to be dead (workers on this host are checked by their process id instead).
STALE_SECONDS = 15 * 60


class JobRows(Protocol):
    """The database calls the worker makes (:class:`hub.grading_jobs.JobStore`)."""

    def claim(self, worker: str) -> dict[str, Any] | None:
        """Take the oldest queued job."""
        ...

    def running(self) -> list[dict[str, Any]]:
        """Every running job."""
        ...

    def progress(self, job_id: int, progress: dict[str, Any]) -> None:
        """Record progress."""
        ...

    def finish(
        self, job_id: int, state: str, error: str | None = None, result: str | None = None
    ) -> None:
        """Record the outcome."""
        ...

    def requeue(self, job_id: int, reason: str) -> str:
        """Queue a dead worker's job again."""
        ...

    def release(self, job_id: int, reason: str) -> str:
        """Queue again a job this worker stopped."""
        ...


_CALLS = frozenset({"claim", "running", "progress", "finish", "requeue", "release"})


class WorkerStopped(BaseException):
    """Raised at a safe point of a job (between two submissions) once the worker was told to
    stop. A BaseException, like KeyboardInterrupt: no ``except Exception`` on the way records
    it as the job's failure."""


class ServiceUserJobStore:
    """:class:`JobRows` served by a forked child running as the service's user.

    Calls are serialised (autograde reports progress from its grading threads).
    """

    def __init__(self, account: ServiceAccount, db_url: str) -> None:
        parent, child = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            parent.close()
            # Ctrl-C in a terminal signals the whole process group. The child ends when the
            # parent closes its end (also when the parent is killed), so it ignores the stop
            # signals: the parent's last call (releasing its job) must still be answered.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            code = 1
            try:
                drop_privileges(account)
                _serve(child, JobStore(Database(db_url)))
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        child.close()
        self.pid = pid
        self._sock = parent
        self._file = parent.makefile("rwb")
        self._lock = threading.Lock()

    def _call(self, op: str, *args: Any) -> Any:
        with self._lock:
            self._file.write(json.dumps({"op": op, "args": list(args)}).encode() + b"\n")
            self._file.flush()
            line = self._file.readline()
        if not line:
            raise RuntimeError(
                "the worker's database process (as the service's user) ended; see its error above"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"database call {op} failed: {answer['error']}")
        return answer["value"]

    def claim(self, worker: str) -> dict[str, Any] | None:
        """See :meth:`hub.grading_jobs.JobStore.claim`."""
        value: dict[str, Any] | None = self._call("claim", worker)
        return value

    def running(self) -> list[dict[str, Any]]:
        """See :meth:`hub.grading_jobs.JobStore.running`."""
        value: list[dict[str, Any]] = self._call("running")
        return value

    def progress(self, job_id: int, progress: dict[str, Any]) -> None:
        """See :meth:`hub.grading_jobs.JobStore.progress`."""
        self._call("progress", job_id, progress)

    def finish(
        self, job_id: int, state: str, error: str | None = None, result: str | None = None
    ) -> None:
        """See :meth:`hub.grading_jobs.JobStore.finish`."""
        self._call("finish", job_id, state, error, result)

    def requeue(self, job_id: int, reason: str) -> str:
        """See :meth:`hub.grading_jobs.JobStore.requeue`."""
        value: str = self._call("requeue", job_id, reason)
        return value

    def release(self, job_id: int, reason: str) -> str:
        """See :meth:`hub.grading_jobs.JobStore.release`."""
        value: str = self._call("release", job_id, reason)
        return value

    def close(self) -> None:
        """End the child and wait for it."""
        self._file.close()
        self._sock.close()
        os.waitpid(self.pid, 0)


def _serve(sock: socket.socket, store: JobStore) -> None:
    """The child's loop: one call per line until the parent closes its end."""
    stream = sock.makefile("rwb")
    for line in stream:
        request = json.loads(line)
        op = request.get("op")
        try:
            if op not in _CALLS:
                raise ValueError(f"unknown call {op!r}")
            answer: dict[str, Any] = {"value": getattr(store, op)(*request.get("args", []))}
        except Exception as exc:  # the parent decides; the child keeps serving
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        stream.write(json.dumps(answer).encode() + b"\n")
        stream.flush()


def worker_id() -> str:
    """``host:pid`` of this worker, recorded on the jobs it claims and on the sandboxes it
    starts (:func:`grader.owner.process_owner`)."""
    return process_owner()


def worker_alive(
    worker: str, updated_at: str, claimed_at: str = "", *, now: float | None = None
) -> bool:
    """Whether the worker that claimed a job (at ``claimed_at``, ISO) still runs.

    On this host: its pid runs a process that started before the claim
    (:func:`grader.owner.owner_alive`; any later process only got the pid again). Elsewhere:
    it reported (``updated_at``) within :data:`STALE_SECONDS`.
    """
    local = owner_alive(worker, _epoch(claimed_at))
    if local is not None:
        return local
    last = _epoch(updated_at)
    if last is None:
        return False
    return (now if now is not None else time.time()) - last < STALE_SECONDS


def _epoch(moment: str) -> float | None:
    """An ISO time as seconds since the epoch; None when it is none."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(moment).timestamp()
    except ValueError:
        return None


def recover(
    rows: JobRows, me: str, remove_sandboxes: Callable[[str], None] | None = None
) -> list[int]:
    """Queue again the running jobs of dead workers; return their ids.

    ``remove_sandboxes(worker)`` first removes the sandboxes a dead worker left running (or
    exited): the process that would have removed them is gone.
    """
    recovered = []
    for job in rows.running():
        if job["worker"] == me or worker_alive(
            job["worker"], job["updated_at"], job.get("started_at", "")
        ):
            continue
        if remove_sandboxes is not None and job["worker"]:
            remove_sandboxes(str(job["worker"]))
        state = rows.requeue(int(job["id"]), f"worker {job['worker'] or '?'} died")
        log.warning(
            "job of a dead worker recovered",
            extra={"job": job["id"], "worker": job["worker"], "outcome": state},
        )
        recovered.append(int(job["id"]))
    return recovered


#: Where sandboxes are cluster objects, not containers on this host's engine.
CLUSTER_BACKENDS = ("swarm", "kubernetes")


def _without_failing(remove: Callable[[], object], message: str, **extra: str) -> None:
    """``remove()`` of left-behind sandboxes; a Docker failure is one warning (``message``),
    never the worker's end: grading the next job says what is wrong with Docker. Docker's
    client is imported only here: an idle worker needs none."""
    from docker.errors import DockerException

    try:
        remove()
    except (LearnHubError, DockerException) as exc:
        log.warning(message, extra={**extra, "error": str(exc), "outcome": "error"})


def sandbox_remover(settings: Settings) -> Callable[[str], None] | None:
    """What :func:`recover` calls with a dead worker's id: remove the sandbox containers it
    left on this host's engine, of this platform only (their labels say both). None where the
    sandboxes are cluster objects (``spawner.backend`` swarm or kubernetes), not containers
    here."""
    if settings.spawner.backend in CLUSTER_BACKENDS:
        return None
    platform = settings.spawner.name_prefix

    def remove(worker: str) -> None:
        from grader.sandbox import remove_abandoned_sandboxes

        # The job is queued again all the same.
        _without_failing(
            lambda: remove_abandoned_sandboxes(platform, worker),
            "sandboxes of a dead worker not removed",
            worker=worker,
        )

    return remove


def remove_orphaned_sandboxes(settings: Settings) -> None:
    """Before a worker's first job: remove this platform's sandboxes on this host's engine whose
    owner, a process of this host, is gone (:func:`grader.sandbox.remove_orphaned_sandboxes`, which
    logs each). A killed `learnhub grader autograde` leaves no job row that :func:`recover`
    would find them by. Nothing where sandboxes are cluster objects (swarm, kubernetes)."""
    if settings.spawner.backend in CLUSTER_BACKENDS:
        return
    from grader import sandbox

    _without_failing(
        lambda: sandbox.remove_orphaned_sandboxes(settings.spawner.name_prefix),
        "orphaned sandboxes not removed",
    )


class Progress:
    """A job's progress document, written to the database as it changes."""

    def __init__(self, rows: JobRows, job_id: int, previous: str) -> None:
        self.rows = rows
        self.job_id = job_id
        try:
            loaded = json.loads(previous or "{}")
        except ValueError:
            loaded = {}
        self.doc: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        self.doc.setdefault("submissions", {})
        self._lock = threading.Lock()

    def set(self, **values: Any) -> None:
        """Set top-level fields and save."""
        with self._lock:
            self.doc.update(values)
            self.rows.progress(self.job_id, self.doc)

    def submission(self, student: str, **values: Any) -> None:
        """Set one learner's entry and save."""
        with self._lock:
            self.doc["submissions"][student] = values
            self.rows.progress(self.job_id, self.doc)


def run_job(
    settings: Settings,
    rows: JobRows,
    job: dict[str, Any],
    *,
    token: str,
    course_factory: Callable[..., Any] | None = None,
    stopping: threading.Event | None = None,
) -> str:
    """Check and run one claimed job; record its outcome. Returns ``done``, ``failed``, or
    ``released`` when ``stopping`` was set during an autograde (the row is queued again)."""
    job_id = int(job["id"])
    fields = {"job": job_id, "course": job.get("course"), "kind": job.get("kind")}
    try:
        # The catalog as course.yaml says now: a course or assignment removed since the request
        # is refused like any unknown one.
        catalog = Catalog.load(settings.courses_dir)
        request = request_from_row(catalog, job)
    except JobRefused as exc:
        log.warning("job refused", extra={**fields, "reason": exc.key, "outcome": "failed"})
        rows.finish(job_id, "failed", error=f"refused by the worker: {exc}")
        return "failed"

    def stop_here() -> None:
        # Called only where nothing is half-written: before the first sandbox, and after a
        # submission's grade and progress were recorded.
        if stopping is not None and stopping.is_set():
            raise WorkerStopped

    def grading_course() -> Any:
        # nbgrader is imported only for a job that passed the check and needs it.
        from grader.course import GradingCourse

        factory = course_factory or GradingCourse.for_operator
        return factory(settings, request.course_id, token=token)

    progress = Progress(rows, job_id, str(job.get("progress") or ""))
    log.info("job started", extra={**fields, "assignment": request.assignment})
    done_fields: dict[str, Any] = {}
    try:
        # Publishing is root copying files (hub/publishing.py): no nbgrader course for it.
        course: Any = None if request.kind == "publish" else grading_course()
        result_text: str | None = None
        args, assignment = request.args, request.assignment
        if request.kind == "publish":
            # A dashboard's "Publish materials": a new version for the learners' next start,
            # made as root from the instructors' copy.
            from hub.publishing import materials_root, publish_materials

            entry = catalog.get(request.course_id)
            if entry is None:  # request_from_row checked it against this catalog
                raise LearnHubError(f"no such course {request.course_id!r}")
            made = publish_materials(
                entry,
                root=materials_root(settings),
                instructor_copy=settings.formgrader_dir / request.course_id,
                by=str(job.get("requested_by") or "instructor"),
                from_course=bool(args.get("from_course")),
            )
            progress.set(
                summary={
                    "key": "job_published" if made.made else "job_published_nothing",
                    "version": made.version,
                    "added": len(made.added),
                    "changed": len(made.changed),
                    "removed": len(made.removed),
                }
            )
            done_fields["version"] = made.version
        elif request.kind == "release":
            course.release(assignment, force=bool(args.get("force")))
            progress.set(summary={"key": "job_released"})
        elif request.kind == "collect":
            students = course.collect(assignment)
            progress.set(summary={"key": "job_collected", "count": len(students)})
        elif request.kind in ("autograde", "regrade-one"):
            student = args.get("student") if request.kind == "regrade-one" else None
            plan = course.plan_autograde(
                assignment, student=student, regrade_all=bool(args.get("all"))
            )
            entries = progress.doc["submissions"]
            for name in plan.skipped:
                # Graded by this job before its worker died: that entry stays as it was.
                if entries.get(name, {}).get("state") not in ("graded", "limit"):
                    entries[name] = {"state": "skipped"}
            for name in plan.to_grade:
                entries[name] = {"state": "queued"}
            progress.set(total=len(plan.to_grade), skipped=len(plan.skipped))
            stop_here()

            def report(result: Any) -> None:
                # In the worker's main thread, as each submission ends (grader/autograde.py).
                progress.submission(
                    result.student,
                    state="graded" if result.outcome == "ok" else result.outcome,
                    score=result.score,
                    max_score=result.max_score,
                    reason=result.reason or "",
                    detail=(result.detail or "")[:500],
                )
                stop_here()

            results = course.autograde(assignment, plan, progress=report)
            errors = [r for r in results if r.outcome == "error"]
            progress.set(summary={"key": "job_graded", "count": len(results)})
            if errors:
                names = ", ".join(r.student for r in errors)
                raise LearnHubError(f"grading failed for {names}: {errors[0].reason}")
        elif request.kind == "feedback":
            # Named after the job: run again after a crash, it mails nobody a second time.
            students = course.feedback(assignment, release=f"job-{job_id}")
            # The count is what the dashboard says; the names are nbgrader's feedback folders.
            progress.set(summary={"key": "job_feedback", "count": len(students)})
        elif request.kind == "export":
            from grader.export import DEFAULT_EXPORTER

            result_text = course.export_text(
                assignment, exporter=str(args.get("exporter") or DEFAULT_EXPORTER)
            )
            progress.set(summary={"key": "job_exported"})
        elif request.kind == "extend":
            course.grant_extension(assignment, args["student"], hours=float(args["hours"]))
            progress.set(
                summary={
                    "key": "job_extended",
                    "student": args["student"],
                    "hours": f"{float(args['hours']):g}",
                }
            )
    except WorkerStopped:
        state = rows.release(job_id, "the grading worker was stopped")
        log.info("job released", extra={**fields, "outcome": state})
        return "released"
    except LearnHubError as exc:
        log.warning("job failed", extra={**fields, "error": str(exc), "outcome": "failed"})
        rows.finish(job_id, "failed", error=str(exc))
        return "failed"
    except Exception as exc:
        log.exception("job crashed", extra={**fields, "outcome": "failed"})
        if request.kind == "publish" and isinstance(exc, OSError):
            # A full disk or an unreadable file in the instructors' copy: say what failed.
            error = f"could not publish: {exc}"
        else:
            error = f"internal error: {type(exc).__name__}: {exc}"
        rows.finish(job_id, "failed", error=error)
        return "failed"
    rows.finish(job_id, "done", result=result_text)
    log.info("job done", extra={**fields, **done_fields, "outcome": "done"})
    return "done"


def serve(
    settings: Settings,
    *,
    token: str,
    poll_seconds: float = 1.0,
    once: bool = False,
    rows: JobRows | None = None,
    stopping: threading.Event | None = None,
) -> int:
    """Recover dead workers' jobs, then claim and run jobs until ``stopping`` is set (or, with
    ``once``, until none is queued). Returns the number of jobs run (released ones included).

    Without ``stopping``, SIGINT and SIGTERM set one for the time of the call
    (:func:`hub.stop_signals.stop_on_signals`).
    """
    restore: Callable[[], None] | None = None
    if stopping is None:
        stopping, restore = stop_on_signals()
    account = prepare_data_dir(settings)
    own_rows = rows is None
    if rows is None:
        if account is None:
            rows = JobStore(Database(settings.learnhub_db_url))
        else:
            rows = ServiceUserJobStore(account, settings.learnhub_db_url)
    me = worker_id()
    remove_sandboxes = sandbox_remover(settings)
    swept = False
    count = 0
    released: list[int] = []
    try:
        log.info("grading worker ready", extra={"worker": me, "poll_seconds": poll_seconds})
        while not stopping.is_set():
            try:
                recover(rows, me, remove_sandboxes)
                job = rows.claim(me)
            except (RuntimeError, OperationalError) as exc:
                # At the Hub's start the service may not have migrated the database yet.
                log.debug("job table not ready", extra={"error": str(exc)})
                job = None
            if job is None:
                if once:
                    break
                stopping.wait(poll_seconds)
                continue
            if not swept:
                # Before the first job, not at the start: an idle worker loads no Docker client
                # (hub/grading_worker.py), and orphans matter once sandboxes are to run again.
                remove_orphaned_sandboxes(settings)
                swept = True
            if run_job(settings, rows, job, token=token, stopping=stopping) == "released":
                released.append(int(job["id"]))
            count += 1
    finally:
        if own_rows and isinstance(rows, ServiceUserJobStore):
            rows.close()
        if restore is not None:
            restore()
    log.info(
        "grading worker stopped",
        extra={
            "worker": me,
            "jobs": count,
            "released": ",".join(map(str, released)) or "none",
            "outcome": "stopped" if stopping.is_set() else "done",
        },
    )
    return count
