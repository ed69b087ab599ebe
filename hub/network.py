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
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from docker.client import DockerClient
from docker.errors import DockerException, NotFound

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

    def create_options(self) -> dict[str, Any]:
        """Keyword arguments of docker-py's ``networks.create`` for this network."""
        return {
            "driver": "bridge",
            "internal": not self.internet,
            "options": {
                "com.docker.network.bridge.name": self.bridge,
                "com.docker.network.bridge.enable_icc": "false",
            },
            "labels": {NETWORK_LABEL: "internet" if self.internet else "isolated"},
        }


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
            "`learnhub network apply` must run as root."
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


def _ensure_docker_network(client: Any, network: CourseNetwork) -> None:
    """Create the network, or check that the existing one isolates as planned."""
    wanted = network.create_options()
    try:
        existing = client.networks.get(network.name)
    except NotFound:
        client.networks.create(network.name, **wanted)
        log.info("course network created", extra={"network": network.name, "outcome": "created"})
        return
    attrs = existing.attrs
    options = attrs.get("Options") or {}
    problems = []
    if bool(attrs.get("Internal")) != wanted["internal"]:
        problems.append(f"internal should be {str(wanted['internal']).lower()}")
    for key, value in wanted["options"].items():
        if options.get(key) != value:
            problems.append(f"{key} should be {value}")
    if problems:
        raise NetworkError(
            f"Docker network {network.name!r} exists but does not isolate course containers "
            f"({'; '.join(problems)}). Stop its containers, remove it with "
            f"`docker network rm {network.name}`, and run `learnhub network apply` again."
        )


def apply_networks(settings: Settings, client: Any | None = None) -> list[CourseNetwork]:
    """Create LearnHub's course networks and write their firewall rules (root, idempotent)."""
    networks = plan_networks(settings)
    if not networks:
        return networks
    if client is None:
        client = DockerClient.from_env()
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
    """Remove the course networks of each base name and their firewall chains.

    Their containers must be gone first (Docker refuses to remove a network in use).
    """
    if client is None:
        client = DockerClient.from_env()
    for base in base_names:
        for network in (
            CourseNetwork(base, internet=False, host_ports=()),
            CourseNetwork(internet_network_name(base), internet=True, host_ports=()),
        ):
            for chain, *spec in jumps(network):
                while _iptables("-D", chain, *spec, check=False).returncode == 0:
                    pass
            for chain in (network.input_chain, network.egress_chain):
                if _iptables("-n", "-L", chain, check=False).returncode == 0:
                    _iptables("-F", chain)
                    _iptables("-X", chain)
            try:
                client.networks.get(network.name).remove()
            except NotFound:
                pass


def gateway_address(network: str, client: Any | None = None) -> str:
    """The host's address on ``network``: where course containers reach the Hub and exchange.

    A missing network is an error that says how to create it, never a guess: the Hub would
    otherwise bind an address nothing routes to.
    """
    try:
        if client is None:
            client = DockerClient.from_env()
        attrs = client.networks.get(network).attrs
    except NotFound:
        raise NetworkError(
            f"Docker network {network!r} does not exist: run `learnhub network apply` (as root) "
            "before starting the Hub."
        ) from None
    except DockerException as exc:
        raise NetworkError(f"Docker engine not reachable ({exc}); is dockerd running?") from exc
    for config in (attrs.get("IPAM") or {}).get("Config") or []:
        if config.get("Gateway"):
            return str(config["Gateway"])
    raise NetworkError(f"Docker network {network!r} has no gateway address")
