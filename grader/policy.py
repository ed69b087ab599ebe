"""The grading policy in force for a course: sandbox limits and parallelism, from settings.

One owner for "how is this course's work graded": the settings' `grading.sandbox` section gives
the defaults, the course's `grading.sandbox` in `course.yaml` overrides them, and the course
server's memory limit fills in when neither sets one. Nothing else decides sandbox limits.
"""

from __future__ import annotations

from grader.autograde import default_parallel
from grader.sandbox import SandboxPolicy
from hub.courses import Course
from hub.settings import Settings
from hub.swarm import course_image_name


def sandbox_policy(settings: Settings, course: Course) -> SandboxPolicy:
    """The sandbox every submission of ``course`` runs in."""
    limits = course.sandbox_settings(settings.grading.sandbox)
    server = course.resource_limits(settings.spawner.limits)
    image = course.image or settings.spawner.image
    backend = settings.spawner.backend
    swarm = backend == "swarm"
    if swarm:
        # Where the course servers run, from the image every node pulls (the course image
        # with its materials): the hub host's engine may run no course at all.
        image = course_image_name(settings.spawner.swarm.course_image, course.id)
    elif backend == "kubernetes":
        # The image the course's pods run (hub/kube_spawner.py picks it the same way).
        image = course.image or course_image_name(settings.spawner.swarm.course_image, course.id)
    return SandboxPolicy(
        image=image,
        memory=limits.memory or server.memory,
        cpus=limits.cpus,
        pids=limits.pids,
        cell_timeout=limits.cell_timeout,
        notebook_timeout=limits.notebook_timeout,
        backend=backend if backend in ("swarm", "kubernetes") else "docker",
        swarm_constraints=tuple(settings.spawner.swarm.constraints) if swarm else (),
        kubernetes_namespace=settings.spawner.kubernetes_namespace,
        # Named and labelled after the platform, like its course containers.
        name_prefix=f"{settings.spawner.name_prefix}-sandbox-",
        platform=settings.spawner.name_prefix,
    )


def grading_parallelism(settings: Settings, course: Course, requested: int | None = None) -> int:
    """Submissions graded at once: ``requested`` (the CLI's ``--parallel``), else the course's
    or the settings' ``parallel``, else :func:`~grader.autograde.default_parallel`."""
    if requested is not None and requested > 0:
        return requested
    configured = course.sandbox_settings(settings.grading.sandbox).parallel
    return configured or default_parallel()
