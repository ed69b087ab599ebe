"""Build LearnHub's container images with the local Docker engine, without any registry.

The base image is made from Debian packages by ``docker/base/bootstrap.sh`` (debootstrap +
``docker import``); the images on top of it are built from ``docker/<name>/`` with docker-py's
low-level streaming build API. Each build context is assembled in a temporary directory and
hashed; an image whose ``learnhub.context-hash`` label already matches is not rebuilt.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Imported from the submodule: the repo's own docker/ folder (Dockerfiles) shadows the package
# name for mypy's import resolution, which then reports `docker.APIClient` as missing.
from docker.api.client import APIClient
from docker.errors import APIError, DockerException, ImageNotFound
from docker.utils import kwargs_from_env

from hub.docker_engine import unreachable
from hub.errors import LearnHubError

HASH_LABEL = "learnhub.context-hash"
#: The package of code that runs inside the containers; every image build context carries it.
CONTAINER_PACKAGE = "learnhub_container"
DEFAULT_BASE_IMAGE = "learnhub/base:bookworm"
# Debian/Ubuntu location; other systems fall back to what Python's ssl module uses.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Build steps (pip install, compileall) can be silent for minutes; docker-py's default 60 s
# socket timeout would abort a healthy build.
BUILD_TIMEOUT_S = 3600
# How many lines of build output an ImageBuildError carries.
ERROR_TAIL_LINES = 25
STEP_LINE_MAX = 120
# Builds on one machine share one engine and one tag; without a lock two concurrent builds (two
# test sessions, a CLI run during tests) both build, then each removes the other's image.
LOCK_FILE = Path(tempfile.gettempdir()) / "learnhub-images.lock"
_lock_depth = 0
_IGNORED_NAMES = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".DS_Store"})

Log = Callable[[str], None]


class ImageBuildError(LearnHubError):
    """An image could not be built (engine unreachable, bootstrap or build failure); the
    command line prints it as one message."""


@dataclass(frozen=True)
class ImageSpec:
    """One image to build: its tag, the folder holding its Dockerfile, and build args."""

    name: str
    context_dir: Path
    build_args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildResult:
    """The outcome of building one image."""

    name: str
    context_hash: str
    built: bool  # False: an image with this context hash already existed
    image_id: str
    seconds: float

    @property
    def up_to_date(self) -> bool:
        """True when the build was skipped because the image was already current."""
        return not self.built


def default_specs(repo_root: Path, *, base_image: str = DEFAULT_BASE_IMAGE) -> list[ImageSpec]:
    """Return the images LearnHub needs, built on ``base_image``."""
    return [
        ImageSpec(
            name="learnhub/singleuser:latest",
            context_dir=repo_root / "docker" / "singleuser",
            build_args={"BASE_IMAGE": base_image},
        ),
    ]


@contextmanager
def _build_lock(log: Log) -> Iterator[None]:
    """Serialise image builds across processes on this machine (re-entrant in one process)."""
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    try:
        fh = LOCK_FILE.open("a")
    except OSError as exc:  # e.g. created by another user; building unlocked beats failing
        log(f"cannot open build lock {LOCK_FILE} ({exc}); building without it")
        yield
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another LearnHub image build on this machine ({LOCK_FILE})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.flock(fh, fcntl.LOCK_UN)


def _connect(timeout: int = BUILD_TIMEOUT_S) -> APIClient:
    try:
        # kwargs_from_env: honour DOCKER_HOST / DOCKER_TLS_VERIFY like the docker CLI does.
        # version="auto" pings the engine, so an unreachable engine fails here, early.
        return APIClient(version="auto", timeout=timeout, **kwargs_from_env())
    except DockerException as exc:
        raise ImageBuildError(str(unreachable(exc))) from exc


def _image_labels(client: APIClient, name: str) -> tuple[str, dict[str, str]] | None:
    """Return ``(image id, labels)`` of a local image, or None if there is no such image."""
    try:
        info: dict[str, Any] = client.inspect_image(name)
    except ImageNotFound:
        return None
    labels = (info.get("Config") or {}).get("Labels") or {}
    return str(info["Id"]), {str(k): str(v) for k, v in labels.items()}


def ensure_base_image(repo_root: Path, *, base_image: str, force: bool = False, log: Log) -> None:
    """Create ``base_image`` with ``docker/base/bootstrap.sh`` unless it already exists.

    The script debootstraps Debian bookworm from the host's apt mirror, so it needs root and
    network access to that mirror (no container registry). ``force`` rebuilds it anyway.
    """
    with _build_lock(log):
        _ensure_base_image(repo_root, base_image=base_image, force=force, log=log)


def _ensure_base_image(repo_root: Path, *, base_image: str, force: bool, log: Log) -> None:
    client = _connect(timeout=60)
    try:
        present = _image_labels(client, base_image) is not None
    finally:
        client.close()
    if present and not force:
        log(f"base image {base_image}: present")
        return
    script = repo_root / "docker" / "base" / "bootstrap.sh"
    if not script.is_file():
        raise ImageBuildError(f"base image bootstrap script not found: {script}")
    cmd = ["bash", str(script), *(["--force"] if force else []), base_image]
    log(f"base image {base_image}: bootstrapping with {' '.join(cmd)} (takes a minute or two)")
    tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
    start = time.monotonic()
    with subprocess.Popen(
        cmd,
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            # debootstrap prints one "I: ..." line per package; only the script's own
            # progress lines are worth showing.
            if line.startswith("[bootstrap]"):
                log(line)
        rc = proc.wait()
    if rc != 0:
        raise ImageBuildError(
            f"bootstrapping {base_image} failed (exit {rc}); last output:\n" + "\n".join(tail)
        )
    log(f"base image {base_image}: ready in {time.monotonic() - start:.0f}s")


def _host_ca_bundle() -> Path:
    candidates = [HOST_CA_BUNDLE]
    cafile = ssl.get_default_verify_paths().cafile
    if cafile:
        candidates.append(Path(cafile))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ImageBuildError(
        "no CA bundle found on this host (looked for "
        + ", ".join(str(c) for c in candidates)
        + "); pip inside the build needs one to reach PyPI"
    )


def _read_extra_ca(extra_ca: Path) -> bytes:
    try:
        data = extra_ca.read_bytes()
    except OSError as exc:
        raise ImageBuildError(f"cannot read extra CA certificate {extra_ca}: {exc}") from exc
    # Catch a wrong file (a key, a DER file) here rather than as an obscure TLS error in pip.
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ImageBuildError(f"extra CA {extra_ca} is not a PEM certificate")
    return data


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(
        src, dest, symlinks=False, ignore=shutil.ignore_patterns(*_IGNORED_NAMES, "*.pyc")
    )


@contextmanager
def build_context(
    repo_root: Path, spec: ImageSpec, *, extra_ca: Path | None = None
) -> Iterator[Path]:
    """Assemble the build context for ``spec`` in a temporary directory and yield its path.

    The context is the Dockerfile's folder plus the ``learnhub_container`` package, whole (the
    code that runs inside course and sandbox containers), and ``certs/`` holding the host
    CA bundle (``ca-certificates.crt``) and, when given, the operator's extra CA
    (``extra-ca.crt``). The directory is removed afterwards.
    """
    if not (spec.context_dir / "Dockerfile").is_file():
        raise ImageBuildError(f"no Dockerfile in {spec.context_dir}")
    with tempfile.TemporaryDirectory(prefix="learnhub-build-") as tmp:
        ctx = Path(tmp) / "context"
        _copy_tree(spec.context_dir, ctx)
        _copy_tree(repo_root / CONTAINER_PACKAGE, ctx / CONTAINER_PACKAGE)
        certs = ctx / "certs"
        certs.mkdir(exist_ok=True)
        shutil.copyfile(_host_ca_bundle(), certs / "ca-certificates.crt")
        if extra_ca is not None:
            (certs / "extra-ca.crt").write_bytes(_read_extra_ca(extra_ca))
        yield ctx


def context_hash(context_dir: Path, build_args: Mapping[str, str], *, base_id: str = "") -> str:
    """Hash everything that determines the image: files (path, exec bit, content), build args
    and the id of the base image (a re-bootstrapped base must trigger a rebuild)."""
    digest = hashlib.sha256()
    header = {"build_args": dict(sorted(build_args.items())), "base_id": base_id}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for path in sorted(p for p in context_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(context_dir).as_posix()
        executable = os.access(path, os.X_OK)
        digest.update(f"\0{rel}\0{int(executable)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _build_one(
    client: APIClient,
    ctx: Path,
    spec: ImageSpec,
    ctx_hash: str,
    *,
    nocache: bool,
    log: Log,
) -> str:
    """Run one streaming build; return the new image id or raise ImageBuildError."""
    tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
    image_id = ""
    try:
        stream = client.build(
            path=str(ctx),
            tag=spec.name,
            buildargs=dict(spec.build_args),
            labels={HASH_LABEL: ctx_hash},
            decode=True,
            rm=True,
            forcerm=True,  # do not leave intermediate containers behind after a failed step
            pull=False,  # there is no registry; the base image is local
            nocache=nocache,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ImageBuildError(
                    f"building {spec.name} failed: {str(detail).strip()}\nlast output:\n"
                    + "\n".join(tail)
                )
            if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                image_id = str(chunk["aux"]["ID"])
            text = str(chunk.get("stream") or chunk.get("status") or "")
            for line in text.splitlines():
                if not line.strip():
                    continue
                tail.append(line)
                if line.startswith("Step "):
                    # Long RUN steps would flood the terminal; the step number is the progress.
                    shown = " ".join(line.split())
                    if len(shown) > STEP_LINE_MAX:
                        shown = shown[: STEP_LINE_MAX - 1] + "…"
                    log(f"{spec.name}: {shown}")
    except APIError as exc:
        raise ImageBuildError(f"building {spec.name} failed: {exc.explanation or exc}") from exc
    except DockerException as exc:
        raise ImageBuildError(f"building {spec.name} failed: {exc}") from exc
    if not image_id:
        found = _image_labels(client, spec.name)
        if found is None or found[1].get(HASH_LABEL) != ctx_hash:
            raise ImageBuildError(
                f"building {spec.name} produced no image; last output:\n" + "\n".join(tail)
            )
        image_id = found[0]
    return image_id


def _remove_replaced(client: APIClient, image_id: str, log: Log) -> None:
    # Each rebuild would otherwise leave a ~0.5 GB untagged image behind. Without force, the
    # engine refuses while a container (e.g. a running learner server) still uses it.
    try:
        client.remove_image(image_id, noprune=False)
    except DockerException:
        log(f"previous image {image_id[:19]} is still in use; kept")
    else:
        log(f"removed previous image {image_id[:19]}")


def build_images(
    repo_root: Path,
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    extra_ca: Path | None = None,
    force: bool = False,
    log: Log = print,
) -> list[BuildResult]:
    """Build every image of ``default_specs`` that is missing or out of date.

    Ensures the base image exists first (bootstrapping it if needed). An image is up to date
    when it carries the ``learnhub.context-hash`` label of its current context; ``force``
    rebuilds it anyway, without the layer cache. It does not re-bootstrap the base image: use
    ``ensure_base_image(..., force=True)`` for that.
    """
    repo_root = repo_root.resolve()
    client = _connect()
    try:
        with _build_lock(log):
            return _build_all(
                client, repo_root, base_image, extra_ca=extra_ca, force=force, log=log
            )
    finally:
        client.close()


def _build_all(
    client: APIClient,
    repo_root: Path,
    base_image: str,
    *,
    extra_ca: Path | None,
    force: bool,
    log: Log,
) -> list[BuildResult]:
    ensure_base_image(repo_root, base_image=base_image, log=log)
    base = _image_labels(client, base_image)
    if base is None:
        raise ImageBuildError(f"base image {base_image} is missing after bootstrapping")

    results: list[BuildResult] = []
    for spec in default_specs(repo_root, base_image=base_image):
        start = time.monotonic()
        with build_context(repo_root, spec, extra_ca=extra_ca) as ctx:
            ctx_hash = context_hash(ctx, spec.build_args, base_id=base[0])
            existing = _image_labels(client, spec.name)
            if not force and existing is not None and existing[1].get(HASH_LABEL) == ctx_hash:
                log(f"{spec.name}: up to date ({ctx_hash[:12]})")
                results.append(BuildResult(spec.name, ctx_hash, False, existing[0], 0.0))
                continue
            log(f"{spec.name}: building ({ctx_hash[:12]})")
            image_id = _build_one(client, ctx, spec, ctx_hash, nocache=force, log=log)
        seconds = time.monotonic() - start
        log(f"{spec.name}: built {image_id[:19]} in {seconds:.0f}s")
        if existing is not None and existing[0] != image_id:
            _remove_replaced(client, existing[0], log)
        results.append(BuildResult(spec.name, ctx_hash, True, image_id, seconds))
    return results
