"""Structured logs for LearnHub's own processes (the service, the CLI) and for LearnHub's
loggers (``learnhub.*``) inside the Hub's process.

Each record is one line: time, level, logger, message, then `key=value` pairs from the record's
`extra` (who, which course, what outcome). Keys that name secrets are never printed, whatever a
caller passes.
"""

from __future__ import annotations

import logging
import re
from typing import Any

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


#: The line every LearnHub process writes (before the ``key=value`` pairs).
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


def configure_logging(level: str = "INFO") -> None:
    """Send LearnHub's loggers to stderr as structured lines (idempotent)."""
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter(LINE_FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The stripe and httpx libraries log every request at INFO (for httpx: every Hub API call);
    # LearnHub logs what they were for, with who and which course. Keep theirs to warnings.
    for noisy in ("stripe", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def hub_logging_config(level: str) -> dict[str, Any]:
    """`JupyterHub.logging_config`: LearnHub's loggers in the Hub's process, as in the service.

    JupyterHub configures only its own logger; a ``learnhub.*`` record reached Python's
    last-resort handler, which prints WARNING and above as the bare message (its ``extra``
    dropped) and nothing below. This gives ``learnhub`` its own stderr handler with
    :class:`KeyValueFormatter` at the Hub's level; JupyterHub's lines keep their format.
    traitlets merges it into the Hub's logging configuration each time it applies it.
    """
    return {
        "formatters": {
            "learnhub": {
                "class": f"{__name__}.KeyValueFormatter",
                "format": LINE_FORMAT,
                "datefmt": DATE_FORMAT,
            }
        },
        "handlers": {
            "learnhub": {
                "class": "logging.StreamHandler",
                "formatter": "learnhub",
                "stream": "ext://sys.stderr",
            }
        },
        # Not propagated: a root handler someone adds would print each record a second time.
        "loggers": {"learnhub": {"level": level, "handlers": ["learnhub"], "propagate": False}},
    }
