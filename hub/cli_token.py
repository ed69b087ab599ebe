"""The Hub token of `learnhub-cli`: where the demo keeps it and how a command finds it.

A module of its own (standard library and settings only) so that the grading worker
(:mod:`hub.grading_worker`) finds the token without importing the whole CLI.
"""

from __future__ import annotations

from pathlib import Path

from hub.errors import LearnHubError
from hub.settings import Settings


def cli_token_file(settings: Settings) -> Path:
    """Where the demo keeps the CLI token it generated (mode 0600)."""
    return settings.data_dir / "cli-token"


def known_cli_token(settings: Settings) -> str | None:
    """LEARNHUB_CLI_TOKEN, else the one the demo generated, else None."""
    token = settings.secret("cli_token")
    if token:
        return token
    path = cli_token_file(settings)
    return path.read_text().strip() if path.exists() else None


def require_cli_token(settings: Settings) -> str:
    """The Hub token of `learnhub-cli` (role of the same name: only the scopes the commands
    use). The full-admin LEARNHUB_ADMIN_TOKEN is never taken instead: it may do far more."""
    token = known_cli_token(settings)
    if token:
        return token
    raise LearnHubError(
        "no CLI token: set LEARNHUB_CLI_TOKEN to the one the hub was started with "
        f"(the demo writes one to {cli_token_file(settings)})"
    )
