"""What a buyer is told about a course's deadlines, on the course page and at checkout.

A cohort course shows its dates, and how many have passed already (a buyer today hands that
work in late from the start); a self-paced course shows each deadline as a time after the
buyer's enrolment (hub/pacing.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hub.courses import Course
from hub.i18n import plural_translator
from hub.i18n.dates import DEFAULT_ZONE, format_datetime, iso
from hub.pacing import deadline_previews


def relative_due(lang: str, after: timedelta) -> str:
    """``due 14 days after you enrol`` (whole days), else in hours."""
    _n = plural_translator(lang)
    if after % timedelta(days=1) == timedelta(0):
        return _n("due_days_after_enrol", after.days)
    return _n("due_hours_after_enrol", int(after.total_seconds() // 3600))


def deadline_view(
    course: Course, lang: str, now: datetime, zone: str = DEFAULT_ZONE
) -> dict[str, Any]:
    """The template data: ``pacing``, ``items`` (one per assignment: ``title``, ``due`` in the
    viewer's ``zone``, ``due_iso``, ``after``, ``passed``), and ``passed``/``total`` counts of
    cohort dates."""
    items = [
        {
            "title": p.title,
            "due": format_datetime(p.due, lang, zone) if p.due else None,
            "due_iso": iso(p.due),
            "after": relative_due(lang, p.after) if p.after is not None else "",
            "passed": p.passed,
        }
        for p in deadline_previews(course, now)
    ]
    return {
        "pacing": course.pacing,
        "items": items,
        "passed": sum(1 for item in items if item["passed"]),
        "total": sum(1 for item in items if item["due"]),
    }
