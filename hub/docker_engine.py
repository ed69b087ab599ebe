"""The Docker engine on this host: how LearnHub's host-side code connects to it, and the one
message every command gives when it cannot.

docker-py answers an engine that is not there (stopped, DOCKER_HOST pointing at nothing, a
socket root-only) with a DockerException three exceptions deep; `learnhub network apply`
printed all of it as a traceback. :func:`docker_client` turns that into
:class:`hub.errors.DockerUnreachable`, one sentence with the engine's address and the remedy,
which the command line prints like any other LearnHubError (exit status 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from docker.client import DockerClient
from docker.errors import APIError, DockerException

from hub.errors import DockerUnreachable, LearnHubError

#: Where docker-py (and the docker CLI) look without DOCKER_HOST.
DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def engine_address(environ: Mapping[str, str] | None = None) -> str:
    """The engine docker-py connects to: DOCKER_HOST, else Docker's default socket."""
    env = os.environ if environ is None else environ
    return env.get("DOCKER_HOST") or DEFAULT_ENGINE


def _os_error(exc: BaseException, depth: int = 0) -> OSError | None:
    """The operating system's error at the bottom of docker-py's and requests' wrapping
    (they nest it in ``args`` as well as in ``__cause__``)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc
    if depth > 8:
        return None
    inner: list[BaseException] = [a for a in exc.args if isinstance(a, BaseException)]
    inner += [e for e in (exc.__cause__, exc.__context__) if e is not None]
    for candidate in inner:
        found = _os_error(candidate, depth + 1)
        if found is not None:
            return found
    return None


def unreachable(exc: BaseException, environ: Mapping[str, str] | None = None) -> DockerUnreachable:
    """The error for an engine that did not answer (``exc``: docker-py's)."""
    cause = _os_error(exc)
    reason = cause.strerror if cause is not None else str(exc)
    if isinstance(cause, PermissionError):
        remedy = "run this as root (or a member of the docker group)"
    else:
        remedy = (
            "start Docker (`sudo systemctl start docker`), or point DOCKER_HOST at a running engine"
        )
    return DockerUnreachable(
        f"cannot reach the Docker engine at {engine_address(environ)} ({reason}): {remedy}"
    )


def docker_failure(exc: DockerException, doing: str) -> LearnHubError:
    """The error for docker-py's ``exc`` while ``doing`` something: :func:`unreachable` when the
    engine did not answer, else what the engine answered (an API error is no missing engine:
    "is dockerd running?" would send the operator the wrong way)."""
    if isinstance(exc, APIError):
        said = exc.explanation or str(exc)
        status = exc.status_code
        return LearnHubError(
            f"Docker refused to {doing}" + (f" (HTTP {status})" if status else "") + f": {said}"
        )
    return unreachable(exc)


def docker_client(**kwargs: Any) -> DockerClient:
    """``DockerClient.from_env(**kwargs)``; :class:`DockerUnreachable` when the engine does not
    answer (from_env asks for its API version, so this is where that shows)."""
    try:
        return DockerClient.from_env(**kwargs)
    except DockerException as exc:
        raise unreachable(exc) from exc


def require_engine() -> None:
    """:class:`DockerUnreachable` unless the engine answers: before work that would otherwise
    fail once per container (a whole course's sandboxes) instead of once."""
    docker_client().close()
