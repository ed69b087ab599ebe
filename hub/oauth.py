"""Sign-in through OAuth (production): oauthenticator's classes with LearnHub's Hub API.

Configured exactly as oauthenticator documents (``c.GitHubOAuthenticator.*``,
``c.GenericOAuthenticator.*``: traitlets applies a class's settings to its subclasses).
The only addition is :data:`hub.access.hub_api.HUB_API_HANDLERS`, which the LearnHub service
uses to change course groups; the local-account authenticator (:mod:`hub.auth`) adds the same.
"""

from __future__ import annotations

from typing import Any

from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator

from hub.access.hub_api import HUB_API_HANDLERS


class LearnHubGitHubOAuthenticator(GitHubOAuthenticator):  # type: ignore[misc]
    """GitHub sign-in, with LearnHub's additions to the Hub API."""

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        """oauthenticator's login and callback handlers, then LearnHub's API handlers."""
        return [*super().get_handlers(app), *HUB_API_HANDLERS]


class LearnHubGenericOAuthenticator(GenericOAuthenticator):  # type: ignore[misc]
    """Sign-in with any OAuth2 / OpenID Connect provider, with LearnHub's Hub API."""

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        """oauthenticator's login and callback handlers, then LearnHub's API handlers."""
        return [*super().get_handlers(app), *HUB_API_HANDLERS]
