"""Course servers: one named server per learner and course, refused without access.

The server name is the course id (`/user/<name>/<course-id>/`), so a learner's courses never share
a container. Before anything is created, :meth:`CourseSpawnerMixin.authorize_course` checks that
the user may open the course (learner or instructor group, or admin) and refuses with a 403 that
says why. Each backend (Docker, Swarm, Kubernetes) then applies the course's image, limits,
labels and per-learner-per-course storage in its own terms.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from docker.errors import NotFound
from docker.types import Mount, Resources, RestartPolicy
from dockerspawner import DockerSpawner, SwarmSpawner
from traitlets import Bool, Enum, Float, HasTraits, Integer, List, Unicode

from grader.ownership import prepare_instructor_copy
from hub.access.policy import Member
from hub.courses import COURSE_ID_PATTERN, CourseEntry, load_course
from hub.errors import CourseError, user_facing_http_error
from hub.homes import HomeError, HomeImage, Prepared, detach_home, prepare_home
from hub.i18n import LOCALES
from hub.i18n.hub_pages import request_language
from hub.publishing import current_version

#: Where the course's materials are mounted read-only inside the container.
MATERIALS_MOUNT = "/srv/learnhub/materials"
#: The learner's home, backed by their per-course volume.
HOME = "/home/jovyan"
#: /tmp of a course server: a tmpfs of this size (it counts towards the memory limit), so
#: scratch files cannot fill the disk through the container's writable layer. ``exec``: Docker
#: mounts tmpfs noexec by default, and tools that compile into /tmp (cffi, numba) need it.
SCRATCH_TMPFS_MIB = 256
SCRATCH_TMPFS = {"/tmp": f"size={SCRATCH_TMPFS_MIB}m,mode=1777,exec"}  # noqa: S108 - private
#: The rest of a course server's file system is read-only (``read_only`` host config), so the
#: container's writable layer cannot grow: only the home, /tmp and Docker's own small tmpfs
#: (/dev/shm) take writes. Nothing the server stack runs writes elsewhere: Jupyter's runtime,
#: data and config folders, pip --user, matplotlib and IPython all live in the home.
READ_ONLY_ROOT = True
#: The named volume (or home image) of one learner and course, in DockerSpawner's template terms.
HOME_VOLUME = "{prefix}-{username}--{servername}"
#: Where an instructor's course server sees the course's nbgrader directory.
GRADING_MOUNT = "/home/jovyan/grading"
#: Instructor-only Jupyter configuration baked into the image (docker/singleuser/instructor).
INSTRUCTOR_CONFIG = "/opt/learnhub/instructor"


#: How many servers this hub is waiting on right now (see probe_interval).
_STARTING = [0]
#: Readiness probes per second, summed over every server starting at once.
PROBE_RATE = 100.0


def probe_interval(starting: int) -> float:
    """Seconds between readiness probes of one server while `starting` servers start at once.

    50 ms for up to 5 servers, then longer, so that all probes together stay at about
    `PROBE_RATE` a second: 50 servers starting at once would otherwise cost the hub's event loop
    1000 failed connections a second, CPU taken from the very servers being waited on.
    """
    return max(0.05, starting / PROBE_RATE)


def _prepare_grading_directory(folder: Path) -> None:
    """Create the instructors' copy if needed, for the container user (uid 1000), unwalked."""
    prepare_instructor_copy(folder)


class CourseSpawnerMixin(HasTraits):
    """What every LearnHub spawner does, whatever engine runs the server.

    Mixed into a JupyterHub Spawner subclass; relies on `self.user`, `self.name`, `self.log`.
    """

    courses_dir = Unicode(
        "courses", config=True, help="Folder with one folder per course (`course.yaml` inside)."
    )
    default_image = Unicode(
        "learnhub/singleuser:latest", config=True, help="Image used when a course names none."
    )
    default_mem_limit = Unicode("1G", config=True, help="Memory limit when a course sets none.")
    default_cpu_limit = Float(1.0, config=True, help="CPU limit when a course sets none.")
    grading_root = Unicode(
        "",
        config=True,
        help=(
            "Folder of the instructors' copies of the courses' grading directories "
            "(`<data_dir>/formgrader`). Instructors' course servers get their course's copy at "
            "/home/jovyan/grading, with the formgrader on. Empty: no grading in course servers."
        ),
    )
    exchange_url = Unicode(
        "",
        config=True,
        help="The nbgrader exchange as course containers reach it (LEARNHUB_EXCHANGE_URL).",
    )
    materials_root = Unicode(
        "",
        config=True,
        help=(
            "Folder of the courses' published materials (`<data_dir>/materials`, "
            "hub/publishing.py). A server starts with its course's current version when one "
            "was published, else with `courses/<id>/materials`."
        ),
    )
    name_prefix = Unicode(
        "learnhub", config=True, help="Prefix of every container and volume LearnHub creates."
    )
    isolated_network = Unicode(
        "",
        config=True,
        help=(
            "Docker (or Swarm) network of course servers without internet access "
            "(hub.network). Empty: the engine's `network_name` for every course."
        ),
    )
    internet_network = Unicode(
        "",
        config=True,
        help="Docker network of course servers whose course.yaml says `internet: true`.",
    )

    # Provided by the Spawner base class.
    network_name: Any
    server: Any
    user: Any
    name: Any
    log: Any
    environment: Any

    def course_entry(self) -> CourseEntry:
        """Load the course this server is for; 404 when there is no such course."""
        if not self.name:
            raise user_facing_http_error(
                400,
                "Every LearnHub course has its own server: open a course from the catalog "
                "instead of the default server.",
            )
        if not re.match(COURSE_ID_PATTERN, self.name):
            raise user_facing_http_error(404, f"There is no course called {self.name!r}.")
        folder = Path(self.courses_dir) / self.name
        if not folder.is_dir():
            raise user_facing_http_error(404, f"There is no course called {self.name!r}.")
        try:
            return load_course(folder)
        except CourseError as exc:
            self.log.error("course %s cannot be opened: %s", self.name, exc)
            raise user_facing_http_error(
                503, f"The course {self.name!r} is being updated; please try again shortly."
            ) from exc

    def authorize_course(self) -> CourseEntry:
        """Refuse (403) anyone who is not a learner or instructor of the course, or an admin."""
        entry = self.course_entry()
        course = entry.course
        member = Member(
            name=self.user.name,
            admin=bool(self.user.admin),
            groups=frozenset(group.name for group in self.user.groups),
        )
        if not member.may_open(course.id):
            self.log.warning(
                "course server refused: user=%s course=%s outcome=refused reason=no-access",
                self.user.name,
                course.id,
            )
            raise user_facing_http_error(
                403,
                f"You do not have access to the course “{course.title}”. Buy it in the catalog, "
                "or, if you already paid, wait a minute and reload: access is granted as soon as "
                "the payment is confirmed.",
                key="course_refused",
                course_id=course.id,
                course=course.title,
            )
        return entry

    def course_limits(self, entry: CourseEntry) -> tuple[str, float]:
        """Memory and CPU for this course: its own, else the defaults."""
        limits = entry.course.limits
        return (limits.memory or self.default_mem_limit, limits.cpu or self.default_cpu_limit)

    async def wait_until_listening(self, ip: str, port: int, within: float) -> None:
        """Wait until the new server accepts connections (or `within` seconds pass).

        JupyterHub's own readiness check backs off exponentially up to 5 s between probes, so a
        server that is up after 3 s is typically noticed well over a second later. Returning from
        `start()` only once the server listens makes JupyterHub's first probe succeed at once.

        A probe is a bare TCP connect: jupyter_server binds its port from inside its running
        event loop, after every extension has loaded, so a connection accepted means requests
        are served. A failed connect costs the hub's event loop far less than a failed HTTP
        request (about 0.7 ms each with httpx, measured in a 20-server burst). Probes come every
        50 ms while few servers are starting; see :func:`probe_interval`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        _STARTING[0] += 1
        try:
            while loop.time() < deadline:
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 2)
                except (OSError, TimeoutError):
                    await asyncio.sleep(probe_interval(_STARTING[0]))
                    continue
                writer.close()
                return
        finally:
            _STARTING[0] -= 1

    def materials_folder(self, entry: CourseEntry) -> Path:
        """What the server mounts as its materials: the course's current published version
        (fixed for the life of this server, so a publish reaches it at its next start), else
        the course repository's `materials/`."""
        if self.materials_root:
            published = current_version(Path(self.materials_root), entry.course.id)
            if published is not None:
                return published
        return entry.materials_dir

    async def grading_directory(self, entry: CourseEntry) -> Path | None:
        """The course's nbgrader directory, for instructors of the course; else None."""
        groups = {group.name for group in self.user.groups}
        if not self.grading_root or entry.course.instructor_group not in groups:
            return None
        folder = Path(self.grading_root) / entry.course.id
        await asyncio.to_thread(_prepare_grading_directory, folder)
        return folder

    def course_environment(self, entry: CourseEntry) -> dict[str, str]:
        """Environment for the course container (never secrets beyond the Hub's own token)."""
        env = {
            "LEARNHUB_COURSE": entry.course.id,
            "LEARNHUB_USER": self.user.name,
            "LEARNHUB_LAB_LOCALE": self.lab_locale(),
        }
        if self.exchange_url:
            env["LEARNHUB_EXCHANGE_URL"] = self.exchange_url
        return env

    def lab_locale(self) -> str:
        """JupyterLab's locale for this start: the learner's LearnHub language (``?lang=``, the
        ``learnhub-lang`` cookie, then ``Accept-Language`` of the request that starts the
        server, the rule of every page), as the image's ``learnhub-start`` reads it from
        ``LEARNHUB_LAB_LOCALE``. A start without a request (the API with a token) is English."""
        request = getattr(getattr(self, "handler", None), "request", None)
        return LOCALES[request_language(request)]

    def apply_course(self, entry: CourseEntry) -> tuple[str, float]:
        """Set image, limits and environment for the course; return (memory, cpu)."""
        memory, cpu = self.course_limits(entry)
        self.image = entry.course.image or self.default_image
        self.mem_limit = memory
        self.cpu_limit = cpu
        self.environment = {**self.environment, **self.course_environment(entry)}
        return memory, cpu

    def choose_network(self, entry: CourseEntry) -> None:
        """Join the course's LearnHub network (hub.network): the internet one when its
        course.yaml allows it; leave the engine's `network_name` when LearnHub manages none."""
        if self.isolated_network:
            self.network_name = (
                self.internet_network
                if entry.course.internet and self.internet_network
                else self.isolated_network
            )


class LearnHubDockerSpawner(CourseSpawnerMixin, DockerSpawner):  # type: ignore[misc]
    """DockerSpawner for course servers on a single Docker engine."""

    docker_workers = Integer(
        8,
        config=True,
        help=(
            "Threads for blocking Docker API calls, shared by all course servers. DockerSpawner "
            "uses one, so 50 servers stopping at once queue behind each other's ~1 s stops."
        ),
    )
    home_storage = Enum(
        ["image", "volume", "volume-quota"],
        "volume",
        config=True,
        help=(
            "How learner homes are stored (spawner.home.storage): `image` (a loop-mounted ext4 "
            "image of `home_size` under `homes_root`), `volume` (a named volume, no limit) or "
            "`volume-quota` (a named volume with the local driver's `size` option; xfs+pquota)."
        ),
    )
    home_size = Unicode("2G", config=True, help="Size of each home (spawner.home.size).")
    homes_root = Unicode(
        "", config=True, help="Folder of the home images with `image` (`<data_dir>/homes`)."
    )
    _executors: dict[str, ThreadPoolExecutor] = {}  # noqa: RUF012 - one pool per hub process

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The shared pool that runs docker-py calls off the event loop."""
        pool = LearnHubDockerSpawner._executors.get("docker")
        if pool is None:
            pool = ThreadPoolExecutor(self.docker_workers, thread_name_prefix="docker")
            LearnHubDockerSpawner._executors["docker"] = pool
        return pool

    async def start(self) -> Any:
        """Check access, configure the container for the course, then start it."""
        entry = self.authorize_course()
        memory, cpu = self.apply_course(entry)
        self.choose_network(entry)
        materials = str(self.materials_folder(entry))
        self.volumes = {materials: {"bind": MATERIALS_MOUNT, "mode": "ro"}}
        grading = await self.grading_directory(entry)
        if grading is not None:
            self.volumes[str(grading)] = {"bind": GRADING_MOUNT, "mode": "rw"}
            self.environment = {**self.environment, "JUPYTER_CONFIG_PATH": INSTRUCTOR_CONFIG}
        self.extra_create_kwargs = {
            "labels": {
                "learnhub.user": self.user.name,
                "learnhub.course": entry.course.id,
                "learnhub.prefix": self.name_prefix,
            },
            "user": "1000:100",
        }
        self.extra_host_config = {
            # Unprivileged: no capabilities, no privilege escalation, bounded process count.
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": 512,
            "tmpfs": SCRATCH_TMPFS,
            "read_only": READ_ONLY_ROOT,
        }
        self.log.info(
            "starting course server: user=%s course=%s image=%s mem=%s cpu=%s network=%s",
            self.user.name,
            entry.course.id,
            self.image,
            memory,
            cpu,
            self.network_name,
        )
        # Mounted last, right before the container starts, and detached whatever happens.
        home = await self.home_mount(entry)
        if isinstance(home, HomeImage):
            self.volumes[str(home.mountpoint)] = {"bind": HOME, "mode": "rw"}
        elif home is None:
            self.volumes[HOME_VOLUME] = {"bind": HOME, "mode": "rw"}
        try:
            ip, port = await super().start()
        finally:
            if isinstance(home, HomeImage):
                # The container holds its own mount now (or failed to start): drop the Hub's,
                # so the kernel releases the home when the container goes.
                await self._in_executor(detach_home, home)
        await self.wait_until_listening(ip, port, within=float(self.start_timeout))
        return ip, port

    async def _in_executor(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def volume_quota_mounts(self) -> list[dict[str, Any]]:
        """The home as a named volume that Docker's local driver creates with a size limit.

        Docker applies `size` with xfs project quotas, so the volume is created only where the
        data root is on xfs mounted with `pquota`; elsewhere the start fails with Docker's
        message. Options apply when a volume is created: existing volumes stay unbounded.
        """
        return [
            {
                "type": "volume",
                "source": HOME_VOLUME,
                "target": HOME,
                "read_only": False,
                "driver_config": {"Name": "local", "Options": {"size": self.home_size}},
            }
        ]

    async def home_mount(self, entry: CourseEntry) -> HomeImage | list[dict[str, Any]] | None:
        """Set up the learner's home for `home_storage`: the mounted image with `image`, the
        mount spec with `volume-quota`, None for a plain named volume."""
        self.mounts = []
        if self.home_storage == "volume":
            return None
        if self.home_storage == "volume-quota":
            self.mounts = self.volume_quota_mounts()
            return self.mounts
        name = self.format_volume_name(HOME_VOLUME, self)
        home = HomeImage.under(Path(self.homes_root), name)
        seed = await self.existing_volume_folder(name)
        try:
            prepared: Prepared = await self._in_executor(
                lambda: prepare_home(home, self.home_size, seed=seed)
            )
        except HomeError as exc:
            self.log.error(
                "home not ready: user=%s course=%s outcome=failed reason=%s",
                self.user.name,
                entry.course.id,
                exc,
            )
            raise user_facing_http_error(
                503,
                "Your course files could not be opened just now; please try again in a "
                "minute, and tell the course team if this persists.",
            ) from exc
        full = prepared.used_bytes >= 0.95 * prepared.size_bytes
        self.log.log(
            logging.WARNING if full else logging.INFO,
            "home ready: user=%s course=%s storage=image outcome=%s used=%dMiB size=%dMiB "
            "seconds=%.3f%s",
            self.user.name,
            entry.course.id,
            prepared.outcome,
            prepared.used_bytes // 1024**2,
            prepared.size_bytes // 1024**2,
            prepared.seconds,
            " full=yes (saves will fail with 'No space left on device')" if full else "",
        )
        return home

    async def existing_volume_folder(self, name: str) -> Path | None:
        """Where Docker keeps the named volume `name` (the learner's home before the limit was
        switched on), or None when there is none."""
        try:
            volume = await self.docker("inspect_volume", name)
        except NotFound:
            return None
        return Path(volume["Mountpoint"])


class LearnHubSwarmSpawner(CourseSpawnerMixin, SwarmSpawner):  # type: ignore[misc]
    """SwarmSpawner for course servers on a Docker Swarm (scale-out across machines).

    - Materials are in the course's image (``swarm_course_image``, built by ``python -m
      hub.swarm images``): a bind mount of the hub host's folder does not follow a service to
      another node. The image's entrypoint syncs them into the home as on Docker.
    - The home is a named volume of the node the server runs on. With ``home_affinity`` the
      node that first ran a learner's course server is kept in the spawner's state (the Hub's
      database) and every later start is constrained to it, so the work is there again.
    - The Hub reaches a server through a port the node publishes in host mode (the node's
      address and the task's port); Swarm's routing mesh (ingress VIPs) is not used.
    - Same limits as the Docker backend where Swarm has them: memory, CPU, pids, uid 1000,
      no capabilities, read-only root with a /tmp tmpfs. Swarm (API 1.41) has no
      ``no-new-privileges``; with no capabilities and no setuid programs it adds little.
    """

    swarm_course_image = Unicode(
        "learnhub/course-{course}:latest",
        config=True,
        help="Image of a course's servers, `{course}` replaced by the course id.",
    )
    swarm_constraints = List(
        Unicode(), config=True, help="Placement constraints of every course server."
    )
    home_affinity = Bool(
        True, config=True, help="Pin each home to the node where its volume was created."
    )
    #: The node whose local volume holds this learner's home for this course ("" unknown).
    home_node = Unicode("")

    async def start(self) -> Any:
        """Check access, configure the service for the course, then start it."""
        entry = self.authorize_course()
        memory, cpu = self.apply_course(entry)
        self.image = entry.course.image or self.swarm_course_image.format(course=entry.course.id)
        self.volumes = {HOME_VOLUME: HOME}
        self.choose_network(entry)
        labels = {
            "learnhub.user": self.user.name,
            "learnhub.course": entry.course.id,
            "learnhub.prefix": self.name_prefix,
        }
        self.extra_container_spec = {
            "labels": labels,
            "user": "1000:100",
            "cap_drop": ["ALL"],
            "read_only": READ_ONLY_ROOT,
        }
        self.extra_create_kwargs = {"labels": labels}
        constraints = list(self.swarm_constraints)
        if self.home_affinity and self.home_node:
            constraints.append(f"node.id=={self.home_node}")
        self.extra_placement_spec = {"constraints": constraints}
        # docker-py's Resources has no pids limit; the Engine API (1.41) does.
        resources = Resources(
            mem_limit=self.mem_limit, cpu_limit=int(float(self.cpu_limit or 1) * 1e9)
        )
        resources["Limits"]["Pids"] = 512
        # Swarm retries a failed task forever by default; a server that fails is reported.
        self.extra_task_spec = {
            "resources": resources,
            "restart_policy": RestartPolicy(condition="none"),
        }
        self.extra_endpoint_spec = {
            "ports": [{"Protocol": "tcp", "TargetPort": self.port, "PublishMode": "host"}]
        }
        self.log.info(
            "starting course server: user=%s course=%s image=%s mem=%s cpu=%s backend=swarm "
            "node=%s",
            self.user.name,
            entry.course.id,
            self.image,
            memory,
            cpu,
            self.home_node or "any",
        )
        ip, port = await super().start()
        await self.wait_until_listening(ip, port, within=float(self.start_timeout))
        return ip, port

    @property
    def mounts(self) -> list[Mount]:
        """The home as a named volume of the node (SwarmSpawner's own are bind mounts), and
        /tmp as a tmpfs (Swarm mounts tmpfs noexec; tools that compile into /tmp use the home)."""
        driver = self.mount_driver_config
        homes = [
            Mount(
                target=spec["bind"],
                source=name,
                type="volume",
                read_only=spec["mode"] == "ro",
                driver_config=driver,
                labels={"learnhub.user": self.user.name, "learnhub.course": self.name},
            )
            for name, spec in self.volume_binds.items()
        ]
        scratch = Mount(
            target="/tmp",  # noqa: S108 - the container's own tmpfs
            source=None,
            type="tmpfs",
            tmpfs_size=SCRATCH_TMPFS_MIB * 1024**2,
            tmpfs_mode=0o1777,
        )
        return [*homes, scratch]

    async def get_ip_and_port(self) -> tuple[str, int]:
        """The address of the node that runs the task and the port it published there; and
        remember that node as the home's (home affinity)."""
        task = await self.get_task()
        if task is None:
            raise RuntimeError(f"service {self.service_name} has no task")
        node = await self.docker("inspect_node", task["NodeID"])
        ports = task.get("Status", {}).get("PortStatus", {}).get("Ports", [])
        published = [p["PublishedPort"] for p in ports if p.get("TargetPort") == self.port]
        if not published:
            raise RuntimeError(f"service {self.service_name} published no port for {self.port}")
        if self.home_affinity and not self.home_node:
            self.home_node = str(task["NodeID"])
            self.log.info(
                "home placed: user=%s course=%s node=%s (%s)",
                self.user.name,
                self.name,
                self.home_node,
                node["Description"]["Hostname"],
            )
        return str(node["Status"]["Addr"]), int(published[0])

    def get_state(self) -> dict[str, Any]:
        """DockerSpawner's state plus the home's node, which `clear_state` (a stopped server)
        leaves alone: the home outlives every server."""
        state: dict[str, Any] = super().get_state()
        if self.home_node:
            state["home_node"] = self.home_node
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore DockerSpawner's state and the home's node."""
        super().load_state(state)
        self.home_node = state.get("home_node", self.home_node)
