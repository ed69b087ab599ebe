"""Late submissions: a percentage off per started day late, capped.

Plugs into nbgrader's `LateSubmissionPlugin` seam (`AssignLatePenalties.plugin_class`), so
nbgrader applies it when it autogrades and shows it in the gradebook and the formgrader.
Extensions granted in the gradebook move the deadline before lateness is computed.
"""

from __future__ import annotations

import math

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float


class PercentPerDayLate(LateSubmissionPlugin):  # type: ignore[misc]
    """Take `percent_per_day` of the score off per started day late, at most `max_percent`."""

    percent_per_day = Float(10.0, help="Percent of the score taken off per started day late.").tag(
        config=True
    )
    max_percent = Float(100.0, help="The penalty never exceeds this percent of the score.").tag(
        config=True
    )

    def late_submission_penalty(
        self, student_id: str, score: float, total_seconds_late: float
    ) -> float | None:
        """The points to subtract (nbgrader caps the result at the score)."""
        if total_seconds_late <= 0 or score <= 0:
            return 0.0
        days = math.ceil(total_seconds_late / 86400)
        percent = min(self.max_percent, days * self.percent_per_day)
        return round(score * percent / 100.0, 4)
