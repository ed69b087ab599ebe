"""Run the stock hub (``benchmarks/stock/jupyterhub_config.py``) as a subprocess on free ports.

Same interface as LearnHub's ``tests.harness.HubProcess`` where the benchmark needs it: ``url``,
``api_url``, ``admin_token``, ``api()``, ``start()``, ``stop()``, ``proxy_pid()``.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hub.addresses import bridge_gateway
from tests.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHP = ROOT / "tools" / "node_modules" / ".bin" / "configurable-http-proxy"


@dataclass
class StockHub:
    workdir: Path
    image: str
    prefix: str
    start_timeout: int = 300
    admin_token: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def api_url(self) -> str:
        return self.url + "hub/api"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "var"

    @property
    def log_path(self) -> Path:
        return self.workdir / "hub.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "LEARNHUB_"))}
        env.update(
            BENCH_DATA_DIR=str(self.data_dir),
            BENCH_PORT=str(self.port),
            BENCH_HUB_IP=bridge_gateway(),
            BENCH_HUB_PORT=str(free_port()),
            BENCH_PROXY_API_PORT=str(free_port()),
            BENCH_CHP=str(CHP),
            BENCH_IMAGE=self.image,
            BENCH_PREFIX=self.prefix,
            BENCH_ADMIN_TOKEN=self.admin_token,
            BENCH_START_TIMEOUT=str(self.start_timeout),
        )
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def start(self, timeout: float = 60) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "jupyterhub"),
                "-f",
                str(HERE / "jupyterhub_config.py"),
            ],
            cwd=self.workdir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"stock hub exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.api_url + "/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"stock hub did not answer within {timeout}s:\n{self.log_tail()}")

    def proxy_pid(self) -> int | None:
        try:
            return int((self.data_dir / "proxy.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        proxy = self.proxy_pid()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if proxy:
            try:
                os.kill(proxy, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return "(no hub log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {self.admin_token}"}
        return httpx.request(method, self.api_url + path, headers=headers, timeout=60, **kwargs)
