"""Money as people read it: amounts in minor units (Stripe's way) -> locale-aware text.

Stripe and ``course.yaml`` count money in the currency's smallest unit: cents for USD, but
whole yen for JPY, which has no minor unit. Dividing by 100 everywhere showed a 4900 JPY course
as "49.00 JPY". Every conversion goes through :func:`major_units` (ISO 4217 digits, from Babel's
CLDR data) and every label through :func:`format_money`.
"""

from __future__ import annotations

from decimal import Decimal

from hub.i18n import babel_locale


def major_units(amount_minor: int, currency: str) -> Decimal:
    """``4900, "usd"`` -> ``49.00``; ``4900, "jpy"`` -> ``4900`` (JPY has no minor unit)."""
    # Babel's CLDR data loads on first use, not when the Hub reads its config.
    from babel.numbers import get_currency_precision

    digits = get_currency_precision(currency.upper())
    return Decimal(amount_minor).scaleb(-digits)


def format_money(amount_minor: int, currency: str, lang: str = "en") -> str:
    """``4900, "usd"`` -> ``$49.00``; ``4900, "jpy"`` -> ``¥4,900``, in ``lang``'s conventions."""
    from babel.numbers import format_currency

    code = currency.upper()
    return format_currency(major_units(amount_minor, code), code, locale=babel_locale(lang))
