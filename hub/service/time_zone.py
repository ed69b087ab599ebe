"""The time zone form: which zone dates and times are shown in, for members and visitors.

The pages run no script, so the browser's zone is unknown to them; people choose one here.
A valid IANA name is remembered in the ``learnhub-tz`` cookie (any visitor) and, for a member,
saved in ``member_preferences`` (their mails and their other browsers use it too). A bad name
is refused with a message that says what to enter, and nothing is saved.

The form is XSRF-checked for visitors too (another site must not choose a zone for them); a
forged POST changes nothing and gets a 403 page in the viewer's language. The language is
different on purpose: it is chosen by a link (``?lang=``, also each page's canonical address
in that language, :mod:`hub.seo`), which changes only what the page is shown in.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from markupsafe import Markup

from hub.i18n.dates import DEFAULT_ZONE, MAX_ZONE_LENGTH, TZ_COOKIE, normalize_zone, zone_choices
from hub.preferences import save_zone
from hub.service.base import LearnerPage, route

log = logging.getLogger("learnhub.service")


class TimeZoneHandler(LearnerPage):
    """``GET|POST {prefix}time-zone``: show and change the viewer's time zone."""

    xsrf_for_visitors = True

    def _show(
        self, status: int = 200, *, saved: str = "", problem: str = "", typed: str = ""
    ) -> None:
        chosen = normalize_zone(self.get_cookie(TZ_COOKIE)) or self._saved_zone
        self.render_page(
            status,
            "time_zone.html",
            title=self.translate("tz_title"),
            zones=zone_choices(),
            chosen=bool(chosen),
            default_zone=DEFAULT_ZONE,
            saved=saved,
            problem=problem,
            typed=typed or self.time_zone,
            max_length=MAX_ZONE_LENGTH,
            # Visitors too (other pages give them none): the only visitor form that needs it.
            # Tornado builds the hidden input and escapes the token itself.
            xsrf_form_html=Markup(self.xsrf_form_html()),  # noqa: S704
        )

    async def get(self) -> None:
        """The form, filled in with the zone in force."""
        self._show()

    async def post(self) -> None:
        """Check the zone against the tz database; remember it, or say what is wrong."""
        typed = self.get_body_argument("zone", "", strip=True)[: MAX_ZONE_LENGTH * 2]
        zone = normalize_zone(typed)
        name = self.learner_name()
        if zone is None:
            log.info("time zone refused", extra={"user": name, "outcome": "invalid"})
            self._show(400, problem=self.translate("tz_invalid", zone=typed), typed=typed)
            return
        if name is not None:
            await asyncio.to_thread(save_zone, self.ctx.db, name, zone)
        self.set_time_zone_cookie(zone)
        # This answer already shows the new zone (the cookie comes back only next time).
        self._saved_zone = zone
        self.request.cookies.pop(TZ_COOKIE, None)
        log.info("time zone saved", extra={"user": name, "zone": zone, "outcome": "saved"})
        self._show(saved=zone, typed=zone)

    def render_page(self, status: int, template: str, **context: Any) -> None:
        """Pages of this handler say whether a member's choice also reaches their mails."""
        super().render_page(status, template, member=self.learner_name() is not None, **context)


def time_zone_routes(prefix: str) -> list[Any]:
    """Routes of the time zone form."""
    return [(route(prefix, "time-zone"), TimeZoneHandler)]
