"""Sign-in: local accounts with passwords (embedded default) or OAuth (production).

Local sign-up uses jupyterhub-nativeauthenticator, a maintained JupyterHub authenticator that
stores bcrypt password hashes in the Hub database. LearnHub adds one thing: in demo mode it seeds
the demo accounts at start, so the platform can be tried without an email round-trip.
"""

from __future__ import annotations

from typing import Any

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from traitlets import Dict, default


class LoginHandler(NativeLoginHandler):  # type: ignore[misc]
    """NativeAuthenticator's login page, made to work with JupyterHub 6.

    nativeauthenticator 1.3.0 (its latest release) breaks on JupyterHub 6.1: its POST handler
    uses `self.statsd`, which JupyterHub 6 removed, and its `_render` rejects the `sync` argument
    JupyterHub's error pages now pass. Both turn every login into a 500. This subclass keeps the
    upstream behaviour and templates and fixes only those two calls.
    """

    def _render(self, login_error: str | None = None, username: str | None = None, **_: Any) -> Any:
        return super()._render(login_error=login_error, username=username)

    async def post(self) -> None:
        """Log in, or show the login form again with the reason it failed."""
        data = {arg: self.get_argument(arg, strip=False) for arg in self.request.arguments}
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        error = "Invalid username or password."
        username = data.get("username", "")
        info = self.authenticator.get_user(username)
        if (
            info is not None
            and info.is_valid_password(data.get("password", ""))
            and not info.is_authorized
        ):
            error = f"User {username} has not been authorized by an administrator yet."
        html = await self._render(login_error=error, username=username)
        self.finish(html)


class LearnHubNativeAuthenticator(NativeAuthenticator):  # type: ignore[misc]
    """NativeAuthenticator that can create a fixed set of accounts at start (demo mode)."""

    seed_users = Dict(
        {},
        config=True,
        help="Accounts to create at start if missing: {username: password}. Demo mode only.",
    )

    @default("db")
    def _hub_db(self) -> Any:
        # NativeAuthenticator keeps its password table in the Hub database through this session;
        # taking it explicitly avoids JupyterHub's deprecation warning on every start.
        return self._deprecated_db_session

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        """Upstream handlers, with the login page replaced by the JupyterHub 6 compatible one."""
        handlers: list[tuple[str, Any]] = super().get_handlers(app)
        return [(path, LoginHandler if path == r"/login" else h) for path, h in handlers]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for username, password in sorted(self.seed_users.items()):
            if self.user_exists(username):
                continue
            info = self.create_user(username, password)
            if info is None:
                raise ValueError(
                    f"could not create seed user {username!r}: invalid name or weak password"
                )
            info.is_authorized = True
            self.db.commit()
            self.log.info("seeded account: user=%s outcome=created", username)
