"""The LearnHub service starts without nbgrader; it is imported when a gradebook is read
(the dashboards and the grades API, tested through HTTP elsewhere)."""

from __future__ import annotations

import subprocess
import sys


def test_service_start_does_not_import_nbgrader() -> None:
    code = (
        "import sys, hub.service.__main__, grader.reports, grader.api\n"
        "print(sorted(m for m in ('nbgrader', 'nbconvert', 'grader.course') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
