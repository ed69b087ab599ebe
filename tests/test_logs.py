"""Structured logs: who, what course, what outcome; never a secret."""

from __future__ import annotations

import logging

import pytest

from hub.logs import KeyValueFormatter


def render(**extra: object) -> str:
    record = logging.LogRecord(
        "learnhub.access", logging.INFO, __file__, 1, "access granted", None, None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return KeyValueFormatter("%(levelname)s %(name)s %(message)s").format(record)


def test_extras_become_key_value_pairs() -> None:
    line = render(user="ada", course="python-foundations", outcome="added")
    assert line == (
        "INFO learnhub.access access granted course=python-foundations outcome=added user=ada"
    )


def test_secret_keys_are_redacted_and_spaces_quoted() -> None:
    line = render(api_token="abc123", stripe_secret="sk_live_x", reason="no access yet")
    assert "abc123" not in line and "sk_live_x" not in line
    assert "api_token=[redacted]" in line
    assert 'reason="no access yet"' in line


class _Handler:
    """The parts of a Tornado RequestHandler that the access log reads."""

    def __init__(self, status: int, *, public_page_view: bool = False) -> None:
        self.status = status
        if public_page_view:
            self.public_page_view = True
        self.request = type("Request", (), {"request_time": lambda self: 0.002})()

    def get_status(self) -> int:
        return self.status

    def _request_summary(self) -> str:
        return "GET /services/learnhub/ (127.0.0.1)"


def test_service_access_log_levels(caplog: pytest.LogCaptureFixture) -> None:
    from hub.service.base import log_request

    caplog.set_level(logging.DEBUG, logger="tornado.access")
    for handler in (
        _Handler(200, public_page_view=True),  # an anonymous view of a public page
        _Handler(200),
        _Handler(403, public_page_view=True),
        _Handler(500),
    ):
        log_request(handler)  # type: ignore[arg-type]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "200 GET /services/learnhub/ (127.0.0.1) 2.00ms"),
        ("INFO", "200 GET /services/learnhub/ (127.0.0.1) 2.00ms"),
        ("WARNING", "403 GET /services/learnhub/ (127.0.0.1) 2.00ms"),
        ("ERROR", "500 GET /services/learnhub/ (127.0.0.1) 2.00ms"),
    ]
