"""The platform on a real Docker Swarm: the host's engine as manager, a Docker-in-Docker worker.

One hub (JupyterHub + proxy + LearnHub service, `spawner.backend: swarm`, Stripe through the
loopback stand-in) places every course server on the worker by a node label. A learner buys the
course with genuinely signed webhook events, launches it on the worker (materials from the course
image, no host bind mount), edits a file that survives a restart on the same node (home
affinity), fetches and submits an assignment through the exchange, is autograded in a sandbox,
and a refund stops the server. The spawn timings are printed for docs/how-to/scale.md.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import flows
from harness.stripe_standin import API_KEY, StripeStandIn
from hub.network import BLOCKED_DESTINATIONS, CourseNetwork
from tests.harness import (
    Browser,
    HubProcess,
    assignments_api,
    browser,
    container_logs,
    hub_settings,
    members,
    open_course,
    put_reference_solution,
    run_learnhub,
    running,
    server_stopped,
    stop_server,
)
from tests.swarm.conftest import (
    COURSE,
    COURSE_IMAGE,
    COURSES_LABEL,
    MANAGER_ADDRESS,
    Registry,
    SandboxWatcher,
    Swarm,
    Worker,
    docker,
    sandbox_leftovers,
    wait_until,
)

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("swarm")]

PRICE = 4900
ASSIGNMENT = "ps1-data-model"
LEARNER = "mae-swarm"
PASSWORD = "distributed-systems-42"
WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)
#: LearnHub's Swarm network of the test (and `<it>-internet`): one fixed name, because its
#: node-local part stays in the worker's kept image volume and is reused, as on a real node.
SWARM_NETWORK = "learnhub-swarmtest"


@pytest.fixture(scope="module")
def standin() -> Iterator[StripeStandIn]:
    server = StripeStandIn().start()
    yield server
    server.stop()


def remove_services(prefix: str) -> None:
    ids = docker("service", "ls", "-q", "--filter", f"label=learnhub.prefix={prefix}").split()
    if ids:
        docker("service", "rm", *ids)


@pytest.fixture(scope="module")
def swarm_hub(
    swarm: Swarm,
    swarm_worker: Worker,
    swarm_course_image: str,
    swarm_courses: Path,
    standin: StripeStandIn,
    docker_prefix_cleanup: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HubProcess]:
    """A hub whose course servers are Swarm services placed on the worker."""
    workdir = tmp_path_factory.mktemp("swarm-hub")
    settings = hub_settings(workdir, courses_dir=swarm_courses)
    settings["spawner"]["backend"] = "swarm"
    # The Hub API and the exchange listen on docker0's gateway, which the worker routes to; the
    # worker lets only that address reach its course servers.
    settings["hub"]["hub_ip"] = MANAGER_ADDRESS
    settings["spawner"]["network"] = SWARM_NETWORK
    settings["spawner"]["swarm"] = {
        "course_image": COURSE_IMAGE,
        "constraints": [f"node.labels.{COURSES_LABEL}==true"],
    }
    settings["payments"] = {"provider": "stripe", "stripe_api_base": standin.url}
    standin.record_sessions_in = f"sqlite:///{workdir / 'var' / 'service' / 'learnhub.sqlite'}"
    hub = HubProcess(
        workdir=workdir,
        settings=settings,
        extra_env={
            "LEARNHUB_STRIPE_SECRET_KEY": API_KEY,
            "LEARNHUB_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        },
    )
    try:
        # The Hub refuses to start without its Swarm networks: the operator's first commands.
        hub.prepare()
        apply_swarm_networks(hub, swarm_worker)
        started = time.monotonic()
        with running(hub):
            print(f"swarm hub started in {time.monotonic() - started:.1f} s")
            try:
                yield hub
            finally:
                print("===== swarm hub log =====\n" + hub.log_tail(150))
                print(container_logs(hub.prefix))
    finally:
        remove_services(hub.prefix)
        # A removed service's container goes a moment later; its volume only after it.
        wait_until(
            lambda: (
                not swarm_worker.docker(
                    "ps", "-aq", "--filter", f"label=learnhub.prefix={hub.prefix}"
                )
            ),
            "the worker's course containers to go",
        )
        for volume in swarm_worker.docker("volume", "ls", "-q").split():
            if volume.startswith(hub.prefix):
                swarm_worker.docker("volume", "rm", "-f", volume)
        # Gone with the swarm when this session made it; else removed here (their services are).
        subprocess.run(
            ["docker", "network", "rm", SWARM_NETWORK, f"{SWARM_NETWORK}-internet"],
            capture_output=True,
            check=False,
        )


def network_on_node(hub: HubProcess, worker: Worker, command: str) -> Any:
    """`learnhub network <command> --swarm-node` as root on the course node."""
    cli = [sys.executable, "-m", "hub.cli", "network", command, "--swarm-node"]
    return worker.run_on_node(cli, hub.env(), hub.workdir)


def apply_swarm_networks(hub: HubProcess, worker: Worker) -> None:
    """What the operator runs: `learnhub network apply` on the manager (the Swarm networks),
    and `learnhub network apply --swarm-node` on the course node (its networks and firewall)."""
    manager = run_learnhub(hub, "network", "apply")
    assert manager.returncode == 0, manager.stderr
    node = network_on_node(hub, worker, "apply")
    assert node.returncode == 0, node.stderr


def node_rules(worker: Worker) -> list[str]:
    """The node's rules in the chains LearnHub jumps from that name a bridge of the test's
    course networks (Docker's own rules for a bridge are in other chains)."""
    bridges = {
        CourseNetwork(name, internet=False, host_ports=()).bridge
        for name in (SWARM_NETWORK, f"{SWARM_NETWORK}-internet")
    }
    return [
        line
        for chain in ("INPUT", "OUTPUT", "DOCKER-USER")
        for line in docker("exec", worker.container, "iptables", "-S", chain).splitlines()
        if bridges & set(line.split())
    ]


def assert_remove_refused_while_serving(hub: HubProcess, worker: Worker) -> None:
    """`learnhub network remove` while the learner's server runs: the manager names its
    service, the node its container, and neither removes anything."""
    service = docker(
        "service", "ls", "--format", "{{.Name}}", "--filter", f"label=learnhub.prefix={hub.prefix}",
        "--filter", f"label=learnhub.user={LEARNER}",
    )  # fmt: skip
    rules = node_rules(worker)
    manager = run_learnhub(hub, "network", "remove")
    assert manager.returncode == 2, manager.stdout
    assert f"{SWARM_NETWORK}: " in manager.stderr and service in manager.stderr, manager.stderr
    assert "docker service rm " in manager.stderr and "nothing was removed" in manager.stderr
    node = network_on_node(hub, worker, "remove")
    assert node.returncode == 2, node.stdout
    assert f"{SWARM_NETWORK}: " in node.stderr, node.stderr
    assert f"{service}." in node.stderr  # the task's container
    assert "nothing was removed" in node.stderr
    assert node_rules(worker) == rules and len(rules) == 8, rules
    assert SWARM_NETWORK in docker("network", "ls", "--format", "{{.Name}}").split()


def until_done(run: Callable[[], subprocess.CompletedProcess[str]], what: str) -> str:
    """Run ``run`` until it succeeds; everything it printed. Swarm forgets a removed service's
    tasks, and a node their containers and its local part of their network, a moment after the
    service goes; until then removal is refused and no rule is removed (seen: the node's first
    run, right after the refund)."""
    printed: list[str] = []

    def done() -> bool:
        result = run()
        printed.append(result.stdout + result.stderr)
        return result.returncode == 0

    wait_until(done, what)
    print(f"{what}: done on attempt {len(printed)}")
    return "".join(printed)


def assert_removed(hub: HubProcess, worker: Worker) -> None:
    """With no server left, `learnhub network remove` on the manager and `--swarm-node` on
    the node take away the networks, the chains and their jumps; once is enough."""
    manager = until_done(lambda: run_learnhub(hub, "network", "remove"), "network remove")
    for name in (SWARM_NETWORK, f"{SWARM_NETWORK}-internet"):
        assert f"Docker network removed: {name}\n" in manager, manager
    assert "--swarm-node` as root on every course node" in manager
    node = until_done(lambda: network_on_node(hub, worker, "remove"), "remove --swarm-node")
    assert f"Docker network removed: {SWARM_NETWORK}-config\n" in node, node
    assert node_rules(worker) == []
    configs = worker.docker("network", "ls", "--format", "{{.Name}}").split()
    assert f"{SWARM_NETWORK}-config" not in configs, configs
    again = network_on_node(hub, worker, "remove")
    assert again.returncode == 0 and again.stdout.startswith("nothing to remove"), again


def deliver(hub: HubProcess, events: list[dict[str, Any]]) -> None:
    flows.deliver(hub, events, WEBHOOK_SECRET)


def in_group(hub: HubProcess) -> bool:
    return LEARNER in members(hub, f"course-{COURSE}")


def service_task(hub: HubProcess) -> dict[str, Any]:
    """The running task of the learner's course service (node, ports, state)."""
    (service,) = docker(
        "service", "ls", "-q", "--filter", f"label=learnhub.prefix={hub.prefix}",
        "--filter", f"label=learnhub.user={LEARNER}",
    ).split()  # fmt: skip
    tasks = docker("service", "ps", "-q", "--filter", "desired-state=running", service).split()
    (task,) = tasks
    found: dict[str, Any] = json.loads(docker("inspect", task))[0]
    return found


def launch(b: Browser, hub: HubProcess) -> tuple[str, float]:
    """Start the course server; its URL and the seconds from request to ready."""
    started = time.monotonic()
    url = open_course(b, hub, LEARNER, COURSE, timeout=120)
    return url, time.monotonic() - started


def assignments(b: Browser, url: str, action: str) -> list[dict[str, Any]]:
    return assignments_api(b, url, COURSE, ASSIGNMENT, action)


def assert_graded_in_swarm_jobs(watcher: SandboxWatcher, worker: Worker) -> None:
    """The submission ran in a Swarm job on the worker, with the sandbox's limits and a network
    of its own that leads nowhere; nothing of it is left."""
    jobs = watcher.seen()
    assert jobs, "autograde ran no Swarm sandbox job (it ran on the hub host's engine)"
    for job in jobs:
        spec = job.service["Spec"]
        # One task, never restarted (see grader/swarm_sandbox.py for why not `replicated-job`).
        assert spec["Mode"] == {"Replicated": {"Replicas": 1}}, spec["Mode"]
        template = spec["TaskTemplate"]
        assert template["RestartPolicy"]["Condition"] == "none"
        container = template["ContainerSpec"]
        assert container["Image"].startswith(COURSE_IMAGE.format(course=COURSE))
        assert container["ReadOnly"] is True and container["CapabilityDrop"] == ["ALL"]
        assert not [m for m in container.get("Mounts", []) if m["Type"] in ("bind", "volume")]
        # The course server's memory (the sandbox's default), one core, the default pids.
        limits = template["Resources"]["Limits"]
        assert limits == {"MemoryBytes": 1024**3, "NanoCPUs": 10**9, "Pids": 128}, limits
        assert job.task is not None and job.task["NodeID"] == worker.node
        # Ran, and was never seen failing: the runner lingers after its result until the
        # service goes (see grader/swarm_sandbox.py).
        assert "running" in job.states, job.states
        assert not {"failed", "rejected", "complete"} & set(job.states), job.states
        # Its own internal overlay network: no gateway out, no other member.
        assert job.network is not None
        assert job.network["Driver"] == "overlay" and job.network["Internal"] is True
        assert job.network["Name"] == spec["Name"]
        # What the worker's engine made of it.
        assert job.container is not None, "the sandbox container was not seen on the worker"
        host = job.container["HostConfig"]
        assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (1024**3, 10**9, 128)
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
        assert list(job.container["NetworkSettings"]["Networks"]) == [spec["Name"]]
    wait_until(lambda: not any(sandbox_leftovers(worker).values()), "the sandbox jobs to go")


#: Connects to each target and asks for a page: "answered" (it got bytes back), "silent" (a
#: listener that accepts and says nothing), "closed" (accepted, then closed before a byte:
#: what Docker's userland proxy does when its own connection to the server is refused), or
#: the error.
PROBE = """
import json, socket, sys
results = {}
for name, host, port in json.loads(sys.argv[1]):
    s = socket.socket()
    s.settimeout(3)
    connected = False
    try:
        s.connect((host, port))
        connected = True
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        results[name] = "answered" if s.recv(1) else "closed"
    except TimeoutError:
        results[name] = "silent" if connected else "TimeoutError"
    except OSError as exc:
        results[name] = type(exc).__name__
    finally:
        s.close()
print(json.dumps(results))
"""
#: What a learner's code gets when LearnHub's rules refuse it (at once, never a time-out).
REFUSED = {"ConnectionRefusedError", "ConnectionResetError", "closed"}


def probe_args(targets: dict[str, tuple[str, int]]) -> list[str]:
    return ["-c", PROBE, json.dumps([[name, *where] for name, where in targets.items()])]


def probe_in(worker: Worker, container: str, targets: dict[str, tuple[str, int]]) -> Any:
    """Connect from inside a container of the worker, as uid 1000; each target's outcome."""
    output = worker.docker("exec", "-u", "1000", container, "python3", *probe_args(targets))
    return json.loads(output.splitlines()[-1])


def probe_from_member(hub: HubProcess, worker: Worker, targets: dict[str, tuple[str, int]]) -> Any:
    """Another member's server: a service on the course network on the worker, as uid 1000."""
    name = f"{hub.prefix}-member"
    docker(
        "service", "create", "--detach", "--name", name,
        "--label", f"learnhub.prefix={hub.prefix}", "--network", SWARM_NETWORK,
        "--constraint", f"node.id=={worker.node}", "--restart-condition", "none",
        "--user", "1000:100", "--entrypoint", "python3",
        COURSE_IMAGE.format(course=COURSE), *probe_args(targets),
    )  # fmt: skip
    try:
        wait_until(
            lambda: "Complete" in docker("service", "ps", "--format", "{{.CurrentState}}", name),
            "the member's probe to finish",
        )
        return json.loads(docker("service", "logs", "--raw", name).splitlines()[-1])
    finally:
        docker("service", "rm", name)


def assert_walled_off(hub: HubProcess, worker: Worker) -> None:
    """The learner's server (no internet) on the worker: only the Hub's host reaches it, and it
    reaches the Hub API and the exchange, nothing else on this machine. The rules for addresses
    elsewhere (metadata, private ranges) are read from the node's firewall, never probed."""
    task = service_task(hub)
    (ports,) = task["Status"]["PortStatus"]["Ports"]
    published = (worker.address, int(ports["PublishedPort"]))
    server = json.loads(worker.docker("inspect", task["Status"]["ContainerStatus"]["ContainerID"]))
    direct = (
        server[0]["NetworkSettings"]["Networks"][SWARM_NETWORK]["IPAddress"],
        ports["TargetPort"],
    )
    image = COURSE_IMAGE.format(course=COURSE)
    # A careless host service on every address, neither the Hub's nor the exchange's port.
    careless = socket.socket()
    careless.bind(("0.0.0.0", 0))
    careless.listen(8)
    host_service = (MANAGER_ADDRESS, int(careless.getsockname()[1]))
    stranger = worker.docker(
        "run", "-d", "--label", f"learnhub.prefix={hub.prefix}", "--user", "1000:100",
        "--entrypoint", "python3", image, "-m", "http.server", "8000",
    )  # fmt: skip
    try:
        # The Hub's host (this process, from the manager's address) reaches the server.
        with socket.create_connection(published, timeout=5) as hub_side:
            hub_side.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert hub_side.recv(1)
        stranger_ip = worker.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", stranger)
        seen = probe_in(worker, stranger, {
            "itself": ("127.0.0.1", 8000),
            "host service": host_service,
            "published port": published,
            "server": direct,
        })  # fmt: skip
        # Listening, and reachable from outside LearnHub's networks: the controls.
        assert seen["itself"] == "answered" and seen["host service"] == "silent", seen
        assert {seen["published port"], seen["server"]} <= REFUSED, seen
        ports_of_hub = hub.settings["hub"]
        learner = probe_in(worker, server[0]["Id"], {
            "hub api": (MANAGER_ADDRESS, ports_of_hub["hub_port"]),
            "exchange": (MANAGER_ADDRESS, ports_of_hub["service_port"]),
            "stranger": (stranger_ip, 8000),
            "host service": host_service,
            "the node's swarm port": (worker.address, 7946),
        })  # fmt: skip
        assert (learner["hub api"], learner["exchange"]) == ("answered", "answered"), learner
        for target in ("stranger", "host service", "the node's swarm port"):
            assert learner[target] in REFUSED, learner
        member = probe_from_member(hub, worker, {"published port": published, "server": direct})
        assert set(member.values()) <= REFUSED and len(member) == 2, member
    finally:
        careless.close()
        worker.docker("rm", "-f", stranger)
    # Elsewhere, by reading the node's rules: a course without internet has nothing past the
    # Hub; one with internet never a private or link-local (cloud metadata) address.
    isolated = CourseNetwork(SWARM_NETWORK, internet=False, host_ports=())
    internet = CourseNetwork(f"{SWARM_NETWORK}-internet", internet=True, host_ports=())
    listing = docker("exec", worker.container, "iptables", "-S", isolated.egress_chain)
    assert listing.splitlines()[-1] == (
        f"-A {isolated.egress_chain} -j REJECT --reject-with icmp-port-unreachable"
    ), listing
    listing = docker("exec", worker.container, "iptables", "-S", internet.egress_chain)
    for cidr in BLOCKED_DESTINATIONS:
        assert f"-d {cidr} -j REJECT" in listing, (cidr, listing)
    assert "169.254.0.0/16" in BLOCKED_DESTINATIONS
    forward = docker("exec", worker.container, "iptables", "-S")
    for network in (isolated, internet):
        for jump in (
            f"-A DOCKER-USER -o {network.bridge} -j {network.server_chain}",
            f"-A DOCKER-USER -i {network.bridge} -j {network.egress_chain}",
            f"-A OUTPUT -o {network.bridge} -j {network.relay_chain}",
            f"-A INPUT -i {network.bridge} -j {network.input_chain}",
        ):
            assert jump in forward, (jump, forward)


def assert_unprepared_node_refuses(hub: HubProcess, swarm: Swarm) -> None:
    """Fail closed: a node where `--swarm-node` never ran (the manager, here) has no
    `<network>-config`, so Swarm rejects a course server there instead of running it
    unguarded."""
    name = f"{hub.prefix}-unguarded"
    docker(
        "service", "create", "--detach", "--name", name,
        "--label", f"learnhub.prefix={hub.prefix}", "--network", SWARM_NETWORK,
        "--constraint", f"node.id=={swarm.manager}", "--restart-condition", "none",
        "--user", "1000:100", "--entrypoint", "true", COURSE_IMAGE.format(course=COURSE),
    )  # fmt: skip

    def error() -> str:
        return docker("service", "ps", "--no-trunc", "--format", "{{.Error}}", name)

    try:
        wait_until(error, "Swarm to reject the course server on the unprepared node")
        message = error()
        assert f'configuration network "{SWARM_NETWORK}-config" does not exist' in message
        assert "Rejected" in docker("service", "ps", "--format", "{{.CurrentState}}", name)
    finally:
        docker("service", "rm", name)


def test_buy_learn_grade_refund_on_a_swarm_worker(
    swarm_hub: HubProcess,
    swarm: Swarm,
    swarm_worker: Worker,
    registry: Registry,
    standin: StripeStandIn,
    swarm_courses: Path,
) -> None:
    hub = swarm_hub
    assert run_learnhub(hub, "grader", "release", COURSE, ASSIGNMENT).returncode == 0
    with browser(hub) as b:
        b.signup(LEARNER, PASSWORD)
        assert b.login(LEARNER, PASSWORD).status_code == 200
        assert b.spawn_course(LEARNER, COURSE).status_code == 403

        # Buy: genuinely signed events, the object re-fetched from the stand-in.
        session = standin.course_checkout(LEARNER, COURSE, PRICE, "Python Foundations")
        deliver(hub, standin.sim.complete_checkout(session))
        wait_until(lambda: in_group(hub), "membership after payment")

        # Launch: a service on the worker, its materials from the course image.
        url, first_spawn = launch(b, hub)
        task = service_task(hub)
        assert task["NodeID"] == swarm_worker.node
        # The worker got the course image from the registry (its mirror), by its plain name.
        assert registry.served(swarm_worker.address, f"learnhub/course-{COURSE}")
        spec = task["Spec"]["ContainerSpec"]
        assert spec["User"] == "1000:100" and spec["ReadOnly"] is True
        assert spec["CapabilityDrop"] == ["ALL"]
        assert not [m for m in spec["Mounts"] if m["Type"] == "bind"]
        limits = task["Spec"]["Resources"]["Limits"]
        assert limits["MemoryBytes"] == 1024**3 and limits["NanoCPUs"] == 10**9
        assert limits["Pids"] == 512
        names = {item["name"] for item in b.contents(url).json()["content"]}
        expected = {p.name for p in (swarm_courses / COURSE / "materials").iterdir()}
        assert expected <= names, f"missing {expected - names}"
        checked = time.monotonic()
        assert_walled_off(hub, swarm_worker)
        assert_remove_refused_while_serving(hub, swarm_worker)
        assert_unprepared_node_refuses(hub, swarm)
        took = time.monotonic() - checked
        print(f"network isolation checked (worker, unprepared manager) in {took:.1f} s")

        # An edit survives a restart: the server comes back on the node that holds the home.
        assert b.put_file(url, "README.md", "# my swarm notes\n").status_code == 200
        stop_server(hub, LEARNER, COURSE, timeout=60)
        url, second_spawn = launch(b, hub)
        assert service_task(hub)["NodeID"] == swarm_worker.node
        assert b.contents(url, "README.md").json()["content"] == "# my swarm notes\n"
        print(f"spawn on the worker: first {first_spawn:.1f} s, restart {second_spawn:.1f} s")

        # Fetch, solve and submit through the exchange (the worker reaches the host's gateway).
        assignments(b, url, "fetch")
        fetched = b.contents(url, f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb").json()["content"]
        assert "BEGIN HIDDEN TESTS" not in json.dumps(fetched)
        source = swarm_courses / COURSE / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        put_reference_solution(b, url, source, ASSIGNMENT)
        assert any(a["status"] == "submitted" for a in assignments(b, url, "submit"))

        collected = run_learnhub(hub, "grader", "collect", COURSE, ASSIGNMENT)
        assert collected.returncode == 0, collected.stderr
        with SandboxWatcher(swarm_worker) as watcher:
            graded = run_learnhub(hub, "grader", "autograde", COURSE, ASSIGNMENT)
        assert graded.returncode == 0, graded.stderr
        assert graded.stdout.split()[:3] == [LEARNER, "10/10", "ok"], graded.stdout
        assert_graded_in_swarm_jobs(watcher, swarm_worker)

        # Refund: out of the group, and the service is gone from the swarm.
        intent = standin.store.objects[standin.store.objects[session]["payment_intent"]]
        deliver(hub, standin.sim.refund(str(intent["latest_charge"])))
        wait_until(lambda: not in_group(hub), "removal after refund")
        wait_until(lambda: server_stopped(hub, LEARNER, COURSE), "the course server to stop")
        assert not docker("service", "ls", "-q", "--filter", f"label=learnhub.prefix={hub.prefix}")
        assert b.spawn_course(LEARNER, COURSE).status_code == 403
    # The home stays on the worker for a re-purchase.
    volumes = swarm_worker.docker("volume", "ls", "-q").split()
    assert [v for v in volumes if v.startswith(hub.prefix)]
    assert_removed(hub, swarm_worker)
