"""The member's home page reads the catalog again only when a course changed.

It runs in the Hub's process, on its event loop: parsing every ``course.yaml`` on each view
made the home page 1.1 s p50 with 200 courses (benchmarks/scale.py). Edits, new and removed
courses must still show on the next view.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from hub import home
from hub.course_scaffold import scaffold_course
from hub.courses import Catalog
from hub.settings import Settings


def test_home_reads_the_catalog_again_only_after_a_course_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    courses = tmp_path / "courses"
    courses.mkdir()
    scaffold_course(courses, "intro-python")
    settings = Settings.model_validate(
        {"courses_dir": str(courses), "hub": {"data_dir": str(tmp_path / "var")}}
    )
    loads: list[Path] = []
    real_load = Catalog.load.__func__  # type: ignore[attr-defined]

    def counting_load(cls: type[Catalog], folder: Path) -> Catalog:
        loads.append(folder)
        return real_load(cls, folder)  # type: ignore[no-any-return]

    monkeypatch.setattr(Catalog, "load", classmethod(counting_load))
    user = SimpleNamespace(name="ada", admin=False, groups=[])
    page = home.home_courses(settings)

    def titles() -> list[str]:
        return [item["title"] for item in page(user)["others"]]

    first = titles()
    assert titles() == first and titles() == first
    assert len(loads) == 1  # three views, one read

    path = courses / "intro-python" / "course.yaml"
    data = yaml.safe_load(path.read_text())
    data["title"] = "Intro to Python, second edition"
    path.write_text(yaml.safe_dump(data))
    assert titles() == ["Intro to Python, second edition"]

    scaffold_course(courses, "data-basics")
    assert len(titles()) == 2
    assert len(loads) == 3
