"""Build the LearnHub images with the real Docker engine and check them with real containers.

The first run bootstraps the base image (debootstrap, about a minute) and builds the
single-user image (about a minute more); later runs find both up to date.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker.api.client import APIClient

from hub.images import BuildResult, ImageBuildError, ImageSpec, _build_one, build_images

pytestmark = pytest.mark.docker

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE = "learnhub/singleuser:latest"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _name(kind: str) -> str:
    return f"lhtest-{kind}-{uuid.uuid4().hex[:8]}"


def docker(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI and return the completed process (text output)."""
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def run(
    *cmd: str, opts: tuple[str, ...] = (), check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`docker run --rm` the image under an lhtest- name; make sure the container is gone."""
    name = _name("run")
    try:
        return docker("run", "--rm", "--name", name, *opts, IMAGE, *cmd, check=check)
    finally:
        docker("rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def built() -> tuple[list[BuildResult], list[BuildResult]]:
    logs: list[str] = []
    first = build_images(REPO_ROOT, log=logs.append)
    second = build_images(REPO_ROOT, log=logs.append)
    return first, second


@pytest.fixture
def materials_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: that lives under a 0700 root-owned folder which the container's
    # uid 1000 cannot enter through the bind mount.
    path = Path(tempfile.mkdtemp(prefix="lhtest-materials-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home_volume() -> Iterator[str]:
    name = _name("home")
    docker("volume", "create", name)
    try:
        yield name
    finally:
        docker("volume", "rm", "-f", name, check=False)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    path.write_text(text)
    path.chmod(0o644)


def test_second_build_is_up_to_date(built: tuple[list[BuildResult], list[BuildResult]]) -> None:
    first, second = built
    assert [r.name for r in first] == [IMAGE]
    assert [r.name for r in second] == [IMAGE]
    assert second[0].up_to_date and not second[0].built
    assert second[0].context_hash == first[0].context_hash
    assert second[0].image_id == first[0].image_id
    labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", IMAGE).stdout
    assert f'"learnhub.context-hash":"{first[0].context_hash}"' in labels
    assert "org.opencontainers.image.title" in labels


def test_runs_as_jovyan_not_root(built: object) -> None:
    out = run("sh", "-c", 'id -u; id -g; echo "$HOME"; pwd').stdout.split()
    assert out == ["1000", "100", "/home/jovyan", "/home/jovyan"]


def test_jupyterhub_singleuser_version(built: object) -> None:
    out = run("jupyterhub-singleuser", "--version").stdout.strip()
    assert out.splitlines()[-1] == "6.1.1"


def test_server_stack_imports(built: object) -> None:
    out = run("python", "-c", "import nbgrader, jupyterlab; print('ok')").stdout
    assert out.strip() == "ok"


def test_image_installs_exactly_the_pinned_requirements(built: object) -> None:
    # pip resolving on its own would add what overrides.txt leaves out (rfc3987-syntax, whose
    # grammar compile cost every server start over a second) and could drift from the pins.
    # requirements.txt, plus JupyterLab's language packs in a layer of their own.
    pins = ("requirements.txt", "lab-language-packs.txt")
    pinned = {
        name.lower().replace("_", "-"): version
        for pin_file in pins
        for name, version in re.findall(
            r"^([A-Za-z0-9_.-]+)==([^\s;]+)",
            (REPO_ROOT / "docker" / "singleuser" / pin_file).read_text(),
            re.MULTILINE,
        )
    }
    frozen = run("pip", "list", "--format=freeze", "--exclude", "pip", "--exclude", "setuptools")
    installed = {
        name.lower().replace("_", "-"): version
        for name, version in (line.split("==", 1) for line in frozen.stdout.split())
    }
    assert "rfc3987-syntax" not in installed
    assert installed == {k: v for k, v in pinned.items() if k not in {"pip", "setuptools"}}
    assert run("pip", "check").stdout.strip() == "No broken requirements found."


def test_nbgrader_instructor_extensions_disabled(built: object) -> None:
    proc = run("jupyter", "labextension", "list")
    text = ANSI.sub("", proc.stdout + proc.stderr)
    nbgrader_line = next(line for line in text.splitlines() if "@jupyter/nbgrader v" in line)
    assert " enabled " in f"{nbgrader_line} "
    disabled = text.split("Disabled extensions:", 1)[1].split()
    assert "@jupyter/nbgrader:formgrader" in disabled
    assert "@jupyter/nbgrader:create-assignment" in disabled
    assert "@jupyter/nbgrader:course-list" in disabled
    assert "@jupyter/nbgrader:assignment-list" not in disabled
    assert "@jupyter/nbgrader:validate-assignment" not in disabled

    proc = run("jupyter", "server", "extension", "list")
    text = ANSI.sub("", proc.stdout + proc.stderr)
    assert re.search(r"nbgrader\.server_extensions\.formgrader\s+disabled", text)
    assert re.search(r"nbgrader\.server_extensions\.course_list\s+disabled", text)
    # The learner routes come from learnhub_container.lazy_nbgrader (nbgrader loads at first use).
    assert re.search(r"nbgrader\.server_extensions\.assignment_list\s+disabled", text)
    assert re.search(r"nbgrader\.server_extensions\.validate_assignment\s+disabled", text)
    assert re.search(r"learnhub_container\.lazy_nbgrader\s+enabled", text)


def test_nbgrader_routes_load_nbgrader_at_first_use(built: object) -> None:
    probes = REPO_ROOT / "tests" / "image_probes"
    notebook = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    script = (
        f"mkdir -p /tmp/probe-root && printf '%s' '{notebook}' > /tmp/probe-root/hello.ipynb"
        " && python /probes/lazy_nbgrader.py"
    )
    out = run("sh", "-c", script, opts=("-v", f"{probes}:/probes:ro")).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["nbgrader_imported_at_start"] is False
    assert seen["anonymous_version_status"] == 302  # to the login page, as nbgrader's own
    assert seen["version"] == [200, {"success": True}]
    assert seen["validate"][0] == 200 and seen["validate"][1]["success"] is True
    assert seen["nbgrader_imported_after_use"] is True
    assert seen["routes_match"] is True


def test_entrypoint_syncs_materials_and_keeps_learner_edits(
    built: object, materials_dir: Path, home_volume: str
) -> None:
    write(materials_dir / "01-intro.ipynb", "course v1\n")
    write(materials_dir / "week1" / "data.csv", "a,b\n")
    write(materials_dir / ".ipynb_checkpoints" / "01-intro-checkpoint.ipynb", "junk\n")
    mounts = (
        "-v", f"{materials_dir}:/srv/learnhub/materials:ro",
        "-v", f"{home_volume}:/home/jovyan",
    )  # fmt: skip

    first = run("sh", "-c", "stat -c '%u:%g' /home/jovyan; cat 01-intro.ipynb", opts=mounts)
    assert "materials: copied: 01-intro.ipynb" in first.stdout
    assert "materials: copied: week1/data.csv" in first.stdout
    # The fresh named volume took its ownership from the image.
    assert "1000:100" in first.stdout
    assert first.stdout.rstrip().endswith("course v1")

    run("sh", "-c", "echo 'my answer' > 01-intro.ipynb", opts=mounts)
    write(materials_dir / "01-intro.ipynb", "course v2\n")
    write(materials_dir / "week1" / "data.csv", "a,b,c\n")

    second = run(
        "sh", "-c", "cat 01-intro.ipynb 01-intro.updated.ipynb week1/data.csv; ls -a",
        opts=mounts,
    )  # fmt: skip
    assert "materials: conflict: 01-intro.ipynb" in second.stdout
    assert "materials: updated: week1/data.csv" in second.stdout
    out = second.stdout
    assert "my answer\ncourse v2\na,b,c\n" in out
    assert ".ipynb_checkpoints" not in out.split("a,b,c\n", 1)[1]


def test_sync_failure_still_starts_the_command(built: object, materials_dir: Path) -> None:
    write(materials_dir / "01-intro.ipynb", "course v1\n")
    # A read-only root file system (no volume on the home) makes every write of the sync fail.
    proc = run(
        "echo", "server started",
        opts=("--read-only", "-v", f"{materials_dir}:/srv/learnhub/materials:ro"),
    )  # fmt: skip
    assert proc.stdout.strip().endswith("server started")
    assert "materials sync failed" in proc.stderr


def test_failed_build_raises_with_last_output(built: object, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM learnhub/base:bookworm\nRUN echo 'about to fail' && false\n"
    )
    spec = ImageSpec(name=_name("broken").replace("-", ""), context_dir=ctx)
    client = APIClient(version="auto")
    logs: list[str] = []
    try:
        with pytest.raises(ImageBuildError) as err:
            _build_one(client, ctx, spec, "0" * 64, nocache=False, log=logs.append)
    finally:
        client.close()
    assert "returned a non-zero code: 1" in str(err.value)
    assert "about to fail" in str(err.value)
    assert any("Step 2/" in line for line in logs)


def test_unreachable_engine_is_reported_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    unreachable = r"cannot reach the Docker engine at .*: start Docker"
    with pytest.raises(ImageBuildError, match=unreachable):
        build_images(REPO_ROOT, log=lambda _: None)


def test_single_user_server_leaves_the_hub_orm_out_and_still_works(built: object) -> None:
    # learnhub_container/patch_jupyterhub.py: the Hub's ORM, handlers and metrics stay out of the
    # single-user server; scope checks, the request log and catch_db_error behave as before.
    probes = REPO_ROOT / "tests" / "image_probes"
    out = run("python", "/probes/jupyterhub_patch.py", opts=("-v", f"{probes}:/probes:ro")).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["hub_side_imported"] == []
    assert seen["intersection"] == ["read:users!user=ada"]
    assert seen["orm_user_table"] == "users"
    assert seen["log"] == [
        ["INFO", "200 GET /user/ada/c/api/status?token=[secret] (ada@10.0.0.1) 10.00ms"]
    ]
    assert seen["rolled_back"] is True
