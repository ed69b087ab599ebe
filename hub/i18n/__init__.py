"""English and Simplified Chinese for LearnHub's pages and the Hub's: gettext catalogs.

The texts live in Babel/gettext catalogs, ``hub/i18n/locale/<locale>/LC_MESSAGES/learnhub.po``
(one per language), compiled in memory the first time a language is used: no binary ``.mo``
file is kept in git, and an edited ``.po`` takes effect at the next start. Message ids are
short keys (``nav_catalog``); the English catalog holds the English text, so every language is
a translation of the same keys and a key missing from one language falls back to English.
Texts fill ``{placeholders}`` with :meth:`str.format`; counts go through :func:`translate_plural`
(gettext ``ngettext``, each language's own plural rule). Money goes through
:mod:`hub.i18n.money`.

The language comes from ``?lang=`` (which the pages store in a cookie), else from that cookie,
else from the browser's ``Accept-Language``. The Hub's own pages read the same cookie
(:mod:`hub.i18n.hub_pages`). Course content (titles, summaries) is not translated: it comes from
``course.yaml`` as written.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

#: Languages the pages are written in; the first is the default.
LANGUAGES: tuple[str, ...] = ("en", "zh-CN")
#: How each language names itself, for the toggle.
LANGUAGE_NAMES = {"en": "English", "zh-CN": "简体中文"}
#: Cookie that remembers the visitor's choice (the service's and the Hub's pages share it).
LANG_COOKIE = "learnhub-lang"
#: The gettext locale of each language (its catalog's folder, Babel's formatting locale).
LOCALES = {"en": "en", "zh-CN": "zh_CN"}
#: Where the catalogs are.
LOCALE_DIR = Path(__file__).parent / "locale"
#: The gettext domain (``<domain>.po``).
DOMAIN = "learnhub"

Translator = Callable[..., str]


@dataclass(frozen=True)
class Catalog:
    """One language's compiled catalog, and which keys it has a text for."""

    translations: gettext.GNUTranslations
    #: key -> its text (a plural entry's first form), only for keys this language translates.
    texts: dict[str, str]


@cache
def catalog(lang: str) -> Catalog:
    """The compiled catalog of ``lang`` (read and compiled once per process).

    A broken or missing catalog fails here, loudly, naming the file: pages never show keys.
    """
    # Imported here: babel.messages pulls in babel.dates and the CLDR core (about 0.2 s, over
    # 0.8 s on a loaded machine), which the Hub's and the service's start need not wait for.
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    path = LOCALE_DIR / LOCALES[lang] / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        messages = read_po(po, locale=LOCALES[lang], domain=DOMAIN)
    texts: dict[str, str] = {}
    for message in messages:
        if not message.id:
            continue  # the header
        key = str(message.id[0] if isinstance(message.id, (tuple, list)) else message.id)
        forms = message.string
        text = forms[0] if isinstance(forms, (tuple, list)) else forms
        if text:
            texts[key] = str(text)
    compiled = io.BytesIO()
    write_mo(compiled, messages, use_fuzzy=False)
    compiled.seek(0)
    return Catalog(gettext.GNUTranslations(compiled), texts)


@cache
def _keys() -> frozenset[str]:
    """Every message key: the English catalog's (the source language has them all)."""
    return frozenset(catalog("en").texts)


class _Messages(Mapping[str, dict[str, str]]):
    """``{key: {lang: text}}`` read from the catalogs, for checks that every key has every
    language (the catalogs themselves are the source)."""

    def __getitem__(self, key: str) -> dict[str, str]:
        if key not in _keys():
            raise KeyError(key)
        return {lang: catalog(lang).texts[key] for lang in LANGUAGES if key in catalog(lang).texts}

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(_keys()))

    def __len__(self) -> int:
        return len(_keys())


#: Every message in every language it has, read from the catalogs on first use.
MESSAGES: Mapping[str, dict[str, str]] = _Messages()


def negotiate(accept_language: str | None) -> str:
    """The best of :data:`LANGUAGES` for an ``Accept-Language`` header (``en`` if none fits).

    Any Chinese variant written in simplified script (``zh``, ``zh-CN``, ``zh-SG``,
    ``zh-Hans``) maps to ``zh-CN``; traditional-script variants do not, since the pages are not
    written in traditional characters.
    """
    if not accept_language:
        return LANGUAGES[0]
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            # Earlier entries win ties, as the header lists them in order of preference.
            ranked.append((-quality, position, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag.startswith("en"):
            return "en"
        if tag in ("zh", "zh-cn", "zh-sg", "zh-hans") or tag.startswith("zh-hans"):
            return "zh-CN"
    return LANGUAGES[0]


def normalize(lang: str | None) -> str | None:
    """A supported language for a ``?lang=`` value or cookie (case-insensitive), else None."""
    if not lang:
        return None
    lowered = lang.strip().lower()
    for candidate in LANGUAGES:
        if candidate.lower() == lowered:
            return candidate
    if lowered in ("zh", "zh-hans"):
        return "zh-CN"
    return None


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The page language: explicit choice, then the remembered one, then the browser's."""
    return normalize(query) or normalize(cookie) or negotiate(accept_language)


def translate(lang: str, key: str, **values: object) -> str:
    """The message ``key`` in ``lang`` with ``{placeholders}`` filled in (English if ``lang``
    has no text for it). An unknown key is a bug: KeyError."""
    english = catalog("en").texts
    if key not in english:
        raise KeyError(f"no message {key!r}")
    text = (catalog(lang).texts.get(key) if lang in LOCALES else None) or english[key]
    return text.format(**values) if values else text


def translate_plural(lang: str, key: str, count: int, **values: object) -> str:
    """The plural message ``key`` for ``count`` in ``lang`` (its plural rule picks the form),
    with ``{count}`` and the other placeholders filled in."""
    if key not in _keys():
        raise KeyError(f"no message {key!r}")
    source = lang if lang in LOCALES and key in catalog(lang).texts else "en"
    text = catalog(source).translations.ngettext(key, key, count)
    return text.format(count=count, **values)


def translator(lang: str) -> Translator:
    """``_(key, **values)`` for templates and handlers."""

    def _(key: str, **values: object) -> str:
        return translate(lang, key, **values)

    return _


def plural_translator(lang: str) -> Callable[..., str]:
    """``_n(key, count, **values)`` for templates and handlers."""

    def _n(key: str, count: int, **values: object) -> str:
        return translate_plural(lang, key, count, **values)

    return _n


def babel_locale(lang: str) -> str:
    """The Babel locale that formats numbers and money for ``lang``."""
    return LOCALES.get(lang, "en")
