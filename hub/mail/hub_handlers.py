"""The Hub's mail pages: confirm an address, "Forgot password?", choose a new password.

They run in the Hub process (they change the password table in the Hub's database) and queue
their mail in LearnHub's database; the LearnHub service sends it (:mod:`hub.mail.sender`).
The Hub may be root and the service another user: that is safe for the service's SQLite file
(why: :class:`hub.auth.LearnHubNativeAuthenticator`'s comment where it opens it).
What a stranger can learn here is kept to nothing (docs/security.md, "Mail: links, tokens
and enumeration"):

- the reset form answers the same words, status and timing whether or not an account has the
  address: the look-up and the queueing run after the answer, off the request;
- reset requests are rate-limited per client address and per address asked for;
- a reset link is signed, expires after ``email.reset_minutes`` and works once: it carries a
  keyed fingerprint of the password hash it replaces, which the first reset changes;
- a verification link confirms one address for one account, for ``email.verify_hours``.

When LearnHub's database cannot be used (the Hub's check refuses its file, or it is
unreachable or locked: :data:`hub.store.hub_side.UNAVAILABLE`), these pages and sign-up answer
503 with ``Retry-After`` and say so in the visitor's language, with one warning in the log; the
reset form's answer still does not depend on the address.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from jupyterhub.handlers import BaseHandler

from hub.i18n import translator
from hub.i18n.hub_pages import current_language
from hub.mail import members, outbox, tokens
from hub.mail.outbox import enqueue
from hub.passwords import hash_password
from hub.service.ratelimit import RateLimiter, retry_after
from hub.settings import parseaddr_address
from hub.store.hub_side import UNAVAILABLE, probe, unavailable_reason

log = logging.getLogger("learnhub.mail")

#: ``Retry-After`` of the pages that find LearnHub's database unavailable: the pages say "try
#: again in a few minutes". A lock clears in seconds; a refused file waits for the operator.
RETRY_AFTER_SECONDS = 120

#: Background look-ups of the reset form, kept referenced until done (asyncio keeps only weak
#: references to tasks).
_pending: set[asyncio.Task[None]] = set()


def log_unavailable(
    logger: Any, page: str, exc: BaseException, *, user: str = "", client: str = "", outcome: str
) -> None:
    """The one warning of a request that found LearnHub's database unavailable.

    Through the Hub's own logger, with ``key=value`` pairs in the message: the wording
    docs/how-to/email.md gives operators, older than ``learnhub.*`` records carrying their
    ``extra`` in the Hub's log (:func:`hub.logs.hub_logging_config`). Who (the account, or the
    client's address when there is none yet; never a mail address, which would tell whose the
    address is), which page, what became of it, and the database's reason: never a statement,
    a parameter or a token.
    """
    logger.warning(
        "mail service unavailable: page=%s user=%s client=%s outcome=%s reason=%r",
        page,
        user or "-",
        client or "-",
        outcome,
        unavailable_reason(exc),
    )


async def show_message(
    handler: Any,
    status: int,
    outcome: str,
    heading: str,
    message: str,
    *,
    alert: str = "info",
    link_url: str = "",
    link_text: str = "",
) -> None:
    """A short result page (``mail-message.html``) in the visitor's language; a 503 asks the
    visitor to come back after :data:`RETRY_AFTER_SECONDS`."""
    handler.set_status(status)
    if status == 503:
        handler.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
    html = await handler.render_template(
        "mail-message.html",
        outcome=outcome,
        heading=heading,
        message=message,
        alert=alert,
        link_url=link_url,
        link_text=link_text,
    )
    handler.finish(html)


class MailPage(BaseHandler):  # type: ignore[misc]
    """Shared parts: the authenticator's mail settings and the result page."""

    @property
    def auth(self) -> Any:
        """The LearnHub authenticator (its ``email_*`` traits and LearnHub's database)."""
        return self.authenticator

    def _(self, key: str, **values: Any) -> str:
        return translator(current_language())(key, **values)

    async def show(
        self,
        status: int,
        outcome: str,
        heading: str,
        message: str,
        *,
        alert: str = "info",
        link_url: str = "",
        link_text: str = "",
    ) -> None:
        """A short result page in the visitor's language."""
        await show_message(
            self,
            status,
            outcome,
            heading,
            message,
            alert=alert,
            link_url=link_url,
            link_text=link_text,
        )

    def require_enabled(self) -> None:
        """404 when mail is off: the pages do not exist then."""
        from tornado import web

        if not self.auth.email_enabled:
            raise web.HTTPError(404)


class VerifyEmailHandler(MailPage):
    """``GET /hub/verify-email?token=``: confirm the address a member gave."""

    async def get(self) -> None:
        """Mark the address verified if the token is good and the address still theirs."""
        self.require_enabled()
        try:
            payload = tokens.verify(
                self.auth.email_secret,
                "verify",
                self.get_query_argument("token", ""),
                max_age_seconds=self.auth.email_verify_hours * 3600,
            )
        except tokens.TokenRefused as exc:
            log.info("address verification refused", extra={"outcome": exc.reason})
            await self.show(
                400,
                exc.reason,
                self._("verify_failed_title"),
                self._(f"link_{exc.reason}"),
                alert="danger",
            )
            return
        username, address = str(payload.get("u", "")), str(payload.get("a", ""))
        db = self.auth.learnhub_db()
        try:
            verified = await asyncio.to_thread(members.mark_verified, db, username, address)
        except UNAVAILABLE as exc:
            # Nothing lost: the link stays good for email.verify_hours.
            log_unavailable(self.log, "verify-email", exc, user=username, outcome="503")
            await self.show(
                503,
                "mail-unavailable",
                self._("mail_unavailable_title"),
                self._("mail_unavailable_verify"),
                alert="warning",
            )
            return
        if not verified:
            await self.show(
                400,
                "changed",
                self._("verify_failed_title"),
                self._("verify_changed"),
                alert="danger",
            )
            return
        log.info("address verified", extra={"user": username, "outcome": "verified"})
        await self.show(
            200,
            "verified",
            self._("verify_done_title"),
            self._("verify_done", address=address),
            alert="success",
            link_url=self.hub.base_url + "home",
            link_text=self._("nav_home"),
        )


class ForgotPasswordHandler(MailPage):
    """``GET|POST /hub/forgot-password``: mail a reset link to a verified address."""

    async def get(self) -> None:
        """The form."""
        self.require_enabled()
        self.finish(await self.render_template("forgot-password.html", message="", alert=""))

    async def post(self) -> None:
        """Always the same answer; the link goes out only to a verified address."""
        self.require_enabled()
        raw = self.get_body_argument("email", "", strip=True)[:320]
        address = parseaddr_address(raw)
        if address is None or address != raw:
            self.set_status(400)
            html = await self.render_template(
                "forgot-password.html",
                alert="danger",
                message=self._("forgot_bad_address", address=raw),
            )
            self.finish(html)
            return
        limiter: RateLimiter = self.auth.reset_limiter
        wait = max(
            limiter.take("reset", f"addr:{self.request.remote_ip}"),
            limiter.take("reset", f"mail:{members.normalize_address(address)}"),
        )
        if wait:
            seconds = retry_after(wait)
            log.warning(
                "password reset rate limited",
                extra={"client": self.request.remote_ip, "outcome": "429"},
            )
            self.set_status(429)
            self.set_header("Retry-After", str(seconds))
            html = await self.render_template(
                "forgot-password.html",
                alert="warning",
                message=self._("forgot_rate_limited", seconds=seconds),
            )
            self.finish(html)
            return
        # Whether the database can be used says nothing about the address: asked before the
        # look-up, it gives every address the same 503 (and the same timing), rather than a
        # promise of a link that cannot be queued.
        problem = await asyncio.to_thread(probe, self.auth.learnhub_db())
        if problem is not None:
            log_unavailable(
                self.log, "forgot-password", problem, client=self.request.remote_ip, outcome="503"
            )
            self.set_status(503)
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
            html = await self.render_template(
                "forgot-password.html",
                alert="warning",
                message=self._("mail_unavailable_forgot"),
            )
            self.finish(html)
            return
        # The answer does not wait for the look-up: its timing says nothing about the address.
        task = asyncio.ensure_future(self._send_link(address, current_language()))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
        html = await self.render_template(
            "forgot-password.html",
            alert="info",
            message=self._("forgot_sent", minutes=self.auth.email_reset_minutes),
        )
        self.finish(html)

    async def _send_link(self, address: str, lang: str) -> None:
        # LearnHub's database in worker threads; the Hub's account on this, the event loop's,
        # thread: JupyterHub's ORM session (self.auth.get_user) is not thread-safe.
        # Failures are logged, never shown: the visitor has had their answer, the same for
        # every address.
        try:
            db = self.auth.learnhub_db()
            username = await asyncio.to_thread(members.username_for, db, address)
            account = self.auth.get_user(username) if username else None
            if username is None or account is None:
                log.info("password reset asked for an unknown address", extra={"outcome": "none"})
                return
            secret = self.auth.email_secret
            token = tokens.sign(
                secret,
                "reset",
                {"u": username, "p": tokens.password_fingerprint(secret, account.password)},
            )
            params = {"token": token, "minutes": self.auth.email_reset_minutes, "lang": lang}
            await asyncio.to_thread(queue_reset_link, db, username, address, params)
        except UNAVAILABLE as exc:  # it went away (or stayed locked) after the probe
            log_unavailable(
                self.log,
                "forgot-password",
                exc,
                client=self.request.remote_ip,
                outcome="not-queued",
            )
        except Exception:
            log.exception("password reset mail not queued")


def queue_reset_link(db: Any, username: str, address: str, params: dict[str, Any]) -> None:
    """Queue the reset mail for ``username`` at ``address`` in LearnHub's database.

    Blocking, for a worker thread: it is handed LearnHub's database and plain values only,
    never the handler, whose Hub session belongs to the event loop's thread.
    """
    with db.transaction() as session:
        enqueue(session, kind="reset", recipient=address, username=username, params=params)
    log.info("password reset link queued", extra={"user": username, "outcome": "queued"})


class ResetPasswordHandler(MailPage):
    """``GET|POST /hub/reset-password``: choose a new password with a reset link."""

    def _account(self, token: str) -> tuple[Any, str]:
        """The account the token may reset, or (None, reason)."""
        try:
            payload = tokens.verify(
                self.auth.email_secret,
                "reset",
                token,
                max_age_seconds=self.auth.email_reset_minutes * 60,
            )
        except tokens.TokenRefused as exc:
            return None, exc.reason
        account = self.auth.get_user(str(payload.get("u", "")))
        if account is None or payload.get("p") != tokens.password_fingerprint(
            self.auth.email_secret, account.password
        ):
            # The password changed since the link was made: it was used already.
            return None, "invalid"
        return account, ""

    async def refuse(self, reason: str) -> None:
        """The link cannot be used: say why and offer a new one."""
        log.info("password reset link refused", extra={"outcome": reason})
        await self.show(
            400,
            reason,
            self._("reset_title"),
            self._(f"link_{reason}"),
            alert="danger",
            link_url=self.hub.base_url + "forgot-password",
            link_text=self._("ask_new_link"),
        )

    async def get(self) -> None:
        """The form, if the link is good."""
        self.require_enabled()
        token = self.get_query_argument("token", "")
        account, reason = self._account(token)
        if account is None:
            await self.refuse(reason)
            return
        html = await self.render_template(
            "reset-password.html", token=token, account=account.username, message=""
        )
        self.finish(html)

    async def post(self) -> None:
        """Set the new password; the link stops working at once."""
        self.require_enabled()
        token = self.get_body_argument("token", "")
        account, reason = self._account(token)
        if account is None:
            await self.refuse(reason)
            return
        password = self.get_body_argument("new_password", "", strip=False)
        problem = ""
        if password != self.get_body_argument("new_password_confirmation", "", strip=False):
            problem = self._("reset_mismatch")
        elif not self.auth.is_password_strong(password):
            problem = self._("reset_weak", length=self.auth.minimum_password_length)
        if problem:
            self.set_status(400)
            html = await self.render_template(
                "reset-password.html", token=token, account=account.username, message=problem
            )
            self.finish(html)
            return
        hashed = await hash_password(password)
        # Checked again after the slow hash: of two concurrent uses of one link, one wins.
        account, reason = self._account(token)
        if account is None:
            await self.refuse(reason)
            return
        account.password = hashed
        self.db.commit()
        self.auth.name_throttle.forget(account.username)
        log.info("password reset", extra={"user": account.username, "outcome": "changed"})
        await self.show(
            200,
            "changed",
            self._("reset_title"),
            self._("reset_done"),
            alert="success",
            link_url=self.settings["login_url"],
            link_text=self._("sign_in"),
        )


def queue_verification(auth: Any, username: str, address: str, lang: str) -> None:
    """Store ``address`` unverified for ``username`` and queue the mail that confirms it."""
    outbox.queue_verification(
        auth.learnhub_db(),
        secret=auth.email_secret,
        hours=auth.email_verify_hours,
        username=username,
        address=address,
        lang=lang,
    )


#: Routes the authenticator adds when mail is on.
HANDLERS: list[tuple[str, Any]] = [
    (r"/verify-email", VerifyEmailHandler),
    (r"/forgot-password", ForgotPasswordHandler),
    (r"/reset-password", ResetPasswordHandler),
]
