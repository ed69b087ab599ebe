"""Which names a new account may take: one documented pattern, and why a name is refused.

A username is shown to other members (Q&A, reviews, dashboards) and is part of container and
volume names, so it must not be able to pass for someone else's. Rather than chase every
confusable in Unicode, a new name is plain ASCII: after NFKC normalisation and lower-casing it
must match :data:`USERNAME_PATTERN`. Everything else is refused with a sentence that says what
is wrong (an invisible character, a tab, a Cyrillic letter, full-width letters, markup), so a
person who typed it by accident knows what to change.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from hub.i18n import translate

#: New usernames: a lower-case letter, then letters, digits and single inner hyphens.
USERNAME_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
#: Longest username; container names are `<prefix>-<user>--<course>`, which Docker caps at 253.
USERNAME_MAX_LENGTH = 32
#: Characters that mean something in HTML, refused by name so the message can say "markup".
MARKUP_CHARACTERS = frozenset("<>&\"'`")
#: ASCII look-alikes folded together by :func:`skeleton` (the rest of Unicode is refused).
_LOOKALIKES = (("rn", "m"), ("vv", "w"), ("0", "o"), ("1", "l"), ("i", "l"), ("-", ""))
#: Names for the control characters `unicodedata.name` does not know.
_CONTROL_NAMES = {"\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN"}

_PATTERN = re.compile(USERNAME_PATTERN)


def normalize_username(name: str) -> str:
    """The canonical form of a typed name: NFKC, then lower case (as JupyterHub does)."""
    return unicodedata.normalize("NFKC", name).lower()


def _describe(char: str) -> str:
    name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "UNNAMED CHARACTER")
    return f"U+{ord(char):04X} {name}"


@dataclass(frozen=True)
class Refusal:
    """Why a name is refused: a message key of :mod:`hub.i18n` and its values, so the sign-up
    page words it in the visitor's language."""

    key: str
    values: dict[str, str | int] = field(default_factory=dict)

    def text(self, lang: str = "en") -> str:
        """The sentence in ``lang``."""
        return translate(lang, self.key, **self.values)


def refusal_of(typed: str) -> Refusal | None:
    """Why ``typed`` cannot be a new account's name, or None.

    The checks run from the most surprising problem (an invisible character the person could
    not see) to the plain pattern, so the message names the actual cause.
    """
    if not typed:
        return Refusal("username_empty")
    for char in typed:
        if char.isspace() or unicodedata.category(char) in ("Zs", "Zl", "Zp"):
            return Refusal("username_whitespace", {"char": _describe(char)})
    for char in typed:
        if unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn"):
            return Refusal("username_invisible", {"char": _describe(char)})
    if any(char in MARKUP_CHARACTERS for char in typed):
        return Refusal("username_markup")
    folded = unicodedata.normalize("NFKC", typed)
    if not typed.isascii():
        if folded != typed and folded.isascii():
            first = next(char for char in typed if not char.isascii())
            return Refusal(
                "username_compatibility", {"char": _describe(first), "plain": folded.lower()}
            )
        first = next(char for char in folded if not char.isascii())
        return Refusal("username_script", {"char": _describe(first)})
    name = folded.lower()
    if len(name) > USERNAME_MAX_LENGTH:
        return Refusal("username_too_long", {"limit": USERNAME_MAX_LENGTH})
    if not _PATTERN.match(name):
        return Refusal("username_pattern")
    return None


def username_refusal(typed: str, lang: str = "en") -> str | None:
    """Why ``typed`` cannot be a new account's name, as a sentence in ``lang``; or None."""
    refusal = refusal_of(typed)
    return refusal.text(lang) if refusal else None


def skeleton(name: str) -> str:
    """``name`` with ASCII look-alikes folded together (``rn`` -> ``m``, ``0`` -> ``o`` ...)."""
    folded = normalize_username(name)
    for pair, replacement in _LOOKALIKES:
        folded = folded.replace(pair, replacement)
    return folded


def lookalike_of(name: str, existing: Iterable[str]) -> str | None:
    """The first name in ``existing`` that ``name`` could pass for (but is not), or None."""
    target = skeleton(name)
    for other in existing:
        if other != name and skeleton(other) == target:
            return other
    return None
