"""Structured logs: who, what course, what outcome; never a secret."""

from __future__ import annotations

import logging

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
