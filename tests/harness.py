"""The tests' door to the shared harness (the top-level `harness` package).

Test modules import these names from here; benchmarks import the same code from `harness`
directly, so nothing is copied and benchmarks never import `tests`.
"""

from harness.browser import Browser, browser
from harness.docker import (
    TEST_PREFIX,
    container_logs,
    docker_cleanup,
    remove_stale_test_objects,
)
from harness.edge import EdgeCA, make_ca, run_nginx, wait_for_port
from harness.flows import (
    assignments_api,
    deliver,
    members,
    open_course,
    put_reference_solution,
    server_stopped,
    wait_until,
    webhook_url,
)
from harness.hub import (
    HOSTILE_BASE_URL,
    ROOT,
    HubProcess,
    hub_settings,
    run_learnhub,
    running,
    start_hub_once,
    stop_server,
    wait_for_server,
)
from harness.nbgrader import run_nbgrader
from harness.system import free_port, have, host_lock

__all__ = [
    "HOSTILE_BASE_URL",
    "ROOT",
    "TEST_PREFIX",
    "Browser",
    "EdgeCA",
    "HubProcess",
    "assignments_api",
    "browser",
    "container_logs",
    "deliver",
    "docker_cleanup",
    "free_port",
    "have",
    "host_lock",
    "hub_settings",
    "make_ca",
    "members",
    "open_course",
    "put_reference_solution",
    "remove_stale_test_objects",
    "run_learnhub",
    "run_nbgrader",
    "run_nginx",
    "running",
    "server_stopped",
    "start_hub_once",
    "stop_server",
    "wait_for_port",
    "wait_for_server",
    "wait_until",
    "webhook_url",
]
