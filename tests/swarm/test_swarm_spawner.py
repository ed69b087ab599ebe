"""LearnHubSwarmSpawner without a swarm: the home's node outlives a stop, the mounts are what
the end-to-end test relies on, and deploy/swarm's example is valid settings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from hub.settings import load_settings
from hub.spawner import HOME, HOME_VOLUME, SCRATCH_TMPFS_MIB, LearnHubSwarmSpawner
from spawner_config import BACKENDS, _swarm_own


def course_spawner() -> LearnHubSwarmSpawner:
    return LearnHubSwarmSpawner(
        user=SimpleNamespace(name="mae"),
        orm_spawner=SimpleNamespace(name="python-foundations", server=None),
    )


def test_home_node_survives_a_stop_and_a_hub_restart() -> None:
    spawner = course_spawner()
    spawner.home_node = "node-abc"
    spawner.clear_state()  # what JupyterHub does when the server stops
    state = spawner.get_state()
    assert state["home_node"] == "node-abc"
    restarted = course_spawner()  # a new Hub process reads the state back
    restarted.load_state(state)
    assert restarted.home_node == "node-abc"


def test_home_is_a_volume_and_tmp_a_tmpfs() -> None:
    spawner = course_spawner()
    spawner.volumes = {HOME_VOLUME: HOME}
    mounts = {m["Target"]: m for m in spawner.mounts}
    assert mounts[HOME]["Type"] == "volume"
    assert mounts[HOME]["Source"] == "jupyter-mae--python-2dfoundations"
    assert mounts["/tmp"]["Type"] == "tmpfs"
    assert mounts["/tmp"]["TmpfsOptions"]["SizeBytes"] == SCRATCH_TMPFS_MIB * 1024**2
    assert not [m for m in mounts.values() if m["Type"] == "bind"]


def test_the_deploy_example_is_valid_settings() -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "swarm" / "learnhub.swarm.yaml"
    settings = load_settings(example, {})
    assert settings.spawner.backend == "swarm"
    own = _swarm_own(settings)
    assert own["swarm_course_image"].endswith("/learnhub/course-{course}:latest")
    assert own["swarm_constraints"] == ["node.labels.learnhub-courses==true"]
    # Course servers join LearnHub's Swarm networks, which the nodes' firewalls guard.
    assert (own["isolated_network"], own["internet_network"]) == ("learnhub", "learnhub-internet")
    assert settings.hub.hub_ip == "10.0.0.10"
    assert BACKENDS["swarm"].engine(settings)["use_internal_ip"] is False
