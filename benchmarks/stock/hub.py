"""Run the stock hub (``benchmarks/stock/jupyterhub_config.py``) as a subprocess on free ports.

The process is started, waited for and stopped by the harness's ``JupyterHubProcess``, as
LearnHub's hub is; only the config file, the image and the environment are stock.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.hub import LoopbackHubProcess, venv_path
from harness.system import free_port
from hub.network import gateway_address

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHP = ROOT / "tools" / "node_modules" / ".bin" / "configurable-http-proxy"


@dataclass
class StockHub(LoopbackHubProcess):
    """Stock JupyterHub + DockerSpawner, a DummyAuthenticator and an admin token."""

    workdir: Path
    image: str
    prefix: str
    start_timeout: int = 300
    admin_token: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    label = "stock hub"
    tail_lines = 80

    @property
    def config_file(self) -> Path:
        return HERE / "jupyterhub_config.py"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "LEARNHUB_"))}
        env.update(
            BENCH_DATA_DIR=str(self.data_dir),
            BENCH_PORT=str(self.port),
            BENCH_HUB_IP=gateway_address("bridge"),
            BENCH_HUB_PORT=str(free_port()),
            BENCH_PROXY_API_PORT=str(free_port()),
            BENCH_CHP=str(CHP),
            BENCH_IMAGE=self.image,
            BENCH_PREFIX=self.prefix,
            BENCH_ADMIN_TOKEN=self.admin_token,
            BENCH_START_TIMEOUT=str(self.start_timeout),
        )
        env["PATH"] = venv_path(env)
        return env
