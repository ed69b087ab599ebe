"""The member's mail settings page and the unsubscribe link of each notice."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hub.i18n import normalize
from hub.mail import members, tokens
from hub.mail.outbox import queue_verification
from hub.service.base import LearnerPage, route
from hub.service.ratelimit import RateLimiter, retry_after
from hub.settings import parseaddr_address

log = logging.getLogger("learnhub.service")


class EmailSettingsHandler(LearnerPage):
    """``GET|POST {prefix}email``: the notices the signed-in member gets, and their language."""

    async def get(self) -> None:
        """The settings form (or a note that the account has no address)."""
        name = self.require_learner()
        if name is None:
            return
        await self._show(name, saved=False)

    async def _show(
        self, name: str, *, saved: bool, status: int = 200, problem: str = "", sent: str = ""
    ) -> None:
        member = await asyncio.to_thread(members.lookup, self.ctx.db, name)
        self.render_page(
            status,
            "email_settings.html",
            title=self.translate("email_settings_title"),
            member=member,
            kinds=members.NOTICE_KINDS,
            saved=saved,
            problem=problem,
            sent=sent,
            enabled=self.ctx.settings.email.enabled,
        )

    async def post(self) -> None:
        """Save: unticked kinds are opted out."""
        name = self.require_learner()
        if name is None:
            return
        wanted = set(self.get_body_arguments("notice"))
        opt_outs = set(members.NOTICE_KINDS) - wanted
        language = normalize(self.get_body_argument("language", "")) or None
        await asyncio.to_thread(
            members.set_preferences, self.ctx.db, name, opt_outs=opt_outs, language=language
        )
        log.info(
            "mail settings saved",
            extra={"user": name, "opt_outs": sorted(opt_outs), "outcome": "saved"},
        )
        await self._show(name, saved=True)


#: Confirmation mails one member may ask for per window (each is a mail to any address).
_address_limiter: dict[int, RateLimiter] = {}


class EmailAddressHandler(EmailSettingsHandler):
    """``POST {prefix}email/address``: give (or change) the address; a confirmation mail goes
    to it, and it counts only once confirmed. Members who signed up before mail was on, or
    whose confirmation mail was lost, start here."""

    async def post(self) -> None:
        """Store the address unverified and mail the confirmation link."""
        name = self.require_learner()
        if name is None:
            return
        email = self.ctx.settings.email
        if not email.enabled:
            await self._show(name, saved=False, status=404)
            return
        raw = self.get_body_argument("address", "", strip=True)[:320]
        if parseaddr_address(raw) != raw:
            problem = self.translate("signup_email_invalid", address=raw)
            await self._show(name, saved=False, status=400, problem=problem)
            return
        window = self.ctx.settings.limits.window_seconds
        limiter = _address_limiter.setdefault(
            id(self.ctx), RateLimiter({"verify": (email.reset_requests, window)})
        )
        wait = limiter.take("verify", f"user:{name}")
        if wait:
            self.set_header("Retry-After", str(retry_after(wait)))
            problem = self.translate("forgot_rate_limited", seconds=retry_after(wait))
            await self._show(name, saved=False, status=429, problem=problem)
            return
        await asyncio.to_thread(
            queue_verification,
            self.ctx.db,
            secret=self.ctx.settings.email_secret,
            hours=email.verify_hours,
            username=name,
            address=raw,
            lang=self.lang,
        )
        log.info("address given", extra={"user": name, "outcome": "verification-queued"})
        await self._show(name, saved=False, sent=members.normalize_address(raw))


class UnsubscribeHandler(LearnerPage):
    """``GET|POST {prefix}unsubscribe?token=``: stop one kind of notice, no sign-in needed.

    The signed token names the member and the kind. GET asks (mail scanners follow links);
    POST does it, also as RFC 8058's one-click ``List-Unsubscribe-Post``.
    """

    def _payload(self, token: str) -> tuple[str, str] | None:
        try:
            payload = tokens.verify(
                self.ctx.settings.email_secret, "unsubscribe", token, max_age_seconds=None
            )
        except tokens.TokenRefused:
            return None
        kind = str(payload.get("k", ""))
        if kind not in members.NOTICE_KINDS or not payload.get("u"):
            return None
        return str(payload["u"]), kind

    def _render(self, status: int, outcome: str, **context: Any) -> None:
        self.render_page(
            status,
            "unsubscribe.html",
            title=self.translate("unsubscribe_title"),
            outcome=outcome,
            **context,
        )

    async def get(self) -> None:
        """Ask to confirm."""
        token = self.get_query_argument("token", "")
        found = self._payload(token)
        if found is None:
            self._render(400, "invalid")
            return
        self._render(200, "ask", token=token, kind=found[1])

    async def post(self) -> None:
        """Turn the kind off."""
        token = self.get_body_argument("token", None) or self.get_query_argument("token", "")
        found = self._payload(token)
        if found is None:
            self._render(400, "invalid")
            return
        username, kind = found
        await asyncio.to_thread(members.opt_out, self.ctx.db, username, kind)
        log.info("unsubscribed", extra={"user": username, "kind": kind, "outcome": "opted-out"})
        self._render(200, "done", kind=kind)


def mail_routes(prefix: str) -> list[Any]:
    """Routes of the mail pages."""
    return [
        (route(prefix, "email"), EmailSettingsHandler),
        (route(prefix, "email/address"), EmailAddressHandler),
        (route(prefix, "unsubscribe"), UnsubscribeHandler),
    ]
