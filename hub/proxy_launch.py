"""Start configurable-http-proxy as its own unprivileged user, holding only its own token.

JupyterHub starts the proxy itself (``ConfigurableHTTPProxy.command``), as the Hub's user and
with a copy of the Hub's whole environment: as root, with every ``LEARNHUB_*`` secret and the
admin token. The proxy needs neither. ``jupyterhub_config.py`` makes this module the command::

    python -m hub.proxy_launch --user learnhub-proxy -- <JupyterHub's proxy arguments>

It keeps only the variables the proxy reads (:data:`KEPT`: its API token and the locale), then
replaces itself, through util-linux's ``setpriv``, with configurable-http-proxy running as
``--user``: no supplementary groups, no new privileges, an empty capability bounding set, except
``CAP_NET_BIND_SERVICE`` when the public port is below 1024. The process id stays the one
JupyterHub started, so its pid file, restarts and stop still work.

It must not run as ``hub.service_user``: the service could then read the proxy's token from
``/proc`` and route ``/hub/`` to itself. Without ``--user`` (a Hub that is not root) only the
environment is trimmed. Kept to the standard library: it runs on every Hub start.
"""

from __future__ import annotations

import errno
import itertools
import os
import pwd
import shutil
import socket
import sys
from collections.abc import Mapping, Sequence

#: The only variables configurable-http-proxy is given.
KEPT = ("CONFIGPROXY_AUTH_TOKEN", "PATH", "LANG", "LC_ALL", "TZ")
#: The proxy's executable, looked up on the Hub's PATH (scripts/setup.sh installs it there).
PROXY = "configurable-http-proxy"
SETPRIV = "setpriv"
#: Below this, binding a port needs CAP_NET_BIND_SERVICE.
PRIVILEGED_PORTS = 1024


class LaunchError(Exception):
    """Why the proxy cannot be started; printed as one line for the Hub's log."""


def proxy_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` the proxy may see."""
    return {name: environ[name] for name in KEPT if name in environ}


def binds_privileged_port(proxy_args: Sequence[str]) -> bool:
    """Whether JupyterHub's ``--port N`` asks for a port below 1024."""
    for flag, value in itertools.pairwise(proxy_args):
        if flag == "--port" and value.isdigit():
            return int(value) < PRIVILEGED_PORTS
    return False


def port_taken(host: str, port: int) -> bool:
    """Whether another program already listens on ``host:port``.

    Binds it the way the proxy and Tornado do (``SO_REUSEADDR``, so connections of a Hub
    that just stopped do not count). An address this machine does not have yet is not
    "taken": the program that binds it reports that itself. Asked by ``learnhub serve`` and
    ``demo`` before they start anything, and by :func:`refuse_taken_ports` just before the
    proxy starts; it lives here because this module must stay light to import.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return False
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                # Anything else (a port below 1024 for a user, an address not here yet) is
                # for the program itself to report.
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


#: JupyterHub's proxy flags for the two addresses the proxy listens on, and the setting that
#: moves each.
LISTEN_FLAGS = (
    ("--ip", "--port", "hub.bind_url"),
    ("--api-ip", "--api-port", "hub.proxy_api_port"),
)


def flag_values(proxy_args: Sequence[str]) -> dict[str, str]:
    """``--flag value`` pairs of JupyterHub's proxy arguments."""
    return {
        flag: value
        for flag, value in itertools.pairwise(proxy_args)
        if flag.startswith("--") and not value.startswith("--")
    }


def refuse_taken_ports(proxy_args: Sequence[str]) -> None:
    """Raise :class:`LaunchError` when another program already listens where the proxy would.

    configurable-http-proxy only logs ``EADDRINUSE`` and keeps serving its API, so the Hub
    would run on with nothing reachable; exiting here makes JupyterHub's start fail instead.
    ``learnhub serve``/``demo`` check earlier; this catches a port taken since then.
    """
    values = flag_values(proxy_args)
    for ip_flag, port_flag, setting in LISTEN_FLAGS:
        port = values.get(port_flag, "")
        host = values.get(ip_flag, "")
        if port.isdigit() and port_taken(host, int(port)):
            raise LaunchError(
                f"{host or '*'}:{port} is already in use by another program: stop "
                f"that program, or set {setting} in learnhub.yaml to a free port"
            )


def command(user: str, proxy_args: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """What to execute: the proxy itself, or ``setpriv`` running it as ``user``."""
    proxy = shutil.which(PROXY, path=environ.get("PATH"))
    if proxy is None:
        raise LaunchError(f"{PROXY} not found on PATH: run scripts/setup.sh (it installs it)")
    if not user or os.geteuid() != 0:
        return [proxy, *proxy_args]
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise LaunchError(
            f"there is no user {user!r} for the proxy; scripts/setup.sh creates it"
        ) from None
    if account.pw_uid == 0 or account.pw_gid == 0:
        raise LaunchError(f"the proxy's user {user!r} is root or in root's group")
    setpriv = shutil.which(SETPRIV, path="/usr/bin:/bin")
    if setpriv is None:
        raise LaunchError("setpriv not found: install util-linux")
    caps = (
        ["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"]
        if binds_privileged_port(proxy_args)
        else []
    )
    bounding = "-all,+net_bind_service" if caps else "-all"
    return [
        setpriv,
        f"--reuid={account.pw_uid}",
        f"--regid={account.pw_gid}",
        "--clear-groups",
        "--no-new-privs",
        *caps,
        f"--bounding-set={bounding}",
        "--",
        proxy,
        *proxy_args,
    ]


def parse(argv: Sequence[str]) -> tuple[str, list[str]]:
    """``--user NAME -- ARGS…`` → (NAME, ARGS)."""
    args = list(argv)
    if len(args) < 3 or args[0] != "--user" or args[2] != "--":
        raise LaunchError("usage: python -m hub.proxy_launch --user NAME -- PROXY_ARGS...")
    return args[1], args[3:]


def main(argv: Sequence[str] | None = None) -> int:
    """Replace this process with the proxy; return an exit status only if that failed."""
    try:
        user, proxy_args = parse(sys.argv[1:] if argv is None else argv)
        refuse_taken_ports(proxy_args)
        environment = proxy_environment(os.environ)
        argv_out = command(user, proxy_args, os.environ)
    except LaunchError as exc:
        print(f"learnhub proxy launch: {exc}", file=sys.stderr)
        return 2
    # An absolute path from `command`, with its arguments as a list: no shell is involved.
    os.execve(argv_out[0], argv_out, environment)  # noqa: S606


if __name__ == "__main__":
    sys.exit(main())
