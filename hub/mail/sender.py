"""The LearnHub service's mail sender: outbox rows out to the SMTP server, with retries.

Each round takes the rows that are due, words each in the member's language (a notice whose
member has since opted out is ``skipped``), and hands it to the SMTP server with aiosmtplib
(the event loop never blocks on the network; database work runs in threads). A mail the
server does not take stays ``queued`` with its error and is tried again after
``email.retry_seconds``, doubling each time up to an hour; after ``email.give_up_hours`` it
is marked ``failed``. Every outcome is logged and counted (``learnhub_mail_*``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import quote, urlparse

import aiosmtplib
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter

from hub.addresses import service_prefix
from hub.courses import Catalog
from hub.i18n.dates import DEFAULT_ZONE, format_datetime, viewer_zone
from hub.mail import notices, tokens
from hub.mail.compose import Composed, Footer, compose
from hub.mail.members import recipient
from hub.mail.outbox import OPT_OUT_OF
from hub.preferences import zone_of
from hub.settings import Settings
from hub.store import Database, OutboxMessage, utcnow

log = logging.getLogger("learnhub.mail")

#: Rows taken per round; the rest wait for the next round.
BATCH = 50
#: Longest wait between two tries of one mail.
MAX_RETRY_SECONDS = 3600


@dataclass(frozen=True)
class Outgoing:
    """One due mail, worded, or the reason it is not sent (``skip``)."""

    id: int
    kind: str
    username: str | None
    recipient: str
    composed: Composed | None
    unsubscribe_url: str = ""
    skip: str = ""


class Links:
    """Absolute links on the public URL to the Hub's and the service's pages."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub_base = urlparse(settings.hub.bind_url).path
        self.service = service_prefix(settings)

    def hub(self, path: str) -> str:
        """``/hub/<path>`` on the public URL."""
        return self.settings.absolute_url(f"{self.hub_base}hub/{path}")

    def page(self, path: str) -> str:
        """The LearnHub service's ``<prefix><path>`` on the public URL."""
        return self.settings.absolute_url(f"{self.service}{path}")

    def action(self, kind: str, params: dict[str, Any]) -> str:
        """Where the mail's one button goes."""
        if kind in ("verify", "reset"):
            page = "verify-email" if kind == "verify" else "reset-password"
            return self.hub(f"{page}?token={quote(str(params['token']))}")
        course = quote(str(params.get("course", "")))
        if kind in ("answer", "accepted"):
            return self.page(f"courses/{course}/questions/{int(params['question'])}")
        if kind == "announcement":
            return self.page(f"courses/{course}")
        return self.hub("home")


class MailSender:
    """Sends what the outbox holds; :meth:`run_once` is one round, :meth:`run` loops."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        catalog: Catalog,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.email = settings.email
        self.db = db
        self.catalog = catalog
        self.links = Links(settings)
        registry = registry or CollectorRegistry()
        self.sent = Counter(
            "learnhub_mail_sent",
            "Mails the SMTP server took, by kind.",
            ["kind"],
            registry=registry,
        )
        self.retries = Counter(
            "learnhub_mail_retries",
            "Mails the SMTP server did not take, kept and scheduled again.",
            registry=registry,
        )
        self.failed = Counter(
            "learnhub_mail_failed",
            "Mails given up after email.give_up_hours (kept in the outbox as failed).",
            registry=registry,
        )
        self.skipped = Counter(
            "learnhub_mail_skipped",
            "Notices not sent because the member opted out or has no verified address.",
            registry=registry,
        )

    # -- wording (in a thread: reads the database) ------------------------------------------

    def _due(self) -> list[Outgoing]:
        now = utcnow()
        out: list[Outgoing] = []
        with self.db.transaction() as session:
            rows = session.scalars(
                sa.select(OutboxMessage)
                .where(OutboxMessage.state == "queued", OutboxMessage.next_attempt_at <= now)
                .order_by(OutboxMessage.id)
                .limit(BATCH)
            ).all()
            for row in rows:
                params = json.loads(row.params)
                member = recipient(session, row.username) if row.username else None
                opt = OPT_OUT_OF.get(row.kind)
                if opt is not None and (member is None or not member.wants(opt)):
                    out.append(
                        Outgoing(
                            row.id, row.kind, row.username, row.recipient, None, skip="opted-out"
                        )
                    )
                    continue
                lang = member.language if member else str(params.get("lang", "en"))
                zone = viewer_zone(None, zone_of(session, row.username) if row.username else None)
                out.append(self._word(row, params, lang, opt, zone))
        return out

    def _word(
        self,
        row: OutboxMessage,
        params: dict[str, Any],
        lang: str,
        opt: str | None,
        zone: str = DEFAULT_ZONE,
    ) -> Outgoing:
        values = {k: v for k, v in params.items() if k not in ("token", "lang", "course", "due_at")}
        if "due_at" in params:
            # A moment is stored as ISO UTC and shown in the member's zone, named.
            due = datetime.fromisoformat(str(params["due_at"]))
            values["due"] = format_datetime(due, lang, zone)
        if "course" in params:
            entry = self.catalog.get(str(params["course"]))
            values["course"] = entry.course.title if entry else str(params["course"])
        footer = None
        unsubscribe = ""
        if opt is not None and row.username:
            token = tokens.sign(
                self.settings.email_secret, "unsubscribe", {"u": row.username, "k": opt}
            )
            unsubscribe = self.links.page(f"unsubscribe?token={quote(token)}")
            footer = Footer(unsubscribe, self.links.page("email"), opt)
        composed = compose(
            row.kind,
            lang,
            name=row.username or "",
            action_url=self.links.action(row.kind, params),
            values=values,
            footer=footer,
        )
        return Outgoing(row.id, row.kind, row.username, row.recipient, composed, unsubscribe)

    # -- sending -----------------------------------------------------------------------------

    def message(self, item: Outgoing) -> EmailMessage:
        """The MIME message: plain text with an HTML alternative."""
        assert item.composed is not None
        message = EmailMessage()
        message["From"] = self.email.from_address
        message["To"] = item.recipient
        message["Subject"] = item.composed.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(
            domain=self.email.from_address.rpartition("@")[2].strip(">")
        )
        if item.unsubscribe_url:
            # One-click unsubscribe (RFC 8058): mail clients show an Unsubscribe button.
            message["List-Unsubscribe"] = f"<{item.unsubscribe_url}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(item.composed.text)
        message.add_alternative(item.composed.html, subtype="html")
        return message

    async def _deliver(self, message: EmailMessage) -> None:
        smtp = self.email.smtp
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username or None,
            password=self.settings.secret("smtp_password") if smtp.username else None,
            use_tls=smtp.security == "tls",
            start_tls=smtp.security == "starttls",
            timeout=smtp.timeout_seconds,
        )

    def _record(self, item: Outgoing, error: str | None) -> str:
        now = utcnow()
        with self.db.transaction() as session:
            row = session.get(OutboxMessage, item.id)
            if row is None:
                return "missing"
            if item.skip:
                row.state, row.last_error = "skipped", item.skip
            elif error is None:
                row.state, row.sent_at, row.last_error = "sent", now, None
                row.attempts += 1
            else:
                row.attempts += 1
                row.last_error = error[:500]
                if now - row.created_at > timedelta(hours=self.email.give_up_hours):
                    row.state = "failed"
                else:
                    wait = min(
                        self.email.retry_seconds * 2 ** (row.attempts - 1), MAX_RETRY_SECONDS
                    )
                    row.next_attempt_at = now + timedelta(seconds=wait)
            return row.state

    async def run_once(self) -> int:
        """Send every mail that is due; the number the SMTP server took."""
        items = await asyncio.to_thread(self._due)
        sent = 0
        for item in items:
            error: str | None = None
            if not item.skip:
                try:
                    await self._deliver(self.message(item))
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
            state = await asyncio.to_thread(self._record, item, error)
            extra = {"user": item.username, "kind": item.kind, "outcome": state}
            if state == "sent":
                sent += 1
                self.sent.labels(item.kind).inc()
                log.info("mail sent", extra=extra)
            elif state == "skipped":
                self.skipped.inc()
                log.info("mail skipped", extra={**extra, "reason": item.skip})
            elif state == "failed":
                self.failed.inc()
                log.error("mail given up", extra={**extra, "error": error})
            else:
                self.retries.inc()
                log.warning("mail not sent; will retry", extra={**extra, "error": error})
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every ``email.poll_seconds`` until ``stop`` is set; errors never end it."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # the sender must outlive a database hiccup
                log.exception("mail round failed; trying again")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.email.poll_seconds)
            except TimeoutError:
                pass


def plan_aware_audience(settings: Settings, catalog: Catalog) -> notices.Audience:
    """Who learns in a course: live entitlements to it or to a plan that includes it."""
    from datetime import UTC, datetime

    from hub.entitlements import desired_membership
    from hub.store import Entitlement

    grace = timedelta(days=settings.payments.grace_period_days)

    def learners(session: Any, course_id: str) -> set[str]:
        entry = catalog.get(course_id)
        if entry is None:
            return set()
        rows = session.scalars(
            sa.select(Entitlement).where(
                sa.or_(Entitlement.course_id == course_id, Entitlement.plan_id.is_not(None))
            )
        ).all()
        desired = desired_membership(
            rows, catalog, settings.payments.plans, now=datetime.now(UTC), grace=grace
        )
        return set(desired.get(entry.course.learner_group, set()))

    return learners


def deadlines(catalog: Catalog) -> list[tuple[str, str, str, Any]]:
    """Every assignment deadline of the catalog: ``(course, assignment, title, due)``."""
    return [
        (entry.course.id, a.id, a.title, a.due)
        for entry in catalog
        for a in entry.course.assignments
        if a.due is not None
    ]


async def run_mail(
    settings: Settings,
    db: Database,
    catalog: Catalog,
    stop: asyncio.Event,
    *,
    registry: CollectorRegistry | None = None,
) -> None:
    """The service's mail work until ``stop``: the sender, and deadline reminders every
    ``email.reminder_check_seconds``. With mail off, one log line and nothing else."""
    if not settings.email.enabled:
        log.info("email: off (settings email.enabled: false); no mail is sent")
        return
    notices.configure_audience(plan_aware_audience(settings, catalog))
    sender = MailSender(settings, db, catalog, registry=registry)
    smtp = settings.email.smtp
    log.info(
        "email: on",
        extra={"smtp": f"{smtp.host}:{smtp.port}", "security": smtp.security, "outcome": "on"},
    )

    async def remind() -> None:
        while not stop.is_set():
            try:
                count = await asyncio.to_thread(
                    notices.queue_deadline_reminders, db, deadlines(catalog)
                )
                if count:
                    log.info("deadline reminders queued", extra={"count": count})
            except Exception:  # the next round tries again
                log.exception("deadline reminders failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=settings.email.reminder_check_seconds)
            except TimeoutError:
                pass

    await asyncio.gather(sender.run(stop), remind())
