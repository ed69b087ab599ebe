"""Who is calling the exchange, and what they may do in a course.

Callers authenticate with their own JupyterHub API token (``Authorization: token ...``): inside a
course container that is the server's ``JUPYTERHUB_API_TOKEN``; for the instructor CLI it may be
a user token or the operator's admin service token. :class:`HubAuthorizer` asks the Hub who the
token belongs to (``GET /user`` with that token) and then reads the user's admin flag and groups
with the service's own token, so what a caller's token may see never decides their rights.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Protocol

import httpx

from hub.access.hub_groups import HubClient
from hub.access.policy import Member
from hub.access.scopes import carries_learnhub_scope, is_operator, missing_scope_message
from hub.errors import HubAPIError, LearnHubError

log = logging.getLogger("learnhub.exchange")

#: How long a token's identity and groups are reused (membership changes show up this late).
DEFAULT_CACHE_SECONDS = 5.0
#: Bound of the identity cache, so a flood of random tokens cannot grow memory without limit.
MAX_CACHE_ENTRIES = 4096


class MissingScope(LearnHubError):
    """A valid Hub token without LearnHub's scope (:data:`hub.access.scopes.LEARNHUB_SCOPE`)."""

    def __init__(self) -> None:
        super().__init__(missing_scope_message())


class _Unscoped:
    """Cache marker: the token is valid but lacks LearnHub's scope."""


_UNSCOPED = _Unscoped()


class Authorizer(Protocol):
    """Resolves a Hub API token to a :class:`Member`."""

    async def identify(self, token: str) -> Member | None:
        """The token's owner, or None when the token is not valid.

        Raises :class:`MissingScope` for a valid token that lacks LearnHub's scope, and
        :class:`hub.errors.HubAPIError` when the Hub cannot be asked.
        """
        ...


class StaticAuthorizer:
    """An :class:`Authorizer` from a fixed ``{token: Member}`` map (tests, local tools)."""

    def __init__(self, callers: dict[str, Member]) -> None:
        self.callers = dict(callers)

    async def identify(self, token: str) -> Member | None:
        """The caller registered for ``token``."""
        return self.callers.get(token)


class HubAuthorizer:
    """Resolves tokens through the JupyterHub REST API, with a short cache.

    ``hub`` is the service's own :class:`HubClient` (its token needs ``read:users``, which
    includes users' groups and admin flag). A service token counts as an operator only if its
    own scopes include LearnHub's operator scope (``custom:learnhub:operate``), never because it
    may administer the Hub's users.
    """

    def __init__(
        self, hub: HubClient, *, cache_seconds: float = DEFAULT_CACHE_SECONDS, timeout: float = 10
    ) -> None:
        self.hub = hub
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Member | _Unscoped | None]] = {}
        self._http = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def identify(self, token: str) -> Member | None:
        """The token's owner with their current admin flag and groups, or None."""
        # Keyed by a hash so the cache never holds a readable copy of the token.
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            caller = cached[1]
        else:
            caller = await self._resolve(token)
            if len(self._cache) >= MAX_CACHE_ENTRIES:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= MAX_CACHE_ENTRIES:
                    self._cache.clear()
            self._cache[key] = (now + self.cache_seconds, caller)
        if isinstance(caller, _Unscoped):
            raise MissingScope
        return caller

    async def _whoami(self, token: str) -> dict[str, Any] | None:
        url = f"{self.hub.api_url}/user"
        try:
            response = await self._http.get(url, headers={"Authorization": f"token {token}"})
        except httpx.HTTPError as exc:
            raise HubAPIError(f"JupyterHub API unreachable at {self.hub.api_url}: {exc}") from exc
        if response.status_code in (401, 403, 404):
            return None
        if response.status_code != 200:
            raise HubAPIError(f"GET /user -> {response.status_code}", status=response.status_code)
        model = response.json()
        return model if isinstance(model, dict) else None

    async def _resolve(self, token: str) -> Member | _Unscoped | None:
        model = await self._whoami(token)
        if model is None or not model.get("name"):
            return None
        name = str(model["name"])
        scopes = set(model.get("scopes") or ())
        if not carries_learnhub_scope(scopes):
            return _UNSCOPED
        if model.get("kind") == "service":
            return Member(name=name, admin=is_operator(scopes), kind="service")
        # The caller's own token may not be allowed to read its groups (a server token is
        # narrow); the service's token reads them.
        user = await self.hub.user(name)
        if user is None:
            return None
        return Member.from_hub_model(user)
