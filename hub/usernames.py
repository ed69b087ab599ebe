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


def username_refusal(typed: str) -> str | None:
    """Why ``typed`` cannot be a new account's name, as a sentence for the sign-up page; or None.

    The checks run from the most surprising problem (an invisible character the person could
    not see) to the plain pattern, so the message names the actual cause.
    """
    if not typed:
        return "Choose a username."
    for char in typed:
        if char.isspace() or unicodedata.category(char) in ("Zs", "Zl", "Zp"):
            return (
                f"The username contains whitespace ({_describe(char)}). "
                "Usernames cannot contain spaces or tabs; use a hyphen instead."
            )
    for char in typed:
        if unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn"):
            return (
                f"The username contains an invisible character ({_describe(char)}), which would "
                "let it look exactly like another name. Type the name again without it."
            )
    if any(char in MARKUP_CHARACTERS for char in typed):
        return "The username contains markup characters (< > & quotes); use letters only."
    folded = unicodedata.normalize("NFKC", typed)
    if not typed.isascii():
        if folded != typed and folded.isascii():
            first = next(char for char in typed if not char.isascii())
            return (
                f"The username uses full-width or other compatibility characters "
                f"({_describe(first)}). Type it with plain letters: {folded.lower()}"
            )
        first = next(char for char in folded if not char.isascii())
        return (
            f"The username contains {_describe(first)}. Letters of other scripts can look "
            "exactly like Latin ones, so usernames use only a-z, 0-9 and '-'."
        )
    name = folded.lower()
    if len(name) > USERNAME_MAX_LENGTH:
        return f"The username is longer than {USERNAME_MAX_LENGTH} characters."
    if not _PATTERN.match(name):
        return (
            "Usernames start with a letter and use only a-z, 0-9 and single hyphens between "
            "them (for example ada-lovelace)."
        )
    return None


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
