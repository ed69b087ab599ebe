"""The xdist scheduler's order (tests/conftest.py): longest units of work first."""

from __future__ import annotations

from tests.conftest import (
    SHARED_HOST_STATE,
    UNKNOWN_UNIT_SECONDS,
    expected_seconds,
    longest_first,
    unit_of_work,
)


def test_longest_units_go_out_first_and_unknown_ones_count_as_a_hub_module() -> None:
    durations = {"tests/a.py": 5.0, "tests/b.py": 120.0, "tests/c.py": 30.0}
    units = ["tests/a.py", "tests/new.py", "tests/b.py", "tests/c.py"]
    assert UNKNOWN_UNIT_SECONDS < 30.0
    assert longest_first(units, durations) == [
        "tests/b.py",
        "tests/c.py",
        "tests/new.py",
        "tests/a.py",
    ]


def test_the_recorded_durations_name_units_of_work() -> None:
    recorded = expected_seconds()
    assert len(recorded) >= 20, "tests/module_durations.json: refresh it (scripts/timeline.py)"
    for unit, seconds in recorded.items():
        assert seconds >= 0
        assert unit in SHARED_HOST_STATE or unit_of_work(unit + "::t") == unit, unit
        assert unit.startswith("tests/") or unit.startswith("host-"), unit
