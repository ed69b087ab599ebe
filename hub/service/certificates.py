"""``GET {prefix}certificates/<id>``: a course certificate, which anyone may open to verify it.

The page is the certificate and its verification at once: the learner's name, the course, the
date and the id, with whether it is valid now (:func:`hub.certificates.find_certificate`: a
refunded purchase revokes it). It needs no sign-in, so an employer can open a link a learner
shares. An id that was never issued answers 404 "not valid"; ids are 128 random bits, so they
cannot be found by trying.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from hub.certificates import CERTIFICATE_ID_PATTERN, find_certificate
from hub.i18n import translator
from hub.i18n.dates import format_date
from hub.service.base import LearnerPage, route

log = logging.getLogger("learnhub.service")


class CertificatePage(LearnerPage):
    """A certificate and whether it is valid; public."""

    async def get(self, certificate_id: str) -> None:
        """The certificate (200, valid or revoked) or "not valid" (404)."""
        found = None
        if re.fullmatch(CERTIFICATE_ID_PATTERN, certificate_id):
            found = await asyncio.to_thread(find_certificate, self.ctx.db, certificate_id)
        self.set_header("X-Robots-Tag", "noindex")
        if found is None:
            log.info("certificate checked", extra={"outcome": "unknown"})
            self.show_message(
                404, "certificate-invalid", "certificate_invalid_title", "certificate_invalid",
                alert="danger",
            )  # fmt: skip
            return
        _ = translator(self.lang)
        log.info(
            "certificate checked",
            extra={"course": found.course_id, "user": found.learner, "outcome": found.status},
        )
        reason = "refund" if found.revoked_reason == "refunded" else "dispute"
        self.render_page(
            200,
            "certificate.html",
            title=_("certificate_title"),
            certificate=found,
            issued=format_date(found.issued_at, self.lang, self.time_zone),
            verify_url=self.ctx.settings.absolute_url(f"{self.ctx.prefix}certificates/{found.id}"),
            revoked_note=_(f"certificate_revoked_{reason}") if found.status == "revoked" else "",
        )


def certificate_routes(prefix: str) -> list[Any]:
    """Routes of the certificate pages."""
    return [(route(prefix, "certificates/([A-Za-z0-9_-]{1,64})"), CertificatePage)]
