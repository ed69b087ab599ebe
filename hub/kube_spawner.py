"""Course servers on Kubernetes: KubeSpawner with LearnHub's course checks and confinement.

The same rules as on Docker, in Kubernetes' terms:

- one PersistentVolumeClaim per member and course (``<prefix>-{user_server}``, i.e.
  ``learnhub-<user>--<course>``), created at the first start and kept when the server stops or
  is deleted: the learner's files outlive every pod;
- the course's materials come in the course image (``spawner.swarm.course_image``, built by
  ``python -m hub.swarm images``): a bind mount of the Hub host's folder does not exist on a
  cluster node;
- uid 1000, gid 100, every capability dropped, no privilege escalation, a read-only root file
  system with a memory-backed ``/tmp``, the runtime's default seccomp profile, no service
  account token and no Service environment variables;
- the course's memory and CPU limits;
- labels that the NetworkPolicies select on (``deploy/kubernetes/manifests.yaml``, and the
  chart's Hub policy, which admits ``network-access-hub`` pods): the pod may reach the Hub API
  and the exchange through the Hub's Service and cluster DNS, and nothing else, unless its
  course allows the internet (then public addresses only).

:func:`kubernetes_engine` gives KubeSpawner's traits as configuration, not in ``start()``:
KubeSpawner derives the PVC's name from ``pvc_name_template`` in its ``__init__``, so a template
set later is ignored. This module imports kubespawner; import it only when Kubernetes is used.
"""

from __future__ import annotations

from typing import Any

from kubespawner import KubeSpawner
from traitlets import Unicode

from hub.courses import CourseEntry
from hub.settings import Settings
from hub.spawner import HOME, SCRATCH_TMPFS_MIB, CourseSpawnerMixin

#: The label Zero to JupyterHub's hub NetworkPolicy admits to the Hub's ports (its chart gives
#: it to course pods through ``singleuser.extraLabels``; LearnHub sets it itself).
NETWORK_ACCESS_HUB = "hub.jupyter.org/network-access-hub"
#: What a LearnHub pod is; deploy/kubernetes/manifests.yaml's NetworkPolicies select on it.
ROLE_LABEL = "learnhub.role"
COURSE_SERVER_ROLE = "course-server"
#: "true" on the pods of courses whose course.yaml says ``internet: true``.
INTERNET_LABEL = "learnhub.internet"
#: The user and group of course servers (the image's jovyan, as on Docker: ``1000:100``).
UID = 1000
GID = 100

#: The container's security context: what Docker's ``cap_drop``/``no-new-privileges``/
#: ``read_only``/``user`` say on the Docker backend.
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsUser": UID,
    "runAsGroup": GID,
    "runAsNonRoot": True,
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: The pod's: the home volume is group-writable for gid 100 (``fsGroup``).
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "fsGroup": GID,
    "seccompProfile": {"type": "RuntimeDefault"},
}


#: /tmp of a course server: memory, as the Docker backend's tmpfs (it counts towards the limit).
_SCRATCH_SIZE = f"{SCRATCH_TMPFS_MIB}Mi"
#: Whose pod or PVC it is, in KubeSpawner's templates (label-safe slugs of the names).
_OWNER_LABELS = {"learnhub.user": "{username}", "learnhub.course": "{servername}"}


def kubernetes_engine(settings: Settings) -> dict[str, Any]:
    """KubeSpawner's own traits for LearnHub's course servers (config section ``KubeSpawner``).

    These override what Zero to JupyterHub's chart sets from ``singleuser.*`` (LearnHub's hub
    config runs after the chart's); deploy/kubernetes/values.yaml says the same things.
    """
    spawner = settings.spawner
    return {
        "namespace": spawner.kubernetes_namespace,
        "uid": UID,
        "gid": GID,
        "fs_gid": GID,
        "privileged": False,
        "allow_privilege_escalation": False,
        "container_security_context": dict(CONTAINER_SECURITY_CONTEXT),
        "pod_security_context": dict(POD_SECURITY_CONTEXT),
        # Learner code has no business with the Kubernetes API, nor with the addresses of
        # the namespace's Services that Kubernetes would put in its environment.
        "automount_service_account_token": False,
        "extra_pod_config": {"enableServiceLinks": False},
        "storage_pvc_ensure": True,
        "pvc_name_template": f"{spawner.name_prefix}-{{user_server}}",
        "storage_capacity": spawner.home.size,
        "storage_access_modes": ["ReadWriteOnce"],
        # A deleted named server keeps its PVC: refunds and cancellations keep the files.
        "delete_pvc": False,
        "volumes": [
            {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": _SCRATCH_SIZE}},
        ],
        "volume_mounts": [
            {"name": "home", "mountPath": HOME},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
        ],
        "extra_labels": {
            NETWORK_ACCESS_HUB: "true",
            ROLE_LABEL: COURSE_SERVER_ROLE,
            **_OWNER_LABELS,
        },
        "storage_extra_labels": dict(_OWNER_LABELS),
    }


def kubernetes_own(settings: Settings) -> dict[str, Any]:
    """What only the Kubernetes backend's LearnHub class takes: the course image's name."""
    return {"course_image": settings.spawner.swarm.course_image}


class LearnHubKubeSpawner(CourseSpawnerMixin, KubeSpawner):  # type: ignore[misc]
    """KubeSpawner for course servers on Kubernetes."""

    course_image = Unicode(
        "learnhub/course-{course}:latest",
        config=True,
        help=(
            "Image of a course's servers, `{course}` replaced by the course id: the course image "
            "with its materials baked in (a course.yaml `image:` wins)."
        ),
    )

    # Provided by KubeSpawner.
    extra_labels: dict[str, str]

    def configure_course(self, entry: CourseEntry) -> None:
        """Image, limits, environment and the internet label of this course's pod."""
        self.apply_course(entry)
        self.image = entry.course.image or self.course_image.format(course=entry.course.id)
        internet = "true" if entry.course.internet else "false"
        self.extra_labels = {**self.extra_labels, INTERNET_LABEL: internet}

    async def start(self) -> Any:
        """Check access, configure the pod for the course, then start it."""
        entry = self.authorize_course()
        self.configure_course(entry)
        self.log.info(
            "starting course server: user=%s course=%s image=%s mem=%s cpu=%s backend=kubernetes "
            "pvc=%s",
            self.user.name,
            entry.course.id,
            self.image,
            self.mem_limit,
            self.cpu_limit,
            self.pvc_name,
        )
        return await super().start()
