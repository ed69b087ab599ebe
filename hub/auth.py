"""Sign-in: local accounts with passwords (embedded default) or OAuth (production).

Local sign-up uses jupyterhub-nativeauthenticator, a maintained JupyterHub authenticator that
stores bcrypt password hashes in the Hub database. LearnHub keeps its table and pages and
changes what a stranger on the sign-up and login forms can do (docs/security.md, "Identities
and logins"):

- names of configured administrators and instructors, and of Hub users who have no password
  yet, cannot be claimed: signing up under one creates a *locked* account that the operator
  activates after checking who it is;
- new names follow one pattern (:mod:`hub.usernames`); look-alikes and invisible characters are
  refused with a message that names the problem;
- logins back off per username and per client address (:mod:`hub.logins`); bcrypt runs off the
  event loop, an unknown name costs the same bcrypt work as a known one, and passwords longer
  than bcrypt's 72 bytes are refused with a message instead of a 500.

In demo mode it also seeds the demo accounts at start, so the platform can be tried without an
email round-trip.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import ChangePasswordHandler as NativeChangePasswordHandler
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.handlers import SignUpHandler as NativeSignUpHandler
from nativeauthenticator.orm import UserInfo
from prometheus_client import Counter
from tornado import web
from traitlets import Bool, Dict, Integer, Unicode, default

from hub.access.hub_api import HUB_API_HANDLERS
from hub.access.scopes import OPERATOR_SCOPE, is_operator
from hub.courses import Catalog
from hub.errors import CourseError
from hub.i18n import translator
from hub.i18n.hub_pages import current_language
from hub.logins import LoginThrottle
from hub.mail.hub_handlers import HANDLERS as MAIL_HANDLERS
from hub.mail.hub_handlers import log_unavailable, queue_verification, show_message
from hub.passwords import hash_password, password_matches
from hub.service.ratelimit import RateLimiter
from hub.settings import EmailSettings, LockoutSettings, parseaddr_address
from hub.store.hub_side import UNAVAILABLE
from hub.usernames import lookalike_of, normalize_username, username_refusal

#: The lockout defaults live in the settings model; the traits below only mirror them.
_LOCKOUT_DEFAULTS = LockoutSettings()
_EMAIL_DEFAULTS = EmailSettings()

#: bcrypt uses only the first 72 bytes of a password; bcrypt 5 raises on longer ones.
MAX_PASSWORD_BYTES = 72

#: One per bcrypt check at login, whether the name exists or not (an operator can watch it for
#: password spraying; the tests use it to prove unknown names cost the same work).
PASSWORD_CHECKS = Counter(
    "learnhub_password_checks_total", "bcrypt password checks made for login attempts"
)


def password_too_long(password: str, lang: str = "en") -> str | None:
    """The message (in ``lang``) for a password bcrypt cannot take, or None when it fits."""
    size = len(password.encode("utf-8", "replace"))
    if size <= MAX_PASSWORD_BYTES:
        return None
    return translator(lang)("password_too_long", limit=MAX_PASSWORD_BYTES, size=size)


@dataclass(frozen=True)
class LoginOutcome:
    """Why a login attempt failed, so the login page can say so."""

    reason: str  # "locked", "too_long", "unauthorized", "invalid"
    wait_seconds: float = 0.0


@dataclass(frozen=True)
class SignUpResult:
    """What the sign-up page says, and the account it created (if any)."""

    alert: str
    message: str
    account: Any = None
    #: The account exists but its confirmation mail could not be queued (LearnHub's database
    #: was unavailable): the page says so and how to ask for another.
    mail_unavailable: bool = False


class LoginHandler(NativeLoginHandler):  # type: ignore[misc]
    """NativeAuthenticator's login page, made to work with JupyterHub 6, with clear refusals.

    nativeauthenticator 1.3.0 (its latest release) breaks on JupyterHub 6.1: its POST handler
    uses `self.statsd`, which JupyterHub 6 removed, and its `_render` rejects the `sync` argument
    JupyterHub's error pages now pass. Both turn every login into a 500. Its failure path also
    ran bcrypt a second time on the event loop to word the message; here the authenticator
    leaves its verdict on the handler (:attr:`login_outcome`) instead.
    """

    login_outcome: LoginOutcome | None = None

    def render_template(self, name: str, **ns: Any) -> Any:
        """Upstream's page, plus the "Forgot password?" link when mail is on."""
        if self.authenticator.email_enabled:
            ns.setdefault("forgot_password_url", f"{self.hub.base_url}forgot-password")
        return super().render_template(name, **ns)

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
        username = data.get("username", "")
        outcome = self.login_outcome or LoginOutcome("invalid")
        # In the page's language (hub.i18n.hub_pages: the request's ?lang=, cookie, browser).
        _ = translator(current_language())
        error = _("login_invalid")
        if outcome.reason == "locked":
            self.set_status(429)
            self.set_header("Retry-After", str(math.ceil(outcome.wait_seconds)))
            error = _("login_locked", seconds=math.ceil(outcome.wait_seconds))
        elif outcome.reason == "too_long":
            self.set_status(400)
            size = len(data.get("password", "").encode("utf-8", "replace"))
            error = _("password_too_long", limit=MAX_PASSWORD_BYTES, size=size)
        elif outcome.reason == "unauthorized":
            error = _("login_unauthorized", name=normalize_username(username))
        html = await self._render(login_error=error, username=username)
        self.finish(html)


class SignUpHandler(NativeSignUpHandler):  # type: ignore[misc]
    """NativeAuthenticator's sign-up page; `LearnHubNativeAuthenticator.sign_up` decides.

    An account that may log in at once is signed in and sent back where the visitor came from
    (``?next=``, which JupyterHub's ``get_next_url`` keeps to this site), instead of being told
    to go home, log in and find the course again.
    """

    async def post(self) -> None:
        """Create the account and sign in, or show the form again with what to change."""
        if not self.authenticator.enable_signup:
            raise web.HTTPError(404)

        def field(name: str) -> str:
            return str(self.get_body_argument(name, "", strip=False))

        result: SignUpResult = await self.authenticator.sign_up(
            username=field("username"),
            password=field("signup_password"),
            confirmation=field("signup_password_confirmation"),
            email=field("email"),
            has_2fa=bool(field("2fa")),
        )
        account = result.account
        next_url = ""
        if result.alert == "alert-success" and account is not None and account.is_authorized:
            # The full login path (throttle, bcrypt, allowed users), as the login form takes.
            user = await self.login_user(
                {"username": account.username, "password": field("signup_password")}
            )
            if user:
                self._jupyterhub_user = user
                next_url = self.get_next_url(user)
                if not result.mail_unavailable:
                    self.redirect(next_url)
                    return
        if result.mail_unavailable:
            await self._mail_unavailable(result, field("email").strip(), next_url)
            return
        html = await self.render_template(
            "signup.html",
            ask_email=self.authenticator.ask_email_on_signup,
            result_message=result.message,
            alert=result.alert,
            two_factor_auth=self.authenticator.allow_2fa,
            two_factor_auth_user=account.has_2fa if account is not None else "",
            two_factor_auth_value=account.otp_secret if account is not None else "",
            # LearnHub does not verify reCAPTCHA; never show a widget that checks nothing.
            recaptcha_key=None,
            tos=self.authenticator.tos,
        )
        self.finish(html)

    async def _mail_unavailable(self, result: SignUpResult, address: str, next_url: str) -> None:
        """503: the account exists (and is signed in when it may be), its confirmation mail
        was not sent; where to ask for another, then on to where the member was going."""
        _ = translator(current_language())
        message = _(
            "mail_unavailable_signup",
            name=result.account.username,
            address=address,
            settings=_("nav_email"),
        )
        if result.alert != "alert-success":  # locked, or waiting for an administrator
            message = f"{message} {result.message}"
        await show_message(
            self,
            503,
            "mail-unavailable",
            _("mail_unavailable_title"),
            message,
            alert="warning",
            link_url=next_url or self.settings["login_url"],
            link_text=_("mail_unavailable_continue") if next_url else _("sign_in"),
        )


class ChangePasswordHandler(NativeChangePasswordHandler):  # type: ignore[misc]
    """``/hub/change-password``: upstream's page said everything in English and gave bcrypt
    an over-long password (a 500). Here every outcome is a message in the page's language."""

    @web.authenticated  # type: ignore[misc]
    async def post(self) -> None:
        """Check the current password, the confirmation and the length, then change it."""
        user = await self.get_current_user()
        _ = translator(current_language())
        old = self.get_body_argument("old_password", "", strip=False)
        new = self.get_body_argument("new_password", "", strip=False)
        confirmation = self.get_body_argument("new_password_confirmation", "", strip=False)
        problem = password_too_long(old, current_language()) or password_too_long(
            new, current_language()
        )
        account = self.authenticator.get_user(user.name)
        # bcrypt's check and hash run in worker threads, as at login (upstream ran both on the
        # Hub's event loop, stalling every request it serves).
        if problem is None and (
            account is None or not await password_matches(old, account.password)
        ):
            problem = _("change_password_wrong")
        if problem is None and new != confirmation:
            problem = _("reset_mismatch")
        if problem is None and not self.authenticator.is_password_strong(new):
            problem = _("reset_weak", length=self.authenticator.minimum_password_length)
        if problem is None:
            account.password = await hash_password(new)
            self.authenticator.db.commit()
        outcome = "refused" if problem else "changed"
        self.log.info("password change: user=%s outcome=%s", user.name, outcome)
        html = await self.render_template(
            "change-password.html",
            user_name=user.name,
            result_message=problem or _("change_password_done"),
            alert="alert-danger" if problem else "alert-success",
        )
        self.finish(html)


class ActivateAccountHandler(APIHandler):  # type: ignore[misc]
    """``POST /hub/api/learnhub/accounts/<name>/activate``: unlock a reserved account.

    Admins can also use nativeauthenticator's `/hub/authorize` page; this is the way for the
    operator's token (`LEARNHUB_CLI_TOKEN`), so the very first administrator can be activated.
    It requires LearnHub's operator scope, not ``admin:users``: the operator's token need not be
    able to make anyone a Hub admin. (``needs_scope`` cannot name it: it checks the name when
    this module is imported, before the Hub has loaded LearnHub's custom scopes.)
    """

    async def post(self, name: str) -> None:
        """Mark the account authorized (idempotent); 404 when it has no password yet."""
        if not self.current_user:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if not is_operator(self.expanded_scopes):
            raise web.HTTPError(
                403,
                f"activating an account needs the scope {OPERATOR_SCOPE}: use the operator's "
                "token (LEARNHUB_CLI_TOKEN), or an admin's /hub/authorize page",
            )
        username = self.authenticator.normalize_username(name)
        account = self.authenticator.get_user(username)
        if account is None:
            raise web.HTTPError(404, f"{username} has not signed up yet")
        account.is_authorized = True
        self.db.commit()
        self.log.info("account activated: user=%s by=%s", username, self.current_user.name)
        self.finish({"name": username, "activated": True})


class LearnHubNativeAuthenticator(NativeAuthenticator):  # type: ignore[misc]
    """NativeAuthenticator with reserved names, safe usernames and throttled logins."""

    seed_users = Dict(
        {},
        config=True,
        help="Accounts to create at start if missing: {username: password}. Demo mode only.",
    )
    reserved_courses_dir = Unicode(
        "",
        config=True,
        help=(
            "Course catalog whose instructors' names cannot be claimed by sign-up. Read at each "
            "sign-up, so an instructor added to a course.yaml is protected without a restart."
        ),
    )
    lockout_name_failures = Integer(
        _LOCKOUT_DEFAULTS.name_failures,
        config=True,
        help="Failed logins for one username before it must wait (settings: auth.lockout).",
    )
    lockout_address_failures = Integer(
        _LOCKOUT_DEFAULTS.address_failures,
        config=True,
        help="Failed logins from one client address before it must wait.",
    )
    lockout_seconds = Integer(
        _LOCKOUT_DEFAULTS.seconds, config=True, help="First wait after a limit is reached."
    )
    lockout_max_seconds = Integer(
        _LOCKOUT_DEFAULTS.max_seconds,
        config=True,
        help="Longest wait; failures further apart are forgotten.",
    )

    email_enabled = Bool(
        False,
        config=True,
        help="Ask an address at sign-up, verify it, offer password reset (settings: email).",
    )
    email_secret = Unicode("", config=True, help="Signs the links in mail (LEARNHUB_EMAIL_SECRET).")
    learnhub_db_url = Unicode("", config=True, help="LearnHub's database: the mail outbox.")
    learnhub_db_owner = Integer(
        -1, config=True, help="uid that must own its SQLite file (the service's); -1: the Hub's."
    )
    email_verify_hours = Integer(_EMAIL_DEFAULTS.verify_hours, config=True, help="See settings.")
    email_reset_minutes = Integer(_EMAIL_DEFAULTS.reset_minutes, config=True, help="See settings.")
    email_reset_requests = Integer(
        _EMAIL_DEFAULTS.reset_requests, config=True, help="Reset requests per window."
    )
    email_reset_window = Integer(60, config=True, help="Seconds of the reset-request window.")

    @default("ask_email_on_signup")
    def _ask_email(self) -> bool:
        return bool(self.email_enabled)

    @default("db")
    def _hub_db(self) -> Any:
        # NativeAuthenticator keeps its password table in the Hub database through this session;
        # taking it explicitly avoids JupyterHub's deprecation warning on every start.
        return self._deprecated_db_session

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name_throttle = LoginThrottle(
            self.lockout_name_failures, self.lockout_seconds, self.lockout_max_seconds
        )
        self.address_throttle = LoginThrottle(
            self.lockout_address_failures, self.lockout_seconds, self.lockout_max_seconds
        )
        # Unknown names are checked against this, so they cost the same bcrypt work as known
        # ones and the response time does not tell which accounts exist. Same cost factor as
        # the stored hashes (bcrypt's default, as nativeauthenticator uses).
        self._dummy_hash = bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt())
        self.reset_limiter = RateLimiter(
            {"reset": (self.email_reset_requests, self.email_reset_window)}
        )
        self._learnhub_db: Any = None
        if self.email_enabled:
            from hub.store.hub_side import hub_database

            # Made here, once, on the main thread: handlers use it from worker threads.
            # Why the Hub (root in production) may write the service's SQLite file: the file
            # is the service's (hub.privilege creates it for the service before anything opens
            # it), and SQLite gives the -wal, -shm and journal files a root process creates to
            # the database file's owner, with its mode; so the service can always write after
            # us (tests/email/test_mail_units.py). A Hub that is not root runs the service as
            # itself; PostgreSQL has no files. The service's user could put a link where the
            # file was: hub_database never creates a file and refuses a link or a file the
            # service does not own (docs/security.md, "Still as root").
            owner = self.learnhub_db_owner if self.learnhub_db_owner >= 0 else os.geteuid()
            self._learnhub_db = hub_database(self.learnhub_db_url, owner)
            self.log.info("email: on (address at sign-up, verification, password reset)")
        else:
            self.log.info(
                "email: off (settings email.enabled: false): sign-up asks no address and "
                "there is no password reset"
            )
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

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        """Upstream handlers with LearnHub's login, sign-up and change-password pages,
        and LearnHub's additions to the Hub API."""
        replaced = {
            r"/login": LoginHandler,
            r"/signup": SignUpHandler,
            r"/change-password": ChangePasswordHandler,
        }
        handlers: list[tuple[str, Any]] = super().get_handlers(app)
        mail = MAIL_HANDLERS if self.email_enabled else []
        return [(path, replaced.get(path, h)) for path, h in handlers] + [
            (r"/api/learnhub/accounts/([^/]+)/activate", ActivateAccountHandler),
            *HUB_API_HANDLERS,
            *mail,
        ]

    def learnhub_db(self) -> Any:
        """LearnHub's database (the mail outbox, members' addresses); only with mail on."""
        if self._learnhub_db is None:
            raise RuntimeError("email is off: LearnHub's database is not opened for mail")
        return self._learnhub_db

    def normalize_username(self, username: str) -> str:
        """NFKC, then JupyterHub's lower-casing: a full-width name finds the plain account."""
        return str(super().normalize_username(normalize_username(username)))

    def is_password_strong(self, password: str) -> bool:
        """Upstream's length and common-password checks, plus bcrypt's 72-byte limit."""
        return password_too_long(password) is None and bool(super().is_password_strong(password))

    # -- login -------------------------------------------------------------------------------

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        """The username if the password is right and the account active; else None.

        Refused before bcrypt: a username or address that must wait, a password bcrypt cannot
        take. Every other attempt costs exactly one bcrypt check in a worker thread, whether the
        name exists or not.
        """
        username = self.normalize_username(data.get("username", ""))
        password = data.get("password", "")
        address = str(handler.request.remote_ip) if handler is not None else ""
        wait = max(self.name_throttle.wait(username), self.address_throttle.wait(address))
        if wait > 0:
            self.log.warning(
                "login refused: user=%r address=%s outcome=locked wait=%.0fs",
                username[:64],
                address,
                wait,
            )
            self._tell(handler, LoginOutcome("locked", wait))
            return None
        if password_too_long(password):
            self._tell(handler, LoginOutcome("too_long"))
            return None
        self.name_throttle.count_attempt(username)
        self.address_throttle.count_attempt(address)
        account = self.get_user(username)
        valid = await self._password_matches(
            password, account.password if account is not None else self._dummy_hash
        )
        if account is None or not valid:
            self._tell(handler, LoginOutcome("invalid"))
            return None
        if account.has_2fa and not account.is_valid_token(data.get("2fa") or ""):
            self._tell(handler, LoginOutcome("invalid"))
            return None
        # A correct password is not a failure, for the name or for the address.
        self.name_throttle.forget(username)
        self.address_throttle.forgive(address)
        if not account.is_authorized:
            self._tell(handler, LoginOutcome("unauthorized"))
            return None
        return username

    async def _password_matches(self, password: str, stored: bytes) -> bool:
        # Counted: the operator watches the bcrypt work that login attempts cost.
        PASSWORD_CHECKS.inc()
        return await password_matches(password, stored)

    @staticmethod
    def _tell(handler: Any, outcome: LoginOutcome) -> None:
        # The login page words its message from this; other callers have no use for it.
        if isinstance(handler, LoginHandler):
            handler.login_outcome = outcome

    # -- sign-up -----------------------------------------------------------------------------

    def reserved_role(self, username: str) -> str | None:
        """Who ``username`` is reserved for ("administrator", "instructor", "member"), or None.

        Raises :class:`CourseError` when the catalog cannot be read: sign-up then fails closed.
        """
        if username in self.admin_users:
            return "administrator"
        if self.reserved_courses_dir:
            for entry in Catalog.load(Path(self.reserved_courses_dir)):
                if username in {self.normalize_username(n) for n in entry.course.instructors}:
                    return "instructor"
        # Hub users without a password were made by the operator (API, grants, groups) for a
        # particular person; the first stranger to pick the name must not become them.
        if self.db.query(orm.User).filter_by(name=username).first() is not None:
            return "member"
        return None

    def _known_names(self) -> set[str]:
        names = {name for (name,) in self.db.query(UserInfo.username)}
        names |= {name for (name,) in self.db.query(orm.User.name)}
        names |= set(self.admin_users)
        if self.reserved_courses_dir:
            for entry in Catalog.load(Path(self.reserved_courses_dir)):
                names |= {self.normalize_username(n) for n in entry.course.instructors}
        return names

    async def sign_up(
        self, *, username: str, password: str, confirmation: str, email: str, has_2fa: bool
    ) -> SignUpResult:
        """Create an account from the sign-up form, or say exactly what to change (in the
        page's language)."""
        lang = current_language()
        _ = translator(lang)
        problem = username_refusal(username, lang)
        if problem:
            self.log.info("sign-up refused: user=%r outcome=bad-name", username[:64])
            return SignUpResult("alert-danger", problem)
        name = self.normalize_username(username)
        if password != confirmation:
            return SignUpResult("alert-danger", _("signup_password_mismatch"))
        too_long = password_too_long(password, lang)
        if too_long:
            return SignUpResult("alert-danger", too_long)
        email = email.strip()
        if self.email_enabled:
            if not email:
                return SignUpResult("alert-danger", _("signup_email_needed"))
            if parseaddr_address(email) != email:
                return SignUpResult("alert-danger", _("signup_email_invalid", address=email))
        if not self.is_password_strong(password):
            return SignUpResult(
                "alert-danger", _("signup_password_weak", length=self.minimum_password_length)
            )
        if self.user_exists(name):
            return SignUpResult("alert-danger", _("signup_name_in_use"))
        try:
            role = self.reserved_role(name)
            lookalike = lookalike_of(name, self._known_names())
        except CourseError:
            self.log.exception("sign-up refused: the course catalog cannot be read")
            return SignUpResult("alert-danger", _("signup_unavailable"))
        if lookalike:
            self.log.info("sign-up refused: user=%s outcome=lookalike of=%s", name, lookalike)
            return SignUpResult(
                "alert-danger", _("signup_lookalike", name=name, existing=lookalike)
            )
        hashed = await hash_password(password)
        if self.user_exists(name):  # someone took it while the hash was computed
            return SignUpResult("alert-danger", _("signup_just_taken"))
        try:
            account = UserInfo(
                username=name,
                password=hashed,
                email=email or None,
                has_2fa=has_2fa,
                is_authorized=self.open_signup and role is None,
            )
        except AssertionError:
            return SignUpResult("alert-danger", _("signup_email_not_valid"))
        self.db.add(account)
        self.db.commit()
        # The account is committed first: a mail that cannot be queued loses nothing but the
        # mail, which the member asks for again from their mail settings.
        no_mail = self.email_enabled and not await self._queue_verification(name, email, lang)
        if role is not None:
            self.log.warning("sign-up: user=%s outcome=locked reserved-for=%s", name, role)
            return SignUpResult(
                "alert-warning",
                _("signup_reserved", name=name, role=_(f"signup_role_{role}")),
                account,
                mail_unavailable=no_mail,
            )
        self.log.info("sign-up: user=%s outcome=created open=%s", name, self.open_signup)
        if self.open_signup:
            return SignUpResult("alert-success", _("signup_done"), account, no_mail)
        return SignUpResult("alert-info", _("signup_sent_to_admin"), account, no_mail)

    async def _queue_verification(self, name: str, email: str, lang: str) -> bool:
        """Queue the mail that confirms a new member's address; False when it was not."""
        try:
            await asyncio.to_thread(queue_verification, self, name, email, lang)
        except UNAVAILABLE as exc:
            log_unavailable(self.log, "signup", exc, user=name, outcome="created-mail-not-queued")
            return False
        except Exception:  # a bug: its traceback; the member is told all the same
            self.log.exception("sign-up: user=%s verification mail not queued", name)
            return False
        return True
