"""Spawner backends: which engine runs course servers, configured from the settings.

- `docker` (default): DockerSpawner on this machine's Docker engine.
- `swarm`: SwarmSpawner on a Docker Swarm, when one machine is not enough.
- `kubernetes`: KubeSpawner, for a Kubernetes cluster.
- `local`: plain processes on the hub host; for tests of hub logic only (refused in production).

Called from `jupyterhub_config.py`; it only sets values, so applying twice is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from hub.addresses import exchange_url
from hub.network import internet_network_name, is_managed
from hub.publishing import materials_root
from hub.settings import Settings


def _kube_spawner_class() -> Any:
    # Imported only for this backend: kubespawner is heavy and needs no cluster until used.
    from hub.kube_spawner import LearnHubKubeSpawner

    return LearnHubKubeSpawner


def _kube_engine(settings: Settings) -> dict[str, Any]:
    from hub.kube_spawner import kubernetes_engine

    return kubernetes_engine(settings)


def _kube_own(settings: Settings) -> dict[str, Any]:
    from hub.kube_spawner import kubernetes_own

    return kubernetes_own(settings)


class Backend(NamedTuple):
    """One spawner backend: LearnHub's spawner class and what its engine's class needs.

    A NamedTuple, not a dataclass: JupyterHub runs this file without registering it as a module,
    which dataclasses need.
    """

    #: The class JupyterHub loads (a dotted name), or a function that makes it.
    spawner_class: str | Callable[[], Any]
    #: The config section of that class, which takes the course settings of every backend.
    section: str
    #: The engine's own config section (DockerSpawner, ...) and the values it gets.
    engine_section: str = ""
    engine: Callable[[Settings], dict[str, Any]] = lambda _settings: {}
    #: What only this backend's LearnHub class takes, beyond the course settings.
    own: Callable[[Settings], dict[str, Any]] = lambda _settings: {}


def _docker_engine(settings: Settings, *, remove: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "prefix": settings.spawner.name_prefix,
        "network_name": settings.spawner.network,
        "use_internal_ip": True,
        "pull_policy": "never",
        "notebook_dir": "/home/jovyan",
    }
    if remove:
        # Containers are throwaway; the per-course volume keeps the learner's work.
        values["remove"] = True
    return values


def _course_networks(settings: Settings) -> dict[str, Any]:
    """LearnHub's isolated network and its internet sibling (hub.network), when it manages them."""
    network = settings.spawner.network
    if not is_managed(network):
        return {}
    return {"isolated_network": network, "internet_network": internet_network_name(network)}


def _docker_own(settings: Settings) -> dict[str, Any]:
    """What only the Docker backend's LearnHub class takes: networks and the home's storage."""
    home = settings.spawner.home
    return {
        **_course_networks(settings),
        "home_storage": home.storage,
        "home_size": home.size,
        "homes_root": str(settings.homes_dir),
    }


def _swarm_engine(settings: Settings) -> dict[str, Any]:
    """SwarmSpawner's values: no network of its own (LearnHub's Swarm networks are chosen per
    course, `_course_networks`; servers are reached on a host-mode published port), no pull
    check on the Hub's own engine (the node that runs the task pulls the image), the homes'
    volume driver."""
    swarm = settings.spawner.swarm
    return {
        **_docker_engine(settings, remove=False),
        "network_name": "",
        "use_internal_ip": False,
        "pull_policy": "skip",
        "volume_driver": swarm.volume_driver,
    }


def _swarm_own(settings: Settings) -> dict[str, Any]:
    """What only the Swarm backend's LearnHub class takes: networks, course image, placement."""
    swarm = settings.spawner.swarm
    return {
        **_course_networks(settings),
        "swarm_course_image": swarm.course_image,
        "swarm_constraints": list(swarm.constraints),
        "home_affinity": swarm.home_affinity,
    }


BACKENDS: dict[str, Backend] = {
    "docker": Backend(
        "hub.spawner.LearnHubDockerSpawner",
        "LearnHubDockerSpawner",
        "DockerSpawner",
        lambda settings: _docker_engine(settings, remove=True),
        _docker_own,
    ),
    # SwarmSpawner removes its services on stop by itself (its `remove` is fixed to True).
    "swarm": Backend(
        "hub.spawner.LearnHubSwarmSpawner",
        "LearnHubSwarmSpawner",
        "SwarmSpawner",
        _swarm_engine,
        _swarm_own,
    ),
    "kubernetes": Backend(
        _kube_spawner_class,
        "LearnHubKubeSpawner",
        "KubeSpawner",
        _kube_engine,
        _kube_own,
    ),
    "local": Backend("hub.local_spawner.LearnHubLocalSpawner", "LearnHubLocalSpawner"),
}


def course_settings(settings: Settings) -> dict[str, Any]:
    """What LearnHub's spawner class gets on every backend (traits of `CourseSpawnerMixin`)."""
    spawner = settings.spawner
    return {
        "courses_dir": str(settings.courses_dir.resolve()),
        "default_image": spawner.image,
        "default_mem_limit": spawner.limits.memory,
        "default_cpu_limit": spawner.limits.cpu,
        "name_prefix": spawner.name_prefix,
        "exchange_url": exchange_url(settings),
        "grading_root": str(settings.formgrader_dir),
        "materials_root": str(materials_root(settings)),
    }


def apply_spawner(c: Any, settings: Settings) -> None:
    """Select and configure the spawner backend named by `spawner.backend`."""
    spawner = settings.spawner
    backend = BACKENDS[spawner.backend]
    c.Spawner.start_timeout = spawner.start_timeout
    c.Spawner.http_timeout = spawner.start_timeout
    c.Spawner.default_url = "/lab"
    made = backend.spawner_class
    c.JupyterHub.spawner_class = made if isinstance(made, str) else made()
    sections = [(backend.section, {**course_settings(settings), **backend.own(settings)})]
    if backend.engine_section:
        sections.append((backend.engine_section, backend.engine(settings)))
    for section, values in sections:
        for key, value in values.items():
            setattr(getattr(c, section), key, value)
