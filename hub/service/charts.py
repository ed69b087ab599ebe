"""Small server-rendered SVG charts: bars and a step line, no JavaScript, no plotting library.

Each chart is an ``<svg role="img">`` with a ``<title>`` and ``<desc>`` for screen readers; the
pages also show the same numbers as a table. Colours come from Bootstrap's CSS variables, so the
charts follow JupyterHub's light and dark themes.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH = 640
BAR_HEIGHT = 260
MARGIN_LEFT = 56
MARGIN_BOTTOM = 64
MARGIN_TOP = 16


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def _frame(title: str, description: str, body: list[str], height: int) -> str:
    return (
        f'<svg class="learnhub-chart" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>"
        + "".join(body)
        + "</svg>"
    )


def _axis(max_value: float, plot_height: int, *, ticks: int = 4) -> list[str]:
    parts: list[str] = []
    for i in range(ticks + 1):
        value = max_value * i / ticks
        y = MARGIN_TOP + plot_height - plot_height * i / ticks
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="var(--bs-border-color, #ccc)" stroke-width="1"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="var(--bs-body-color, #222)">{escape(_number(value))}</text>'
        )
    return parts


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], *, unit: str = "") -> str:
    """A vertical bar chart of ``values`` named by ``labels``."""
    if len(labels) != len(values):
        raise ValueError("labels and values must have the same length")
    plot_height = BAR_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    max_value = _nice_max(max(values, default=0))
    body = _axis(max_value, plot_height)
    slot = (WIDTH - MARGIN_LEFT - 8) / max(len(values), 1)
    bar_width = min(slot * 0.6, 80)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        bar = plot_height * value / max_value
        x = MARGIN_LEFT + slot * i + (slot - bar_width) / 2
        y = MARGIN_TOP + plot_height - bar
        center = x + bar_width / 2
        shown = f"{_number(value)}{unit}"
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_width:.1f}" height="{bar:.1f}" '
            f'fill="var(--bs-primary, #0d6efd)"><title>{escape(label)}: {escape(shown)}</title>'
            "</rect>"
            f'<text x="{center:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="11" '
            f'fill="var(--bs-body-color, #222)">{escape(shown)}</text>'
            f'<text x="{center:.1f}" y="{BAR_HEIGHT - MARGIN_BOTTOM + 16}" text-anchor="middle" '
            f'font-size="11" fill="var(--bs-body-color, #222)">{escape(label[:24])}</text>'
        )
    description = "; ".join(
        f"{label}: {_number(value)}{unit}" for label, value in zip(labels, values, strict=True)
    )
    return _frame(title, description or "no data", body, BAR_HEIGHT)


def step_chart(title: str, points: Sequence[tuple[str, float]], *, unit: str = "") -> str:
    """A step line over time: ``points`` are ``(label, value)`` in time order."""
    plot_height = BAR_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    max_value = _nice_max(max((v for _, v in points), default=0))
    body = _axis(max_value, plot_height)
    count = max(len(points), 1)
    span = (WIDTH - MARGIN_LEFT - 24) / max(count - 1, 1)
    coords: list[tuple[float, float]] = []
    for i, (_, value) in enumerate(points):
        x = MARGIN_LEFT + 8 + span * i
        y = MARGIN_TOP + plot_height - plot_height * value / max_value
        coords.append((x, y))
    if coords:
        path = [f"M{coords[0][0]:.1f},{coords[0][1]:.1f}"]
        for (x, y), (_, prev_y) in zip(coords[1:], coords, strict=False):
            path.append(f"L{x:.1f},{prev_y:.1f}L{x:.1f},{y:.1f}")
        body.append(
            f'<path d="{"".join(path)}" fill="none" stroke="var(--bs-primary, #0d6efd)" '
            'stroke-width="2"/>'
        )
    # Label at most about eight points, so the axis stays readable.
    every = max(1, len(points) // 8)
    for i, ((label, value), (x, y)) in enumerate(zip(points, coords, strict=True)):
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="var(--bs-primary, #0d6efd)">'
            f"<title>{escape(label)}: {escape(_number(value))}{escape(unit)}</title></circle>"
        )
        if i % every == 0 or i == len(points) - 1:
            body.append(
                f'<text x="{x:.1f}" y="{BAR_HEIGHT - MARGIN_BOTTOM + 16}" text-anchor="middle" '
                f'font-size="11" fill="var(--bs-body-color, #222)">{escape(label)}</text>'
            )
    description = "; ".join(f"{label}: {_number(value)}{unit}" for label, value in points)
    return _frame(title, description or "no data", body, BAR_HEIGHT)
