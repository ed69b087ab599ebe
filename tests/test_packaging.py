"""A non-editable install has every page: the wheel carries each template, static file and
language catalog."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.harness import ROOT

#: Folders whose files are data the installed package reads at run time (not Python).
DATA_FOLDERS = ("templates", "static", "locale")


def packaged_top_levels() -> list[str]:
    """The top-level packages pyproject.toml ships (``hub*`` -> ``hub``)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").rstrip(".") for pattern in include})


def data_files() -> list[str]:
    """Every file under a templates/, static/ or locale/ folder of a shipped package, as wheel
    paths."""
    found = []
    for top in packaged_top_levels():
        for path in (ROOT / top).rglob("*"):
            relative = path.relative_to(ROOT)
            if path.is_file() and any(part in DATA_FOLDERS for part in relative.parts):
                found.append(relative.as_posix())
    return sorted(found)


def test_wheel_contains_every_template_and_static_file(tmp_path: Path) -> None:
    # Build from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for top in packaged_top_levels():
        shutil.copytree(
            ROOT / top, source / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    out = tmp_path / "dist"
    uv = Path(sys.executable).parent / "uv"
    # Offline and without build isolation: the venv's setuptools builds it, nothing is fetched.
    command = [str(uv), "build", "--wheel", "--offline", "--no-build-isolation"]
    command += ["--python", sys.executable, "--out-dir", str(out), str(source)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"uv build failed:\n{result.stdout}\n{result.stderr}"
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = data_files()
    assert "hub/service/templates/catalog.html" in expected  # the check sees the service pages
    assert "hub/i18n/locale/zh_CN/LC_MESSAGES/learnhub.po" in expected  # and the catalogs
    missing = [name for name in expected if name not in names]
    assert not missing, f"left out of the wheel (add them to package-data): {missing}"
