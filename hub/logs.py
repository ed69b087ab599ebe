"""Structured logs for LearnHub's own processes (the service, the CLI).

Each record is one line: time, level, logger, message, then `key=value` pairs from the record's
`extra` (who, which course, what outcome). Keys that name secrets are never printed, whatever a
caller passes.
"""

from __future__ import annotations

import logging
import re

#: Attributes every LogRecord has; anything else came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SECRET_KEY = re.compile(r"(secret|token|password|api_key|authorization|signature)", re.I)


class KeyValueFormatter(logging.Formatter):
    """`2026-11-26T05:00:00 INFO learnhub.access access granted user=ada course=x outcome=added`."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record and its extras; redact secret-looking keys."""
        base = super().format(record)
        # Set difference first: most records (every access line) carry no extras at all.
        extras = sorted(key for key in record.__dict__.keys() - _STANDARD if key[0] != "_")
        pairs = []
        for key in extras:
            value = record.__dict__[key]
            shown = "[redacted]" if _SECRET_KEY.search(key) else value
            text = str(shown)
            if not text or any(ch.isspace() for ch in text) or '"' in text:
                text = '"' + text.replace('"', '\\"') + '"'
            pairs.append(f"{key}={text}")
        return f"{base} {' '.join(pairs)}" if pairs else base


def configure_logging(level: str = "INFO") -> None:
    """Send LearnHub's loggers to stderr as structured lines (idempotent)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The stripe and httpx libraries log every request at INFO (for httpx: every Hub API call);
    # LearnHub logs what they were for, with who and which course. Keep theirs to warnings.
    for noisy in ("stripe", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
