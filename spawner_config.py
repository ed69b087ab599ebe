"""Spawner backends: which engine runs course servers, configured from the settings.

- `docker` (default): DockerSpawner on this machine's Docker engine.
- `swarm`: SwarmSpawner on a Docker Swarm, when one machine is not enough.
- `kubernetes`: KubeSpawner, for a Kubernetes cluster.
- `local`: plain processes on the hub host; for tests of hub logic only (refused in production).

Called from `jupyterhub_config.py`; it only sets values, so applying twice is harmless.
"""

from __future__ import annotations

from typing import Any

from hub.hubconfig import exchange_url
from hub.settings import Settings


def apply_spawner(c: Any, settings: Settings) -> None:
    """Select and configure the spawner backend named by `spawner.backend`."""
    spawner = settings.spawner
    common = {
        "courses_dir": str(settings.courses_dir.resolve()),
        "default_image": spawner.image,
        "default_mem_limit": spawner.limits.memory,
        "default_cpu_limit": spawner.limits.cpu,
        "name_prefix": spawner.name_prefix,
        "exchange_url": exchange_url(settings),
        "grading_root": str(settings.formgrader_dir),
    }
    c.Spawner.start_timeout = spawner.start_timeout
    c.Spawner.http_timeout = spawner.start_timeout
    c.Spawner.default_url = "/lab"
    if spawner.backend == "docker":
        c.JupyterHub.spawner_class = "hub.spawner.LearnHubDockerSpawner"
        for key, value in common.items():
            setattr(c.LearnHubDockerSpawner, key, value)
        c.DockerSpawner.prefix = spawner.name_prefix
        c.DockerSpawner.network_name = spawner.network
        c.DockerSpawner.use_internal_ip = True
        # Containers are throwaway; the per-course volume keeps the learner's work.
        c.DockerSpawner.remove = True
        c.DockerSpawner.pull_policy = "never"
        c.DockerSpawner.notebook_dir = "/home/jovyan"
    elif spawner.backend == "swarm":
        c.JupyterHub.spawner_class = "hub.spawner.LearnHubSwarmSpawner"
        for key, value in common.items():
            setattr(c.LearnHubSwarmSpawner, key, value)
        c.SwarmSpawner.prefix = spawner.name_prefix
        c.SwarmSpawner.network_name = spawner.network
        c.SwarmSpawner.use_internal_ip = True
        c.SwarmSpawner.pull_policy = "never"
        c.SwarmSpawner.notebook_dir = "/home/jovyan"
    elif spawner.backend == "kubernetes":
        from hub.spawner import kube_spawner_class

        c.JupyterHub.spawner_class = kube_spawner_class()
        for key, value in common.items():
            setattr(c.LearnHubKubeSpawner, key, value)
        c.KubeSpawner.namespace = spawner.kubernetes_namespace
    else:
        c.JupyterHub.spawner_class = "hub.local_spawner.LearnHubLocalSpawner"
        for key, value in common.items():
            setattr(c.LearnHubLocalSpawner, key, value)
