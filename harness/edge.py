"""The TLS edge for tests and benchmarks: a test CA, and Debian's nginx as a subprocess.

A test CA signs a wildcard certificate for a test host name (``learn.test`` and
``*.learn.test``); nginx runs in the foreground on loopback ports with every file of its own in
one work folder, and includes the site file ``learnhub edge config`` wrote. Used by
tests/browser/test_edge_chromium.py and benchmarks/edge.py, so both measure and test the same
edge.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NGINX = Path(shutil.which("nginx") or "/usr/sbin/nginx")

#: What Debian's own /etc/nginx/nginx.conf sets in the main and events contexts: one worker
#: per core, 768 connections each.
DEBIAN_MAIN = "worker_processes auto;\nevents {\n  worker_connections 768;\n}\n"


@dataclass(frozen=True)
class EdgeCA:
    """A certificate authority made for one test module or benchmark run, and what it signed."""

    ca_pem: Path
    chain_pem: Path
    key_pem: Path
    spki_sha256: str


def make_ca(folder: Path, host: str) -> EdgeCA:
    """A test CA and a server certificate for ``host`` and ``*.host``, signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LearnHub Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(host), x509.DNSName(f"*.{host}")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem, chain_pem, key_pem = folder / "ca.pem", folder / "chain.pem", folder / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(pem))
    # The chain as operators install it: server certificate first, then the issuer.
    chain_pem.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_pem.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_pem.chmod(0o600)
    spki = ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return EdgeCA(
        ca_pem, chain_pem, key_pem, base64.b64encode(hashlib.sha256(spki).digest()).decode()
    )


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """Wait until something accepts connections on loopback ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}:\n{log.read_text()}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nginx does not listen on {port}:\n{log.read_text()}")


def run_nginx(
    workdir: Path, site: Path, *, main: str = "events {}\n", http: str = ""
) -> subprocess.Popen[bytes]:
    """Debian's nginx in the foreground with ``site`` in its ``http {}``, all state in
    ``workdir`` (a root test run keeps root workers: the pytest folders are root's 0700).

    ``main`` is the main and events context (default: nginx's own defaults, one worker;
    :data:`DEBIAN_MAIN` is what Debian's packaged nginx.conf sets); ``http`` is added to the
    ``http {}`` context before the site.
    """
    if not NGINX.exists():
        raise RuntimeError(f"{NGINX} not found: scripts/setup.sh --test installs nginx")
    workdir.mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"{user}pid {workdir}/nginx.pid;\nerror_log {workdir}/error.log info;\n"
        f"{main}http {{\n"
        f"  access_log {workdir}/access.log;\n"
        f"  client_body_temp_path {workdir}/body;\n  proxy_temp_path {workdir}/proxy;\n"
        f"{http}"
        f"  include {site};\n}}\n"
    )
    log = (workdir / "nginx.out").open("ab")
    return subprocess.Popen(
        [str(NGINX), "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "error.log"),
         "-g", "daemon off;"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
