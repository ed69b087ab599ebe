"""The words of each mail, as plain text and simple HTML, in the member's language.

Texts are message keys in the i18n catalogs (``mail_<kind>_subject``, ``mail_<kind>_body``,
``mail_<kind>_action``); values from members (a question's title, an announcement) are
escaped in the HTML part and never interpreted as markup.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from hub.i18n import translator


@dataclass(frozen=True)
class Composed:
    """A mail ready for SMTP."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Footer:
    """The notice footer: why the mail came and how to stop it."""

    unsubscribe_url: str
    settings_url: str
    kind: str


def compose(
    kind: str,
    lang: str,
    *,
    name: str,
    action_url: str,
    values: dict[str, Any],
    footer: Footer | None = None,
) -> Composed:
    """Mail ``kind`` for member ``name`` in ``lang``: one paragraph, one link, a footer."""
    _ = translator(lang)
    subject = _(f"mail_{kind}_subject", **values)
    body = _(f"mail_{kind}_body", name=name, **values)
    action = _(f"mail_{kind}_action")
    greeting = _("mail_greeting", name=name)
    signature = _("mail_signature")
    text_parts = [greeting, body, f"{action}:\n{action_url}", signature]
    paragraphs = "".join(
        f"<p>{html.escape(part).replace(chr(10), '<br>')}</p>" for part in (greeting, body)
    )
    html_parts = [
        paragraphs,
        f'<p><a href="{html.escape(action_url)}">{html.escape(action)}</a></p>',
        f"<p>{html.escape(signature)}</p>",
    ]
    if footer is not None:
        why = _("mail_footer_why", kind=_(f"email_kind_{footer.kind}"))
        stop = _("mail_footer_unsubscribe")
        manage = _("mail_footer_settings")
        text_parts.append(
            f"--\n{why}\n{stop}: {footer.unsubscribe_url}\n{manage}: {footer.settings_url}"
        )
        html_parts.append(
            f'<hr><p style="color:#666;font-size:small">{html.escape(why)}<br>'
            f'<a href="{html.escape(footer.unsubscribe_url)}">{html.escape(stop)}</a> · '
            f'<a href="{html.escape(footer.settings_url)}">{html.escape(manage)}</a></p>'
        )
    text = "\n\n".join(text_parts) + "\n"
    page = (
        f'<!DOCTYPE html><html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head><body>{''.join(html_parts)}</body></html>"
    )
    return Composed(subject=subject, text=text, html=page)
