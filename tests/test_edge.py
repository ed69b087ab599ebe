"""The TLS edge's nginx site file: refused settings name the fix; what is cached is exact.

The site file is proved against real nginx and Chromium in tests/browser/test_edge_chromium.py;
these tests check, without a hub, what it is made from, and (real nginx in front of two
recording servers) that the Stripe webhook alone bypasses the Hub's proxy.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.edge import make_ca, run_nginx, wait_for_port
from harness.system import free_port
from hub.cli import main
from hub.edge import EdgeConfigError, render_site
from hub.settings import Settings, load_settings

BASE = "/@/space%20word/"


def settings(tmp_path: Path, **hub: str) -> Settings:
    values = {
        "bind_url": f"http://127.0.0.1:8000{BASE}",
        "public_url": f"https://learn.example.org{BASE}",
        "subdomain_host": "https://learn.example.org",
        **hub,
    }
    lines = "".join(f"  {key}: {value}\n" for key, value in values.items())
    path = tmp_path / "learnhub.yaml"
    path.write_text(
        f"hub:\n{lines}edge:\n  certificate: {tmp_path}/cert.pem\n"
        f"  certificate_key: {tmp_path}/key.pem\n"
    )
    return load_settings(path, {})


def test_site_serves_the_public_host_and_its_subdomains(tmp_path: Path) -> None:
    site = render_site(settings(tmp_path))
    assert "server_name learn.example.org *.learn.example.org;" in site  # the redirect
    assert "return 301 https://$host$request_uri;" in site
    assert "listen 443 ssl http2;" in site and "listen 80;" in site
    assert "server_name learn.example.org;" in site and "server_name *.learn.example.org;" in site
    upstream = "upstream learnhub_proxy {\n    server 127.0.0.1:8000;\n    keepalive 32;\n"
    # An idle connection is dropped before the proxy (Node, 5 s) would close it under a request.
    assert upstream + "    keepalive_timeout 4s;\n}" in site
    # Every location of both hosts but the webhook's.
    assert site.count("proxy_pass http://learnhub_proxy;") == 6
    # Kept alive to the proxy unless the browser asks to upgrade (websockets).
    assert (
        "map $http_upgrade $learnhub_connection_upgrade {\n    default upgrade;\n    ''      '';"
        in site
    )
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in site
    assert f'ssl_certificate "{tmp_path}/cert.pem";' in site


def test_only_anonymous_catalog_pages_on_the_hub_host_are_cached(tmp_path: Path) -> None:
    site = render_site(settings(tmp_path))
    rest = site.split("server_name learn.example.org;\n")[1]
    hub_server, users_server = rest.split("server_name *.learn.example.org;\n")
    cached = [line.strip() for line in hub_server.splitlines() if "location" in line]
    assert cached == [
        "location / {",
        'location = "/@/space word/services/learnhub/stripe/webhook" {',
        'location = "/@/space word/services/learnhub/" {',
        'location = "/@/space word/services/learnhub/courses" {',
        'location = "/@/space word/services/learnhub/courses/" {',
        'location ~ "^/@/space\\ word/services/learnhub/courses/[a-z0-9-]+$" {',
    ]
    assert hub_server.count("proxy_cache learnhub_pages;") == 4
    assert hub_server.count("proxy_no_cache $learnhub_personal;") == 4
    assert hub_server.count("proxy_cache_bypass $learnhub_personal;") == 4
    # One revalidation at a time; meanwhile the others get the page as it was.
    assert hub_server.count("proxy_cache_use_stale updating;") == 4
    assert "proxy_cache " not in users_server
    assert "stripe/webhook" not in users_server
    assert 'map "$http_cookie$http_authorization$arg_token" $learnhub_personal' in site


@pytest.mark.parametrize(
    ("hub", "problem"),
    [
        ({"public_url": f"http://learn.example.org{BASE}"}, "hub.public_url"),
        ({"public_url": "https://learn.example.org/other/"}, "must be hub.bind_url's"),
        ({"subdomain_host": "https://users.example.org"}, "hub.subdomain_host"),
    ],
)
def test_refused_settings_name_the_key(tmp_path: Path, hub: dict[str, str], problem: str) -> None:
    with pytest.raises(EdgeConfigError, match=problem):
        render_site(settings(tmp_path, **hub))


def test_without_certificate_the_command_says_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "learnhub.yaml"
    path.write_text("hub:\n  public_url: https://learn.example.org/\n")
    assert main(["--config", str(path), "edge", "config"], {}) == 2
    assert "edge.certificate and edge.certificate_key" in capsys.readouterr().err


def test_written_site_passes_nginx_t(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx not found: scripts/setup.sh --test installs it")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=learn.example.org", "-keyout", str(tmp_path / "key.pem"),
         "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    config = tmp_path / "learnhub.yaml"
    settings(tmp_path)  # writes the settings file
    config.write_text(config.read_text() + f"  cache_dir: {tmp_path}/cache\n")
    site = tmp_path / "learnhub.conf"
    assert main(["--config", str(config), "edge", "config", "--output", str(site)], {}) == 0
    assert f"wrote {site}" in capsys.readouterr().out
    main_conf = tmp_path / "nginx.conf"
    main_conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n  include {site};\n}}\n"
    )
    checked = subprocess.run(
        [nginx, "-t", "-c", str(main_conf), "-p", str(tmp_path), "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


class _Recorder(ThreadingHTTPServer):
    """A loopback HTTP/1.1 server that answers 200 and records what reached it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[tuple[str, str, bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.seen.append((self.command, self.path, body))
                reply = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.mark.parametrize("intake", [False, True], ids=["service", "webhook-intake"])
def test_the_stripe_webhook_alone_goes_straight_to_the_service(
    tmp_path: Path, intake: bool
) -> None:
    # Real nginx with the written site file; the proxy and the service (or, with
    # hub.webhook_port, the webhook intake) are recorders on their own ports, so where each
    # request went is what they saw.
    proxy, service = _Recorder("proxy"), _Recorder("service")
    receiver = _Recorder("intake") if intake else service
    https_port, http_port = free_port(), free_port()
    ca = make_ca(tmp_path, "learn.test")
    public = f"https://learn.test:{https_port}"
    config = tmp_path / "learnhub.yaml"
    config.write_text(
        f"hub:\n  bind_url: http://127.0.0.1:{proxy.port}{BASE}\n"
        f"  public_url: {public}{BASE}\n  subdomain_host: {public}\n"
        f"  service_port: {service.port}\n"
        + (f"  webhook_port: {receiver.port}\npayments:\n  provider: stripe\n" if intake else "")
        + f"edge:\n  certificate: {ca.chain_pem}\n  certificate_key: {ca.key_pem}\n"
        f"  listen_address: 127.0.0.1\n  http_port: {http_port}\n  cache_dir: {tmp_path}/cache\n"
    )
    site = tmp_path / "learnhub.conf"
    site.write_text(render_site(load_settings(config, {})))
    nginx = run_nginx(tmp_path / "nginx", site)
    try:
        wait_for_port(https_port, nginx, tmp_path / "nginx" / "error.log")

        def post(path: str) -> str:
            answer = subprocess.run(
                ["curl", "-sS", "--cacert", str(ca.ca_pem), "--resolve",
                 f"learn.test:{https_port}:127.0.0.1", "--data-binary", '{"id": "evt_1"}',
                 "-H", "Content-Type: application/json", f"{public}{path}"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            return answer.stdout

        webhook = f"{BASE}services/learnhub/stripe/webhook"
        assert post(webhook) == receiver.name
        assert post(webhook) == receiver.name  # again, on the kept-alive connection
        # The rest of the service, and anything near the webhook's path, still go through the
        # Hub's proxy.
        for path in ("services/learnhub/stripe/webhook/x", "services/learnhub/checkout/x"):
            assert post(BASE + path) == "proxy"
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)
        proxy.shutdown()
        service.shutdown()
        receiver.shutdown()
    # The path as the sender wrote it (the base URL keeps its %20 and @), the body untouched.
    assert receiver.seen == [("POST", webhook, b'{"id": "evt_1"}')] * 2
    assert service.seen == ([] if intake else receiver.seen)
    assert [path for _, path, _ in proxy.seen] == [
        f"{BASE}services/learnhub/stripe/webhook/x",
        f"{BASE}services/learnhub/checkout/x",
    ]
