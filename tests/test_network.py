"""Network isolation, read from the plan: which networks, which firewall rules.

Rules about addresses that are not on this machine (cloud metadata, private ranges) are checked
here by reading them, never by sending traffic there; tests/test_network_docker.py performs the
attacks that stay on this machine.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from types import SimpleNamespace

import pytest
from docker.errors import NotFound

from hub.errors import SettingsError
from hub.network import (
    BLOCKED_DESTINATIONS,
    CourseNetwork,
    NetworkError,
    apply_swarm_node,
    egress_rules,
    input_rules,
    jumps,
    plan_networks,
    plan_swarm_networks,
    remove_swarm_networks,
    swarm_egress_rules,
    swarm_input_rules,
    swarm_jumps,
    swarm_relay_rules,
    swarm_server_rules,
)
from hub.settings import load_settings


def test_default_plan_is_an_isolated_network_and_an_internet_sibling(tmp_path: Path) -> None:
    settings = load_settings(None, {})
    isolated, internet = plan_networks(settings)
    assert (isolated.name, isolated.internet) == ("learnhub", False)
    assert (internet.name, internet.internet) == ("learnhub-internet", True)
    for network in (isolated, internet):
        assert network.host_ports == (settings.hub.hub_port, settings.hub.service_port)
        options = network.create_options()
        assert options["internal"] is (not network.internet)
        assert options["options"]["com.docker.network.bridge.enable_icc"] == "false"
        assert len(network.bridge) <= 15  # Linux interface names


def test_docker_default_bridge_is_not_managed_and_refused_in_production(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, "spawner:\n  network: bridge\n"), {})
    assert plan_networks(settings) == []
    with pytest.raises(SettingsError, match=r"spawner\.network: Docker's `bridge` network"):
        load_settings(
            _write(tmp_path, "mode: production\nspawner:\n  network: bridge\n"),
            {"LEARNHUB_COOKIE_SECRET": "x" * 40},
        )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "learnhub.yaml"
    path.write_text(text)
    return path


def test_host_accepts_only_the_hub_and_exchange_ports() -> None:
    network = CourseNetwork("lh", internet=False, host_ports=(8081, 10101))
    rules = input_rules(network)
    assert rules[0][-2:] == ["-j", "ACCEPT"] and "ESTABLISHED,RELATED" in rules[0]
    assert ["--dports", "8081,10101", "-j", "ACCEPT"] == rules[1][-4:]
    # Everything else from the network to the host is refused, TCP or not.
    assert rules[-2][-4:] == ["-j", "REJECT", "--reject-with", "tcp-reset"]
    assert rules[-1][:2] == ["-A", network.input_chain] and "REJECT" in rules[-1]
    assert len(rules) == 4
    assert jumps(network) == [["INPUT", "-i", network.bridge, "-j", network.input_chain]]


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # cloud instance metadata
        "10.1.2.3",
        "172.17.0.1",  # Docker's default bridge
        "172.31.255.1",
        "192.168.1.1",
        "100.64.0.1",
        "127.0.0.1",
        "224.0.0.251",
    ],
)
def test_internet_courses_never_reach_private_or_link_local(address: str) -> None:
    network = CourseNetwork("lh-internet", internet=True, host_ports=(1, 2))
    rules = egress_rules(network)
    blocked = [ipaddress.ip_network(rule[rule.index("-d") + 1]) for rule in rules if "-d" in rule]
    assert any(ipaddress.ip_address(address) in net for net in blocked), address
    for rule in rules:
        if "-d" in rule:
            assert rule[-4:-2] == ["-j", "REJECT"]
    # Answers to connections the container opened still come back; then the rest is Docker's.
    assert "ESTABLISHED,RELATED" in rules[0] and rules[-1][-2:] == ["-j", "RETURN"]
    assert ["DOCKER-USER", "-i", network.bridge, "-j", network.egress_chain] in jumps(network)


def test_a_public_address_is_not_in_the_blocked_ranges() -> None:
    public = ipaddress.ip_address("151.101.0.223")  # an address of the package index's CDN
    assert not any(public in ipaddress.ip_network(cidr) for cidr in BLOCKED_DESTINATIONS)


# --- Docker Swarm: read from the plan (the attacks run on a real swarm in tests/swarm/) ---------


def _swarm(tmp_path: Path, extra: str = "  hub_ip: 10.0.0.10\n") -> list[CourseNetwork]:
    text = "spawner:\n  backend: swarm\n  network: lh\nhub:\n" + extra
    return plan_swarm_networks(load_settings(_write(tmp_path, text), {}))


def test_swarm_plan_is_two_swarm_networks_guarded_for_the_hub_host(tmp_path: Path) -> None:
    isolated, internet = _swarm(tmp_path)
    assert (isolated.name, isolated.internet, isolated.config_network) == ("lh", False, "lh-config")
    assert (internet.name, internet.internet) == ("lh-internet", True)
    assert isolated.hub_address == internet.hub_address == "10.0.0.10"
    # Only the Hub's host opens connections to a course server, through Docker's NAT ...
    server = swarm_server_rules(isolated)
    assert ["-s", "10.0.0.10/32", "-p", "tcp", "-j", "RETURN"] == server[1][2:]
    assert server[-1][-4:] == ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"]
    # ... or through its userland proxy on the node.
    relay = swarm_relay_rules(isolated)
    assert ["-s", "10.0.0.10/32", "-p", "tcp", "-j", "RETURN"] == relay[1][2:]
    assert relay[-2][-4:] == ["-j", "REJECT", "--reject-with", "tcp-reset"]
    # The node's own services: only the Hub's ports at the Hub's address.
    node = swarm_input_rules(isolated)
    assert node[1][2:4] == ["-d", "10.0.0.10/32"] and node[1][-1] == "ACCEPT"
    assert node[-1][-4:-2] == ["-j", "REJECT"]
    assert [jump[0] for jump in swarm_jumps(isolated)] == [
        "INPUT", "OUTPUT", "DOCKER-USER", "DOCKER-USER",
    ]  # fmt: skip


def test_swarm_course_without_internet_reaches_only_the_hub(tmp_path: Path) -> None:
    isolated, _ = _swarm(tmp_path)
    rules = swarm_egress_rules(isolated)
    allowed = [rule for rule in rules if rule[-1] == "RETURN"]
    assert len(allowed) == 2 and "ESTABLISHED,RELATED" in allowed[0]
    assert allowed[1][2:] == [
        "-d", "10.0.0.10/32", "-p", "tcp", "-m", "multiport", "--dports", "8081,10101",
        "-j", "RETURN",
    ]  # fmt: skip
    # Everything else, metadata and the internet included, is refused: no -d, no way out.
    assert rules[-1] == ["-A", isolated.egress_chain, "-j", "REJECT", "--reject-with",
                         "icmp-port-unreachable"]  # fmt: skip


@pytest.mark.parametrize("address", ["169.254.169.254", "10.1.2.3", "172.17.0.1", "127.0.0.1"])
def test_swarm_course_with_internet_never_reaches_private_or_link_local(
    tmp_path: Path, address: str
) -> None:
    _, internet = _swarm(tmp_path)
    rules = swarm_egress_rules(internet)
    blocked = [
        ipaddress.ip_network(rule[rule.index("-d") + 1]) for rule in rules[2:] if "-d" in rule
    ]
    assert any(ipaddress.ip_address(address) in net for net in blocked), address
    assert rules[-1][-2:] == ["-j", "RETURN"]


@pytest.mark.parametrize("hub_ip", ["auto", "hub.example.org", "127.0.0.1", "0.0.0.0", "::1"])
def test_swarm_networks_need_the_hub_hosts_address(tmp_path: Path, hub_ip: str) -> None:
    with pytest.raises(NetworkError, match=r"hub\.hub_ip .* set it to the IPv4 address of the Hub"):
        _swarm(tmp_path, f"  hub_ip: '{hub_ip}'\n")


def test_swarm_node_command_refuses_other_backends(tmp_path: Path) -> None:
    with pytest.raises(NetworkError, match=r"--swarm-node` is for spawner.backend swarm"):
        apply_swarm_node(load_settings(None, {}))


def test_swarm_with_docker_bridge_is_unguarded_and_refused_in_production(tmp_path: Path) -> None:
    unguarded = _write(tmp_path, "spawner:\n  backend: swarm\n  network: bridge\n")
    assert plan_swarm_networks(load_settings(unguarded, {})) == []
    text = "mode: production\nspawner:\n  backend: swarm\n  network: bridge\n"
    with pytest.raises(SettingsError, match=r"spawner\.network: Docker's `bridge` network"):
        load_settings(_write(tmp_path, text), {"LEARNHUB_COOKIE_SECRET": "x" * 40})


class _Networks:
    """A Docker engine that has exactly ``existing`` (docker-py's ``client.networks``)."""

    def __init__(self, existing: dict[str, dict[str, object]]) -> None:
        self.existing = existing

    def get(self, name: str) -> SimpleNamespace:
        if name not in self.existing:
            raise NotFound(name)
        return SimpleNamespace(attrs=self.existing[name])


def test_a_swarm_node_network_that_does_not_isolate_is_an_error_with_the_remedy(
    tmp_path: Path,
) -> None:
    """Someone made `lh-config` by hand with inter-container traffic on: LearnHub refuses to
    guard a bridge its members could cross, and says how to make it right."""
    text = "spawner:\n  backend: swarm\n  network: lh\nhub:\n  hub_ip: 10.0.0.10\n"
    settings = load_settings(_write(tmp_path, text), {})
    by_hand = {"com.docker.network.bridge.enable_icc": "true"}
    engine = SimpleNamespace(
        networks=_Networks({"lh-config": {"ConfigOnly": True, "Options": by_hand}})
    )
    with pytest.raises(NetworkError) as refused:
        apply_swarm_node(settings, client=engine)
    message = str(refused.value)
    assert "enable_icc should be false" in message
    assert "docker network rm lh-config" in message and "--swarm-node" in message


def test_swarm_network_removal_refuses_while_services_use_it(tmp_path: Path) -> None:
    """On a manager, `learnhub network remove` names the services still on a course network
    and removes nothing (their servers would run on without a firewall's say)."""
    text = "spawner:\n  backend: swarm\n  network: lh\nhub:\n  hub_ip: 10.0.0.10\n"
    settings = load_settings(_write(tmp_path, text), {})

    def ours(config: str) -> dict[str, object]:
        return {"Scope": "swarm", "ConfigFrom": {"Network": config}}

    removed: list[str] = []

    class Network(SimpleNamespace):
        def remove(self) -> None:
            removed.append(self.name)

    class Networks(_Networks):
        def get(self, name: str) -> SimpleNamespace:
            return Network(name=name, id=f"id-{name}", attrs=super().get(name).attrs)

    def service(name: str, targets: list[str]) -> SimpleNamespace:
        networks = [{"Target": target} for target in targets]
        return SimpleNamespace(id=name, attrs={"Spec": {"Name": name, "TaskTemplate": {
            "Networks": networks}}})  # fmt: skip

    services = [service("jupyter-ada-py", ["id-lh"]), service("unrelated", ["id-other"])]
    engine = SimpleNamespace(
        networks=Networks({"lh": ours("lh-config"), "lh-internet": ours("lh-internet-config")}),
        services=SimpleNamespace(list=lambda: services),
    )
    with pytest.raises(NetworkError) as refused:
        remove_swarm_networks(settings, client=engine)
    message = str(refused.value)
    assert "lh: jupyter-ada-py" in message and "unrelated" not in message
    assert "docker service rm jupyter-ada-py" in message and "nothing was removed" in message
    assert removed == []
