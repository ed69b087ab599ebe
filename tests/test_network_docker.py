"""Course containers are boxed in on the network: the attacks, on real containers.

A learner's code tries to reach another learner's server, a host service on a port that is
not the Hub's or the exchange's, and the Hub itself (which must keep working). Traffic goes
only to addresses on this machine: containers this test made and the host's own address on
their network. The rules for addresses elsewhere (metadata, private ranges) are read, in
tests/test_network.py and at the end of this module, never probed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from hub.docker_engine import engine_address
from hub.errors import LearnHubError
from hub.network import BLOCKED_DESTINATIONS, CourseNetwork, gateway_address, interface_ipv4
from tests.harness import ROOT, HubProcess, browser, wait_for_server

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

PASSWORD = "learnhub-demo"
OFFLINE_COURSE = "python-foundations"
INTERNET_COURSE = "algorithms-in-python"

PROBE = """
import json, socket, sys
results = {}
for name, host, port in json.loads(sys.argv[1]):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        results[name] = "open"
    except OSError as exc:
        results[name] = type(exc).__name__
    finally:
        s.close()
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def courses_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo courses, one of them allowed on the internet."""
    target = tmp_path_factory.mktemp("net-courses") / "courses"
    shutil.copytree(ROOT / "courses", target)
    path = target / INTERNET_COURSE / "course.yaml"
    data = yaml.safe_load(path.read_text())
    data["internet"] = True
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return target


@pytest.fixture(scope="module")
def host_listener() -> Iterator[int]:
    """A host service on all addresses, on a port that is neither the Hub's nor the exchange's."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", 0))  # the point: a careless host service on every address
    sock.listen(16)
    yield int(sock.getsockname()[1])
    sock.close()


def start_course(hub: HubProcess, user: str, course: str, engine: docker.DockerClient) -> Any:
    with browser(hub) as b:
        assert b.login(user, PASSWORD).status_code == 200
        response = b.spawn_course(user, course)
        assert response.status_code in (201, 202), response.text
        wait_for_server(hub, user, course)
    labels = [f"learnhub.user={user}", f"learnhub.course={course}", f"learnhub.prefix={hub.prefix}"]
    (container,) = engine.containers.list(filters={"label": labels})
    container.reload()
    return container


def network_of(container: Any) -> tuple[str, dict[str, Any]]:
    ((name, settings),) = container.attrs["NetworkSettings"]["Networks"].items()
    return name, settings


def probe(container: Any, targets: list[tuple[str, str, int]]) -> dict[str, str]:
    """Connect from inside ``container`` as its learner (uid 1000) would, from their code."""
    code, output = container.exec_run(
        ["python3", "-c", PROBE, json.dumps(targets)], user="1000:100"
    )
    assert code == 0, output.decode()
    return dict(json.loads(output.decode().strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def servers(docker_hub: HubProcess, engine: docker.DockerClient) -> dict[str, Any]:
    return {
        "learner": start_course(docker_hub, "demo-learner", OFFLINE_COURSE, engine),
        "instructor": start_course(docker_hub, "demo-instructor", OFFLINE_COURSE, engine),
        "internet": start_course(docker_hub, "demo-instructor", INTERNET_COURSE, engine),
    }


def test_course_containers_sit_on_learnhubs_isolated_networks(
    docker_hub: HubProcess, servers: dict[str, Any], engine: docker.DockerClient
) -> None:
    base = docker_hub.settings["spawner"]["network"]
    assert network_of(servers["learner"])[0] == base
    assert network_of(servers["instructor"])[0] == base
    assert network_of(servers["internet"])[0] == f"{base}-internet"
    isolated = engine.networks.get(base).attrs
    assert isolated["Internal"] is True  # no route out of the machine
    for name in (base, f"{base}-internet"):
        options = engine.networks.get(name).attrs["Options"]
        assert options["com.docker.network.bridge.enable_icc"] == "false"


@pytest.mark.parametrize("attacker", ["learner", "internet"])
def test_learner_code_cannot_reach_other_servers_or_host_services(
    docker_hub: HubProcess, servers: dict[str, Any], host_listener: int, attacker: str
) -> None:
    source = servers[attacker]
    gateway = network_of(source)[1]["Gateway"]
    # The Hub and the exchange listen on the host's address on the isolated network; course
    # servers on the internet network reach them there too (JUPYTERHUB_API_URL).
    hub_address = network_of(servers["learner"])[1]["Gateway"]
    victims = [
        (f"{role} server", network_of(c)[1]["IPAddress"], 8888)
        for role, c in servers.items()
        if c.id != source.id
    ]
    results = probe(
        source,
        [
            *victims,
            ("host service", gateway, host_listener),
            ("host service via hub address", hub_address, host_listener),
            ("proxy api", hub_address, int(docker_hub.settings["hub"]["proxy_api_port"])),
            ("hub api", hub_address, int(docker_hub.settings["hub"]["hub_port"])),
            ("exchange", hub_address, int(docker_hub.settings["hub"]["service_port"])),
        ],
    )
    for name, *_ in victims:
        assert results[name] != "open", results
    assert results["host service"] != "open", results
    assert results["host service via hub address"] != "open", results
    assert results["proxy api"] != "open", results
    # What a course server needs keeps working.
    assert results["hub api"] == "open", results
    assert results["exchange"] == "open", results


def test_internet_network_refuses_private_and_metadata_ranges_by_its_rules(
    docker_hub: HubProcess,
) -> None:
    """Read, not probed: the live DOCKER-USER rules of the internet network."""
    base = docker_hub.settings["spawner"]["network"]
    network = CourseNetwork(f"{base}-internet", internet=True, host_ports=())
    listing = subprocess.run(
        ["iptables", "-S", network.egress_chain], capture_output=True, text=True, check=True
    ).stdout
    for cidr in BLOCKED_DESTINATIONS:
        assert f"-A {network.egress_chain} -d {cidr} -j REJECT" in listing, listing
    forward = subprocess.run(
        ["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True, check=True
    ).stdout
    assert f"-i {network.bridge} -j {network.egress_chain}" in forward


def test_a_bridges_gateway_is_its_interfaces_address_when_ipam_omits_it(
    engine: docker.DockerClient,
) -> None:
    # Debian's docker.io 20.10 leaves the gateway out of the default bridge's IPAM config; the
    # Hub (hub_ip auto on `bridge`) and the stock benchmark hub then failed to start.
    attrs = engine.networks.get("bridge").attrs
    device = attrs["Options"]["com.docker.network.bridge.name"]
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", device],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert gateway_address("bridge", engine) == shown[3].split("/")[0]
    assert interface_ipv4("no-such-device") is None


def test_an_engine_that_refuses_a_request_is_not_called_unreachable() -> None:
    # The engine is there and answered: "cannot reach it, start Docker" would send the operator
    # the wrong way. A client speaking an API version newer than the engine's gets a real 400.
    too_new = docker.DockerClient(base_url=engine_address(), version="1.99")
    try:
        with pytest.raises(LearnHubError) as refused:
            gateway_address("bridge", too_new)
    finally:
        too_new.close()
    message = str(refused.value)
    assert message.startswith("Docker refused to describe network 'bridge' (HTTP 400): "), message
    assert "too new" in message and "cannot reach" not in message, message
