"""Network isolation of course containers: LearnHub's Docker networks and host firewall rules.

Course containers run code written by strangers. On Docker's default bridge they could reach
every port of every other learner's container, every host service bound to ``0.0.0.0`` and, in
a cloud, the instance metadata address. LearnHub therefore runs them on networks of its own:

- ``<network>`` (every course): an *internal* bridge with inter-container traffic off. It has
  no route out of the machine; containers reach only the host's address on it, and the host
  firewall lets through only the Hub API and the exchange port there.
- ``<network>-internet`` (courses whose ``course.yaml`` says ``internet: true``): the same, but
  with a route to the internet. Private, shared, loopback, link-local (metadata) and multicast
  destinations are refused in Docker's ``DOCKER-USER`` chain, so "the internet" never means
  the operator's own networks.

The plan (:func:`plan_networks`) and the firewall rules (:func:`input_rules`,
:func:`egress_rules`) are pure data, so tests read them without touching any address that is
not on this machine. :func:`apply_networks` makes the engine and the firewall match the plan; it
runs as root (``learnhub network apply``: the demo command, the test harness, and in production
a systemd ``ExecStartPre``) and is idempotent: each chain is flushed and written again, and the
jump into it is added only once.

On Docker Swarm (``spawner.backend: swarm``) the same two networks exist on every course node
(:func:`plan_swarm_networks`): Swarm-scoped *bridge* networks whose node-local part is a
config-only network on each node (``<network>-config``: LearnHub's bridge name, inter-container
traffic off). ``learnhub network apply`` makes the Swarm networks on a manager;
``learnhub network apply --swarm-node`` makes the config-only networks and the node's firewall
on every course node (:func:`apply_swarm_node`). A node where it never ran has no config-only
network, so Swarm rejects course servers there instead of running them unguarded. The node's
rules: only the Hub's host (``hub.hub_ip``) opens connections to a course server, whose
host-mode published port is otherwise open on every interface of the node
(:func:`swarm_server_rules`); a course server reaches the Hub API and the exchange on the Hub's
host, and beyond that the public internet if its course allows it, never private or link-local
addresses nor the node itself (:func:`swarm_egress_rules`, :func:`swarm_input_rules`).
Overlay networks were not chosen: an overlay has no switch for inter-container traffic (one per
course would let its members reach each other, across nodes, past the nodes' firewalls), and an
internal overlay has no way to the Hub on its host (docs/how-to/scale.md, "Network isolation
on Swarm").
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import logging
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from docker.errors import DockerException, NotFound

from hub.docker_engine import docker_client, docker_failure
from hub.errors import LearnHubError
from hub.settings import Settings

log = logging.getLogger("learnhub.network")

#: Docker's own networks: LearnHub neither creates nor firewalls them.
UNMANAGED = frozenset({"bridge", "host", "none"})

#: Destinations a course with internet access must still never reach: private (RFC 1918),
#: carrier-grade NAT, loopback, link-local (cloud metadata lives at 169.254.169.254),
#: "this network", benchmarking, multicast and reserved ranges.
BLOCKED_DESTINATIONS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)

#: Label on every network LearnHub creates.
NETWORK_LABEL = "learnhub.network"


class NetworkError(LearnHubError):
    """The course network cannot be set up or is not what LearnHub needs."""


@dataclass(frozen=True)
class CourseNetwork:
    """One Docker network for course containers and what its firewall allows."""

    name: str
    internet: bool
    #: TCP ports of the host that containers on this network may connect to.
    host_ports: tuple[int, ...]
    #: On Swarm: the Hub's host (``hub.hub_ip``), the one address that reaches course servers
    #: and that they reach for the Hub API and the exchange. Empty on one machine.
    hub_address: str = ""

    @property
    def bridge(self) -> str:
        """The Linux bridge interface (at most 15 characters, derived from the name)."""
        return "lh" + hashlib.sha256(self.name.encode()).hexdigest()[:10]

    @property
    def input_chain(self) -> str:
        """iptables chain for traffic from this network to the host itself."""
        return f"LHI-{self.bridge}"

    @property
    def egress_chain(self) -> str:
        """iptables chain (jumped to from DOCKER-USER) for traffic leaving the machine."""
        return f"LHF-{self.bridge}"

    @property
    def server_chain(self) -> str:
        """iptables chain (from DOCKER-USER) for connections *to* course servers (Swarm)."""
        return f"LHS-{self.bridge}"

    @property
    def relay_chain(self) -> str:
        """iptables chain (from OUTPUT) for connections the node itself opens to course servers:
        Docker's userland proxy relays published ports that way (Swarm)."""
        return f"LHO-{self.bridge}"

    @property
    def config_network(self) -> str:
        """On Swarm: the node-local config-only network that gives this network its bridge."""
        return f"{self.name}-config"

    @property
    def bridge_options(self) -> dict[str, str]:
        """The bridge driver's options that isolate it: LearnHub's bridge name (which its
        firewall rules name) and no traffic between containers. On one machine they are the
        network's own; on a Swarm node, its config-only network's."""
        return {
            "com.docker.network.bridge.name": self.bridge,
            "com.docker.network.bridge.enable_icc": "false",
        }

    def create_options(self) -> dict[str, Any]:
        """Keyword arguments of docker-py's ``networks.create`` for this network."""
        return {
            "driver": "bridge",
            "internal": not self.internet,
            "options": self.bridge_options,
            "labels": {NETWORK_LABEL: "internet" if self.internet else "isolated"},
        }


def _option_problems(found: dict[str, Any] | None, wanted: dict[str, str]) -> list[str]:
    """What an existing network's driver options lack of ``wanted``, as "key should be value"."""
    found = found or {}
    return [f"{key} should be {value}" for key, value in wanted.items() if found.get(key) != value]


def internet_network_name(network: str) -> str:
    """The sibling network of ``network`` for courses that may reach the internet."""
    return f"{network}-internet"


def is_managed(network: str) -> bool:
    """Whether LearnHub creates and firewalls ``network`` (not one of Docker's own)."""
    return network not in UNMANAGED


def plan_networks(settings: Settings) -> list[CourseNetwork]:
    """The networks the settings need: isolated, and the internet sibling; none if unmanaged."""
    name = settings.spawner.network
    if settings.spawner.backend != "docker" or not is_managed(name):
        return []
    ports = (settings.hub.hub_port, settings.hub.service_port)
    return [
        CourseNetwork(name, internet=False, host_ports=ports),
        CourseNetwork(internet_network_name(name), internet=True, host_ports=ports),
    ]


def input_rules(network: CourseNetwork) -> list[list[str]]:
    """Rules of the network's input chain: answers, the allowed host ports, nothing else.

    Refusals are REJECTs, not DROPs: a learner's code gets "connection refused" at once rather
    than hanging until a time-out.
    """
    chain = network.input_chain
    ports = ",".join(str(port) for port in network.host_ports)
    return [
        ["-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-A", chain, "-p", "tcp", "-m", "multiport", "--dports", ports, "-j", "ACCEPT"],
        ["-A", chain, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
        ["-A", chain, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
    ]


def egress_rules(network: CourseNetwork) -> list[list[str]]:
    """Rules of the network's egress chain: no private, link-local or multicast destination."""
    chain = network.egress_chain
    rules = [["-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"]]
    rules += [
        ["-A", chain, "-d", cidr, "-j", "REJECT", "--reject-with", "icmp-net-prohibited"]
        for cidr in BLOCKED_DESTINATIONS
    ]
    rules.append(["-A", chain, "-j", "RETURN"])
    return rules


def jumps(network: CourseNetwork) -> list[list[str]]:
    """The rules that send this network's traffic into its chains (without -A/-I)."""
    found = [["INPUT", "-i", network.bridge, "-j", network.input_chain]]
    if network.internet:
        found.append(["DOCKER-USER", "-i", network.bridge, "-j", network.egress_chain])
    return found


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables")
    if binary is None:
        raise NetworkError(
            "iptables is not installed: course containers cannot be isolated. Install it "
            "(apt-get install iptables) and run `learnhub network apply` again."
        )
    result = subprocess.run(
        [binary, "-w", *args], capture_output=True, text=True, check=False, timeout=30
    )
    if check and result.returncode != 0:
        raise NetworkError(
            f"iptables {' '.join(args)} failed: {result.stderr.strip()}. "
            "`learnhub network apply` and `remove` must run as root."
        )
    return result


def _write_chain(chain: str, rules: Iterable[list[str]]) -> None:
    """Create ``chain`` if needed, then make it hold exactly ``rules``."""
    if _iptables("-n", "-L", chain, check=False).returncode != 0:
        _iptables("-N", chain)
    _iptables("-F", chain)
    for rule in rules:
        _iptables(*rule)


def _ensure_jump(rule: Sequence[str]) -> None:
    """Insert ``rule`` at the top of its chain unless it is there already."""
    chain, *spec = rule
    if _iptables("-C", chain, *spec, check=False).returncode != 0:
        _iptables("-I", chain, "1", *spec)


def _docker_network_problems(attrs: dict[str, Any], network: CourseNetwork) -> list[str]:
    """What an existing single-host network lacks to isolate as ``network`` plans it."""
    wanted = network.create_options()
    problems = _option_problems(attrs.get("Options"), wanted["options"])
    if bool(attrs.get("Internal")) != wanted["internal"]:
        problems.insert(0, f"internal should be {str(wanted['internal']).lower()}")
    return problems


def _not_isolating(network: CourseNetwork, problems: list[str]) -> NetworkError:
    """The refusal of a single-host network that exists but does not isolate, with the remedy."""
    return NetworkError(
        f"Docker network {network.name!r} exists but does not isolate course containers "
        f"({'; '.join(problems)}). Stop its containers, remove it with "
        f"`docker network rm {network.name}`, and run `learnhub network apply` again."
    )


def _ensure_docker_network(client: Any, network: CourseNetwork) -> None:
    """Create the network, or check that the existing one isolates as planned."""
    try:
        existing = client.networks.get(network.name)
    except NotFound:
        client.networks.create(network.name, **network.create_options())
        log.info("course network created", extra={"network": network.name, "outcome": "created"})
        return
    problems = _docker_network_problems(existing.attrs, network)
    if problems:
        raise _not_isolating(network, problems)


def apply_networks(settings: Settings, client: Any | None = None) -> list[CourseNetwork]:
    """Create LearnHub's course networks and write their firewall rules (root, idempotent)."""
    networks = plan_networks(settings)
    if not networks:
        return networks
    if client is None:
        client = docker_client()
    for network in networks:
        _ensure_docker_network(client, network)
        _write_chain(network.input_chain, input_rules(network))
        if network.internet:
            _write_chain(network.egress_chain, egress_rules(network))
        for jump in jumps(network):
            _ensure_jump(jump)
        log.info(
            "course network firewalled",
            extra={
                "network": network.name,
                "bridge": network.bridge,
                "internet": network.internet,
                "host_ports": list(network.host_ports),
                "outcome": "applied",
            },
        )
    return networks


def remove_networks(base_names: Iterable[str], client: Any | None = None) -> None:
    """Remove the course networks of each base name and their firewall chains, whoever made
    them (the test harness's cleanup of its own prefixed networks; operators use
    :func:`remove`, which checks).

    Their containers must be gone first (Docker refuses to remove a network in use).
    """
    if client is None:
        client = docker_client()
    for base in base_names:
        for network in (
            CourseNetwork(base, internet=False, host_ports=()),
            CourseNetwork(internet_network_name(base), internet=True, host_ports=()),
        ):
            _remove_network(client, network.name)
            _remove_firewall(jumps(network), [network.input_chain, network.egress_chain])


def _missing(network: str) -> NetworkError:
    """A single-host course network that is not there, with the command that makes it."""
    return NetworkError(
        f"Docker network {network!r} does not exist: run `learnhub network apply` (as root) "
        "before starting the Hub."
    )


def gateway_address(network: str, client: Any | None = None) -> str:
    """The host's address on ``network``: where course containers reach the Hub and exchange.

    A missing network is an error that says how to create it, never a guess: the Hub would
    otherwise bind an address nothing routes to.
    """
    try:
        if client is None:
            client = docker_client()
        attrs = client.networks.get(network).attrs
    except NotFound:
        raise _missing(network) from None
    except DockerException as exc:
        raise docker_failure(exc, f"describe network {network!r}") from exc
    if attrs.get("Scope") == "swarm":
        raise NetworkError(
            f"Docker network {network!r} is a Swarm network, whose gateway differs on every "
            "node: set hub.hub_ip to the Hub host's address on the nodes' network."
        )
    for config in (attrs.get("IPAM") or {}).get("Config") or []:
        if config.get("Gateway"):
            return str(config["Gateway"])
    # Docker may leave the gateway out of a bridge's IPAM config (Debian's docker.io 20.10
    # does for the default `bridge`): it is then the address of the bridge's interface.
    if attrs.get("Driver") == "bridge":
        options = attrs.get("Options") or {}
        device = options.get("com.docker.network.bridge.name") or f"br-{attrs['Id'][:12]}"
        found = interface_ipv4(device)
        if found is not None:
            return found
    raise NetworkError(f"Docker network {network!r} has no gateway address")


def interface_ipv4(device: str) -> str | None:
    """The IPv4 address of this host's interface ``device``, or None (no such interface, or
    no IPv4 address on it)."""
    siocgifaddr = 0x8915  # <linux/sockios.h>
    request = struct.pack("256s", device.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), siocgifaddr, request)
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


# --- Docker Swarm -------------------------------------------------------------------------------


def swarm_hub_address(settings: Settings) -> str:
    """``hub.hub_ip`` as the one address of the Hub's host that course nodes let in and out.

    ``auto`` (the gateway of a network) means nothing on Swarm: every node has its own gateway.
    """
    value = settings.hub.hub_ip
    remedy = (
        f"hub.hub_ip is {value!r}: with spawner.backend swarm and LearnHub's network "
        f"{settings.spawner.network!r}, set it to the IPv4 address of the Hub's host on the "
        "nodes' network (e.g. `hub: {hub_ip: 10.0.0.10}`): course servers connect to it, and "
        "the nodes let only it reach their servers."
    )
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise NetworkError(remedy) from None
    if address.version != 4 or address.is_unspecified or address.is_loopback:
        raise NetworkError(remedy)
    return str(address)


def plan_swarm_networks(settings: Settings) -> list[CourseNetwork]:
    """The Swarm networks the settings need (isolated and internet); none if unmanaged."""
    name = settings.spawner.network
    if settings.spawner.backend != "swarm" or not is_managed(name):
        return []
    hub = swarm_hub_address(settings)
    ports = (settings.hub.hub_port, settings.hub.service_port)
    return [
        CourseNetwork(name, internet=False, host_ports=ports, hub_address=hub),
        CourseNetwork(
            internet_network_name(name), internet=True, host_ports=ports, hub_address=hub
        ),
    ]


def _reject(chain: str) -> list[list[str]]:
    """Refuse the rest at once ("connection refused"), rather than let it hang."""
    return [
        ["-A", chain, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
        ["-A", chain, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
    ]


def swarm_server_rules(network: CourseNetwork) -> list[list[str]]:
    """Connections into the network's bridge: only the Hub's host opens them.

    A server's port is published in host mode, so Docker forwards it from every interface of
    the node; other members' servers, other containers of the node and every other machine are
    refused here, after Docker's DNAT and before its own accept rules.
    """
    chain = network.server_chain
    return [
        ["-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
        ["-A", chain, "-s", f"{network.hub_address}/32", "-p", "tcp", "-j", "RETURN"],
        *_reject(chain),
    ]


def swarm_relay_rules(network: CourseNetwork) -> list[list[str]]:
    """Connections the node opens into the network's bridge: only from the Hub's address.

    Docker does not NAT a published port for clients on the node's other bridges (its
    ``-i docker0 -j RETURN`` rules): its userland proxy accepts them on the node and opens a
    new connection from the bridge's gateway, which never passes ``DOCKER-USER``. Refusing that
    second connection here closes the stranger's one at once.
    """
    chain = network.relay_chain
    return [
        ["-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
        ["-A", chain, "-s", f"{network.hub_address}/32", "-p", "tcp", "-j", "RETURN"],
        *_reject(chain),
    ]


def swarm_egress_rules(network: CourseNetwork) -> list[list[str]]:
    """Connections out of the network's bridge: the Hub API and the exchange on the Hub's host;
    then, with internet, public addresses only; without, nothing."""
    chain = network.egress_chain
    ports = ",".join(str(port) for port in network.host_ports)
    rules = [
        ["-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
        ["-A", chain, "-d", f"{network.hub_address}/32", "-p", "tcp", "-m", "multiport",
         "--dports", ports, "-j", "RETURN"],
    ]  # fmt: skip
    if not network.internet:
        return rules + _reject(chain)
    rules += [
        ["-A", chain, "-d", cidr, "-j", "REJECT", "--reject-with", "icmp-net-prohibited"]
        for cidr in BLOCKED_DESTINATIONS
    ]
    rules.append(["-A", chain, "-j", "RETURN"])
    return rules


def swarm_input_rules(network: CourseNetwork) -> list[list[str]]:
    """Connections from the network to the node itself: only the Hub's ports at the Hub's
    address (when the Hub runs on this node); the node's other services stay out of reach."""
    chain = network.input_chain
    ports = ",".join(str(port) for port in network.host_ports)
    return [
        ["-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-A", chain, "-d", f"{network.hub_address}/32", "-p", "tcp", "-m", "multiport",
         "--dports", ports, "-j", "ACCEPT"],
        *_reject(chain),
    ]  # fmt: skip


def swarm_jumps(network: CourseNetwork) -> list[list[str]]:
    """The rules that send a course node's traffic of this network into its chains."""
    return [
        ["INPUT", "-i", network.bridge, "-j", network.input_chain],
        ["OUTPUT", "-o", network.bridge, "-j", network.relay_chain],
        ["DOCKER-USER", "-i", network.bridge, "-j", network.egress_chain],
        ["DOCKER-USER", "-o", network.bridge, "-j", network.server_chain],
    ]


def _create_network(client: Any, body: dict[str, Any]) -> None:
    """``POST /networks/create`` with fields docker-py's ``create_network`` lacks
    (``ConfigOnly``, ``ConfigFrom``; Engine API 1.30+)."""
    api = client.api
    api._result(api._post_json(api._url("/networks/create"), data=body), True)


def _swarm_network_problem(attrs: dict[str, Any], network: CourseNetwork) -> str:
    """Why an existing network is not LearnHub's Swarm network ``network`` ("" if it is): a
    Swarm-scoped bridge whose node-local part is LearnHub's config-only network."""
    config_from = (attrs.get("ConfigFrom") or {}).get("Network")
    if attrs.get("Scope") == "swarm" and config_from == network.config_network:
        return ""
    return (
        f"scope {attrs.get('Scope')!r}, config from {config_from!r}; wanted swarm, "
        f"{network.config_network!r}"
    )


def _not_learnhubs_swarm_network(network: CourseNetwork, problem: str) -> NetworkError:
    """The refusal of a network by the name of a Swarm network that is not LearnHub's."""
    return NetworkError(
        f"Docker network {network.name!r} exists but is not LearnHub's Swarm network "
        f"({problem}). Remove its services, remove it with `docker network rm {network.name}`, "
        "and run `learnhub network apply` again on a manager."
    )


def _ensure_swarm_network(client: Any, network: CourseNetwork) -> None:
    """Create the Swarm-scoped bridge network, or check that the existing one is LearnHub's."""
    try:
        attrs = client.networks.get(network.name).attrs
    except NotFound:
        _create_network(
            client,
            {
                "Name": network.name,
                "Driver": "bridge",
                "Scope": "swarm",
                "ConfigFrom": {"Network": network.config_network},
                "CheckDuplicate": True,
                # No labels, options or IPAM: Docker refuses them beside ConfigFrom.
            },
        )
        log.info("swarm course network created", extra={"network": network.name})
        return
    problem = _swarm_network_problem(attrs, network)
    if problem:
        raise _not_learnhubs_swarm_network(network, problem)


def apply_swarm_networks(settings: Settings, client: Any | None = None) -> list[CourseNetwork]:
    """On a Swarm manager: create the Swarm networks course servers join (idempotent)."""
    networks = plan_swarm_networks(settings)
    if not networks:
        return networks
    if client is None:
        client = docker_client()
    try:
        for network in networks:
            _ensure_swarm_network(client, network)
    except DockerException as exc:
        raise NetworkError(
            f"the Swarm networks could not be created ({exc}): run `learnhub network apply` "
            "where the Docker engine is a Swarm manager (the Hub's host), and `learnhub network "
            "apply --swarm-node` as root on every course node."
        ) from exc
    return networks


def _ensure_config_network(client: Any, network: CourseNetwork) -> None:
    """Create the node's config-only network, or check that the existing one isolates."""
    options = network.bridge_options
    try:
        attrs = client.networks.get(network.config_network).attrs
    except NotFound:
        _create_network(
            client,
            {
                "Name": network.config_network,
                "Driver": "bridge",
                "ConfigOnly": True,
                "CheckDuplicate": True,
                "Options": options,
                "Labels": {NETWORK_LABEL: "swarm-node"},
            },
        )
        log.info("swarm node network created", extra={"network": network.config_network})
        return
    problems = _option_problems(attrs.get("Options"), options)
    if not attrs.get("ConfigOnly"):
        problems.append("it should be config-only")
    if problems:
        raise NetworkError(
            f"Docker network {network.config_network!r} on this node exists but does not isolate "
            f"course servers ({'; '.join(problems)}). Remove it with `docker network rm "
            f"{network.config_network}` (after `docker network rm {network.name}` on a manager), "
            "then run `learnhub network apply` on a manager and `learnhub network apply "
            "--swarm-node` here."
        )


def apply_swarm_node(settings: Settings, client: Any | None = None) -> list[CourseNetwork]:
    """On a course node, as root: its config-only networks and its firewall (idempotent).

    Run it on every node that may run course servers, and again at every boot before Docker
    starts tasks (the rules live in the kernel, the networks in Docker's state).
    """
    if settings.spawner.backend != "swarm":
        raise NetworkError(
            "`learnhub network apply --swarm-node` is for spawner.backend swarm; with "
            f"{settings.spawner.backend!r} run `learnhub network apply`."
        )
    networks = plan_swarm_networks(settings)
    if not networks:
        return networks
    if client is None:
        client = docker_client()
    for network in networks:
        try:
            _ensure_config_network(client, network)
        except DockerException as exc:
            raise NetworkError(
                f"Docker on this node did not create {network.config_network!r} ({exc}); is "
                "dockerd running, and is this shell root?"
            ) from exc
        _write_chain(network.server_chain, swarm_server_rules(network))
        _write_chain(network.egress_chain, swarm_egress_rules(network))
        _write_chain(network.input_chain, swarm_input_rules(network))
        _write_chain(network.relay_chain, swarm_relay_rules(network))
        for jump in swarm_jumps(network):
            _ensure_jump(jump)
        log.info(
            "swarm node firewalled",
            extra={
                "network": network.name,
                "bridge": network.bridge,
                "internet": network.internet,
                "hub": network.hub_address,
                "outcome": "applied",
            },
        )
    return networks


def apply(settings: Settings, *, swarm_node: bool = False) -> list[CourseNetwork]:
    """What ``learnhub network apply [--swarm-node]`` does for the settings' backend."""
    if swarm_node:
        return apply_swarm_node(settings)
    if settings.spawner.backend == "swarm":
        return apply_swarm_networks(settings)
    return apply_networks(settings)


def describe(network: CourseNetwork, *, swarm_node: bool = False) -> str:
    """One line for the operator: what a network lets its course servers do."""
    ports = ", ".join(str(port) for port in network.host_ports)
    if not network.hub_address:
        reach = "internet, no private addresses" if network.internet else "no route out"
        return (
            f"{network.name} ({network.bridge}): {reach}; host ports {ports}; containers isolated"
        )
    reach = "internet, no private addresses" if network.internet else "no internet"
    where = "this node's firewall" if swarm_node else "Swarm network"
    hub = network.hub_address
    return (
        f"{network.name} ({where}, bridge {network.bridge}): reaches {hub} ports {ports}, "
        f"{reach}; reached only from {hub}"
    )


# --- At the Hub's start -------------------------------------------------------------------------

#: Seconds the start check waits for the Docker engine: a hung engine stops the start with a
#: message, not forever (docker-py's default is 60 s per call).
DOCKER_TIMEOUT = 20


def _missing_swarm(network: str) -> NetworkError:
    """A Swarm course network that is not there, with the commands that make it."""
    return NetworkError(
        f"LearnHub's Swarm network {network!r} does not exist: run `learnhub network apply` "
        "on a manager (as root), and `learnhub network apply --swarm-node` as root on every "
        "course node, before starting the Hub."
    )


def check_course_networks(settings: Settings, client: Any | None = None) -> list[CourseNetwork]:
    """Refuse to start the Hub without the course networks the settings need, or with networks
    of those names that do not isolate (a :class:`NetworkError` naming the remedy).

    Without it a missing network surfaced at the first spawn, as one learner's failed server,
    and a network made by hand (``docker network create learnhub``) ran strangers' code
    unisolated. It reads, never changes: the Hub runs unprivileged where it can, and the
    operator's ``learnhub network apply`` owns the networks. ``jupyterhub_config.py`` calls it
    while JupyterHub loads its config, before the Hub serves anything, so these blocking calls
    (one per network) hold up nothing; it must not be called from the running Hub's handlers.
    """
    swarm = settings.spawner.backend == "swarm"
    networks = plan_swarm_networks(settings) if swarm else plan_networks(settings)
    missing = _missing_swarm if swarm else _missing
    if not networks:
        return networks
    own_client = client is None
    try:
        if client is None:
            client = docker_client(timeout=DOCKER_TIMEOUT)
        for network in networks:
            try:
                attrs = client.networks.get(network.name).attrs
            except NotFound:
                raise missing(network.name) from None
            if swarm:
                problem = _swarm_network_problem(attrs, network)
                if problem:
                    raise _not_learnhubs_swarm_network(network, problem)
            else:
                problems = _docker_network_problems(attrs, network)
                if problems:
                    raise _not_isolating(network, problems)
    except DockerException as exc:
        raise docker_failure(exc, "describe the course networks") from exc
    finally:
        if own_client and client is not None:
            client.close()
    return networks


# --- Undo: `learnhub network remove` ------------------------------------------------------------


@dataclass
class Removal:
    """What ``learnhub network remove`` did, one line per thing, for the operator."""

    removed: list[str] = field(default_factory=list)
    #: Things by LearnHub's names that LearnHub did not make, and so left alone.
    kept: list[str] = field(default_factory=list)


def _attached_containers(client: Any, name: str) -> list[str]:
    """The containers this engine has on network ``name`` (none when it is not here)."""
    try:
        attrs = client.networks.get(name).attrs
    except NotFound:
        return []
    return sorted(
        str(endpoint.get("Name") or container_id[:12])
        for container_id, endpoint in (attrs.get("Containers") or {}).items()
    )


def _services_on(client: Any, name: str) -> list[str]:
    """The Swarm services whose tasks join network ``name`` (by name or id)."""
    try:
        network_id = client.networks.get(name).id
    except NotFound:
        return []
    found = []
    for service in client.services.list():
        spec = service.attrs.get("Spec") or {}
        attached = (spec.get("TaskTemplate") or {}).get("Networks") or spec.get("Networks") or []
        if {entry.get("Target") for entry in attached} & {name, network_id}:
            found.append(str(spec.get("Name") or service.id))
    return sorted(found)


def _refuse_in_use(in_use: dict[str, list[str]], what: str, stop: str) -> None:
    """Stop a removal before it changes anything while ``what`` (containers or services) still
    sit on a network: removing their firewall would leave strangers' code unguarded."""
    if not in_use:
        return
    where = "; ".join(f"{name}: {', '.join(users)}" for name, users in in_use.items())
    everyone = " ".join(user for users in in_use.values() for user in users)
    raise NetworkError(
        f"LearnHub's course networks still have {what} ({where}); nothing was removed, since "
        f"their firewall would go with the networks. Stop them first (the Hub's admin page "
        f"stops course servers, or `{stop} {everyone}`), then run `learnhub network remove` "
        "again."
    )


def _remove_firewall(network_jumps: Iterable[list[str]], chains: Iterable[str]) -> list[str]:
    """Delete exactly these jump rules, then these chains; say what went. Nothing else is
    touched: a rule is deleted by its whole specification (``iptables -D``), and a chain that
    is not there is skipped."""
    done = []
    for chain, *spec in network_jumps:
        # The loop also clears a jump that an older apply added twice.
        while _iptables("-D", chain, *spec, check=False).returncode == 0:
            done.append(f"firewall rule removed: -A {chain} {' '.join(spec)}")
    for chain in chains:
        if _iptables("-n", "-L", chain, check=False).returncode == 0:
            _iptables("-F", chain)
            _iptables("-X", chain)
            done.append(f"firewall chain removed: {chain}")
    return done


def _remove_network(client: Any, name: str) -> list[str]:
    """Remove Docker network ``name`` if it is here; say so."""
    try:
        client.networks.get(name).remove()
    except NotFound:
        return []
    except DockerException as exc:
        raise NetworkError(
            f"Docker did not remove network {name!r} ({exc}); its firewall rules were kept. "
            "Stop what uses it and run `learnhub network remove` again."
        ) from exc
    return [f"Docker network removed: {name}"]


def _labelled(client: Any, name: str, label: str) -> bool | None:
    """Whether network ``name`` carries LearnHub's ``label`` (None when it is not here)."""
    try:
        attrs = client.networks.get(name).attrs
    except NotFound:
        return None
    return bool((attrs.get("Labels") or {}).get(NETWORK_LABEL) == label)


def _removal_of(
    client: Any,
    networks: Iterable[tuple[str, bool | None]],
    firewall: Iterable[tuple[list[list[str]], list[str]]],
    *,
    not_ours: str,
) -> Removal:
    """Remove the networks that are LearnHub's (``True``), name the others (``False``) in
    ``kept`` with the reason ``not_ours``, then remove the firewall: jumps, then chains.
    Networks first: should Docker refuse one, the rules stay and nothing runs unguarded."""
    removal = Removal()
    for name, ours in networks:
        if ours:
            removal.removed += _remove_network(client, name)
        elif ours is not None:
            removal.kept.append(f"Docker network {name}: {not_ours}, left alone")
    for network_jumps, chains in firewall:
        removal.removed += _remove_firewall(network_jumps, chains)
    log.info(
        "course networks removed",
        extra={
            "removed": removal.removed,
            "kept": removal.kept,
            "outcome": "removed" if removal.removed else "nothing to remove",
        },
    )
    return removal


def remove_single_host(settings: Settings, client: Any | None = None) -> Removal:
    """Undo :func:`apply_networks`: the course networks (if no container is on them) and
    their chains and jumps; a network of the same name that LearnHub did not make stays."""
    networks = plan_networks(settings)
    if not networks:
        return Removal()
    if client is None:
        client = docker_client()
    in_use = {n.name: found for n in networks if (found := _attached_containers(client, n.name))}
    _refuse_in_use(in_use, "containers attached", "docker stop")
    labels = {n.name: n.create_options()["labels"][NETWORK_LABEL] for n in networks}
    return _removal_of(
        client,
        [(name, _labelled(client, name, label)) for name, label in labels.items()],
        [(jumps(n), [n.input_chain, n.egress_chain]) for n in networks],
        not_ours=f"not made by LearnHub (no {NETWORK_LABEL} label)",
    )


def remove_swarm_networks(settings: Settings, client: Any | None = None) -> Removal:
    """On a Swarm manager, undo :func:`apply_swarm_networks`: the Swarm networks, if no
    service joins them; a network of the same name that is not LearnHub's stays."""
    networks = plan_swarm_networks(settings)
    if not networks:
        return Removal()
    if client is None:
        client = docker_client()
    try:
        in_use = {n.name: found for n in networks if (found := _services_on(client, n.name))}
    except DockerException as exc:
        raise NetworkError(
            f"the Swarm's services could not be listed ({exc}): run `learnhub network remove` "
            "where the Docker engine is a Swarm manager (the Hub's host)."
        ) from exc
    _refuse_in_use(in_use, "services", "docker service rm")
    here: list[tuple[str, bool | None]] = []
    for network in networks:
        try:
            attrs = client.networks.get(network.name).attrs
        except NotFound:
            continue
        here.append((network.name, not _swarm_network_problem(attrs, network)))
    return _removal_of(client, here, [], not_ours="not LearnHub's Swarm network")


def remove_swarm_node(settings: Settings, client: Any | None = None) -> Removal:
    """On a course node, as root, undo :func:`apply_swarm_node`: its config-only networks (if
    no course server runs on the node) and its chains and jumps."""
    if settings.spawner.backend != "swarm":
        raise NetworkError(
            "`learnhub network remove --swarm-node` is for spawner.backend swarm; with "
            f"{settings.spawner.backend!r} run `learnhub network remove`."
        )
    networks = plan_swarm_networks(settings)
    if not networks:
        return Removal()
    if client is None:
        client = docker_client()
    # A course server on this node sits on the Swarm network's local part, not on the
    # config-only network (which never has containers).
    in_use = {n.name: found for n in networks if (found := _attached_containers(client, n.name))}
    _refuse_in_use(in_use, "course servers on this node", "docker stop")
    return _removal_of(
        client,
        [(n.config_network, _labelled(client, n.config_network, "swarm-node")) for n in networks],
        [
            (swarm_jumps(n), [n.server_chain, n.egress_chain, n.input_chain, n.relay_chain])
            for n in networks
        ],
        not_ours=f"not made by LearnHub (no {NETWORK_LABEL}=swarm-node label)",
    )


def remove(settings: Settings, *, swarm_node: bool = False) -> Removal:
    """What ``learnhub network remove [--swarm-node]`` does: undo ``learnhub network apply``
    with the same flag and settings (idempotent; never touches what LearnHub did not make)."""
    try:
        if swarm_node:
            return remove_swarm_node(settings)
        if settings.spawner.backend == "swarm":
            return remove_swarm_networks(settings)
        return remove_single_host(settings)
    except DockerException as exc:
        raise docker_failure(exc, "remove LearnHub's networks") from exc
