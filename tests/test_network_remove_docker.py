"""`learnhub network remove` and the Hub's start check, on the real engine and firewall.

Remove undoes exactly what `learnhub network apply` made: the networks (refused while a
container is on one), LearnHub's chains and the jumps into them; another install's chains,
rules that only look like LearnHub's and a network LearnHub did not make stay. The Hub refuses
to start without its course networks, with the command that makes them.

Host state: every network here is named after this process's TEST_PREFIX, so every chain
(named after the network's bridge) and every jump (which names that bridge) is this process's
own; other rules of the shared chains are read, never changed. No swarm is made: the Swarm
node's part (config-only networks and chains) needs none, the manager's part runs in
tests/swarm/test_swarm_platform.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import NotFound

from hub import images as image_builder
from hub.cli import main as learnhub
from hub.network import (
    CourseNetwork,
    NetworkError,
    apply_networks,
    apply_swarm_node,
    check_course_networks,
    internet_network_name,
    remove_networks,
    swarm_jumps,
)
from hub.settings import Settings, load_settings
from tests.harness import ROOT, TEST_PREFIX, start_hub_once

pytestmark = pytest.mark.docker

BASE_IMAGE = "learnhub/base:bookworm"


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["iptables", "-w", *args], capture_output=True, text=True, check=False, timeout=30
    )


def chain_exists(chain: str) -> bool:
    return _iptables("-n", "-L", chain).returncode == 0


#: The shared chains LearnHub jumps from (Docker's own rules for a bridge are elsewhere).
JUMPED_FROM = ("INPUT", "OUTPUT", "DOCKER-USER")


def rules_naming(bridges: set[str]) -> list[str]:
    """The rules of the chains LearnHub jumps from that name one of ``bridges`` (ours only)."""
    listing = [line for chain in JUMPED_FROM for line in _iptables("-S", chain).stdout.splitlines()]
    return [line for line in listing if set(line.split()) & bridges]


def net_names(base: str) -> tuple[CourseNetwork, CourseNetwork]:
    return (
        CourseNetwork(base, internet=False, host_ports=()),
        CourseNetwork(internet_network_name(base), internet=True, host_ports=()),
    )


def chains_of(network: CourseNetwork) -> list[str]:
    return [network.input_chain, network.egress_chain, network.server_chain, network.relay_chain]


def settings_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"courses_dir: {ROOT / 'courses'}\nhub:\n  data_dir: {tmp_path / name}\n{text}")
    return path


def single_host(tmp_path: Path, network: str) -> tuple[Path, Settings]:
    path = settings_file(tmp_path, network, f"spawner:\n  network: {network}\n")
    return path, load_settings(path, {})


def swarm(tmp_path: Path, network: str) -> tuple[Path, Settings]:
    text = f"  hub_ip: 10.0.0.10\nspawner:\n  backend: swarm\n  network: {network}\n"
    path = settings_file(tmp_path, network, text)
    return path, load_settings(path, {})


def run_remove(
    capsys: pytest.CaptureFixture[str], config: Path, *flags: str
) -> tuple[int, str, str]:
    """`learnhub --config FILE network remove [flags]`, in this process (no Python start)."""
    code = learnhub(["--config", str(config), "network", "remove", *flags], {})
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cleanup(engine: docker.DockerClient) -> Iterator[list[str]]:
    """Base names whose networks and chains are removed after the test, whatever happened."""
    bases: list[str] = []
    yield bases
    remove_networks(bases, client=engine)
    for base in bases:
        for network in net_names(base):
            for name in (network.name, network.config_network):
                try:
                    engine.networks.get(name).remove()
                except NotFound:
                    pass
            for chain, *spec in swarm_jumps(network):
                _iptables("-D", chain, *spec)
            for chain in chains_of(network):
                _iptables("-F", chain)
                _iptables("-X", chain)


def test_remove_takes_away_what_apply_made_and_nothing_else(
    tmp_path: Path,
    engine: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
    cleanup: list[str],
) -> None:
    ours, other = f"{TEST_PREFIX}-rma", f"{TEST_PREFIX}-rmb"
    cleanup += [ours, other]
    config, settings = single_host(tmp_path, ours)
    _, other_settings = single_host(tmp_path, other)
    isolated, internet = net_names(ours)
    # The internet sibling was made by hand (isolating, so apply accepts it): not LearnHub's.
    engine.networks.create(internet.name, driver="bridge", options=internet.bridge_options)
    apply_networks(settings, client=engine)
    apply_networks(other_settings, client=engine)  # another install on the same machine
    assert [n.name for n in check_course_networks(settings, client=engine)] == [
        isolated.name,
        internet.name,
    ]
    # Rules that name our bridges but are not LearnHub's jumps.
    look_alikes = [
        ["DOCKER-USER", "-i", internet.bridge, "-m", "comment", "--comment", "operator", "-j",
         "RETURN"],
        ["INPUT", "-i", isolated.bridge, "-p", "udp", "-m", "comment", "--comment", "operator",
         "-j", "DROP"],
    ]  # fmt: skip
    for chain, *spec in look_alikes:
        assert _iptables("-A", chain, *spec).returncode == 0
    try:
        theirs = {c: _iptables("-S", c).stdout for n in net_names(other) for c in chains_of(n)}
        their_jumps = rules_naming({n.bridge for n in net_names(other)})
        assert len(their_jumps) == 3  # INPUT for both, DOCKER-USER for the internet one

        code, out, err = run_remove(capsys, config)
        assert code == 0, err
        assert f"Docker network removed: {isolated.name}" in out
        assert f"Docker network {internet.name}: not made by LearnHub" in out
        with pytest.raises(NotFound):
            engine.networks.get(isolated.name)
        assert engine.networks.get(internet.name).name == internet.name
        for network in (isolated, internet):
            assert not chain_exists(network.input_chain), out
            assert not chain_exists(network.egress_chain), out
        # Our jumps went; the look-alikes stayed, word for word.
        left = rules_naming({isolated.bridge, internet.bridge})
        assert sorted(left) == sorted(
            f"-A {chain} {' '.join(spec)}" for chain, *spec in look_alikes
        )
        # The other install is as it was.
        assert {c: _iptables("-S", c).stdout for c in theirs} == theirs
        assert rules_naming({n.bridge for n in net_names(other)}) == their_jumps
        assert engine.networks.get(other).name == other

        # Once is enough: a second run finds nothing of LearnHub's (and says so).
        code, out, err = run_remove(capsys, config)
        assert code == 0, err
        assert "nothing to remove" in out and "Docker network removed" not in out
        assert f"Docker network {internet.name}: not made by LearnHub" in out

        # Now the Hub would refuse to start, naming the command that makes the network.
        with pytest.raises(NetworkError, match=r"does not exist: run `learnhub network apply`"):
            check_course_networks(settings, client=engine)
    finally:
        for chain, *spec in look_alikes:
            _iptables("-D", chain, *spec)


@pytest.fixture(scope="module")
def base_image(docker_engine: None) -> str:
    """The offline base image (made once; a no-op when it is there): a container to attach."""
    image_builder.ensure_base_image(ROOT, base_image=BASE_IMAGE, log=print)
    return BASE_IMAGE


def test_remove_refuses_while_a_container_is_on_a_network(
    tmp_path: Path,
    engine: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
    cleanup: list[str],
    base_image: str,
) -> None:
    base = f"{TEST_PREFIX}-rmc"
    cleanup.append(base)
    config, settings = single_host(tmp_path, base)
    apply_networks(settings, client=engine)
    isolated, internet = net_names(base)
    before = rules_naming({isolated.bridge, internet.bridge})
    server = engine.containers.run(
        base_image, ["sleep", "120"], name=f"{base}-server", network=internet.name,
        detach=True, remove=True, labels={"learnhub.prefix": TEST_PREFIX},
    )  # fmt: skip
    try:
        code, out, err = run_remove(capsys, config)
        assert code == 2, out
        assert f"{internet.name}: {base}-server" in err
        assert "nothing was removed" in err and f"docker stop {base}-server" in err
        assert "learnhub network remove" in err and "Traceback" not in err
        # Nothing changed: the server keeps its network and its firewall.
        assert engine.networks.get(internet.name).attrs["Containers"]
        assert engine.networks.get(isolated.name).name == isolated.name
        assert rules_naming({isolated.bridge, internet.bridge}) == before
        assert chain_exists(internet.egress_chain) and chain_exists(isolated.input_chain)
    finally:
        server.remove(force=True)
    code, out, err = run_remove(capsys, config)
    assert code == 0, err
    assert f"Docker network removed: {internet.name}" in out
    assert rules_naming({isolated.bridge, internet.bridge}) == []


def test_swarm_node_remove_undoes_apply_swarm_node(
    tmp_path: Path,
    engine: docker.DockerClient,
    capsys: pytest.CaptureFixture[str],
    cleanup: list[str],
) -> None:
    """A course node's part needs no swarm: config-only networks and four chains each."""
    base = f"{TEST_PREFIX}-rmn"
    cleanup.append(base)
    config, settings = swarm(tmp_path, base)
    networks = net_names(base)
    bridges = {n.bridge for n in networks}
    apply_swarm_node(settings, client=engine)
    assert len(rules_naming(bridges)) == 8  # four jumps per network
    for network in networks:
        assert engine.networks.get(network.config_network).attrs["ConfigOnly"] is True

    code, out, err = run_remove(capsys, config, "--swarm-node")
    assert code == 0, err
    for network in networks:
        assert f"Docker network removed: {network.config_network}" in out
        with pytest.raises(NotFound):
            engine.networks.get(network.config_network)
        for chain in chains_of(network):
            assert not chain_exists(chain), chain
    assert rules_naming(bridges) == []
    code, out, err = run_remove(capsys, config, "--swarm-node")
    assert code == 0 and out.startswith("nothing to remove"), out + err


def test_start_check_refuses_networks_that_are_missing_or_do_not_isolate(
    tmp_path: Path, engine: docker.DockerClient, cleanup: list[str]
) -> None:
    base = f"{TEST_PREFIX}-rms"
    cleanup.append(base)
    _, settings = swarm(tmp_path, base)
    with pytest.raises(NetworkError) as missing:
        check_course_networks(settings, client=engine)
    assert f"LearnHub's Swarm network {base!r} does not exist" in str(missing.value)
    assert "`learnhub network apply` on a manager" in str(missing.value)
    # A network of that name that is not a Swarm network of LearnHub's (made by hand).
    engine.networks.create(base, driver="bridge")
    with pytest.raises(NetworkError, match=r"is not LearnHub's Swarm network \(scope 'local'"):
        check_course_networks(settings, client=engine)
    # On one machine: a hand-made network by LearnHub's name lets containers talk.
    _, single = single_host(tmp_path, base)
    with pytest.raises(NetworkError) as loose:
        check_course_networks(single, client=engine)
    assert "does not isolate course containers" in str(loose.value)
    assert "enable_icc should be false" in str(loose.value)


def test_the_hub_refuses_to_start_without_its_swarm_networks(tmp_path: Path) -> None:
    """The check is wired into the Hub's config: it exits with the remedy, no traceback."""
    config, _ = swarm(tmp_path, f"{TEST_PREFIX}-rmh")
    hub = start_hub_once({"PATH": "/usr/bin:/bin", "LEARNHUB_CONFIG": str(config)}, tmp_path)
    assert hub.returncode != 0
    assert "learnhub: cannot start" in hub.stderr
    assert f"Swarm network '{TEST_PREFIX}-rmh' does not exist" in hub.stderr
    assert "Traceback" not in hub.stderr
