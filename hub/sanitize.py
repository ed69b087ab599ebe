"""The one HTML sanitizer: every piece of HTML that LearnHub did not write itself goes through here.

Two kinds of untrusted HTML reach LearnHub's pages: members' posts (Markdown rendered by
:mod:`hub.markdown`) and the free preview lesson (a notebook converted by :mod:`hub.preview`).
Each owner keeps its own allow-list (an :class:`Allowlist`, next to the code that knows what its
HTML needs); this module applies it with **nh3** (Ammonia, html5ever's parser: what a browser
would build from the same bytes) and the options both share: comments dropped, the content of
``<script>`` and ``<style>`` dropped with the element, every URL attribute checked against the
allowed schemes (after the browser's own normalisation: ``java\\tscript:`` is ``javascript:``).

nh3 rather than bleach: bleach is deprecated upstream (its html5lib parser is unmaintained) and
one sanitizer means one set of parsing rules to trust and to keep up to date.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import nh3

#: Elements removed *with* their content: their text is code, not words for the page.
CLEAN_CONTENT_TAGS = frozenset({"script", "style"})

#: ``(tag, attribute, value) -> value to keep, or None to drop the attribute``.
AttributeFilter = Callable[[str, str, str], str | None]


@dataclass(frozen=True)
class Allowlist:
    """What a kind of HTML may contain; everything else is removed (text of unknown tags kept).

    ``attributes`` maps a tag (or ``"*"``, every allowed tag) to the attributes it keeps;
    ``classes`` narrows ``class`` to given names per tag (a tag listed there must not also allow
    ``class`` in ``attributes``); ``url_schemes`` are the schemes any URL attribute may use
    (relative addresses pass); ``attribute_filter`` sees every kept attribute and may drop or
    rewrite it (for rules that depend on tag *and* value); ``link_rel`` is added to every link.
    """

    tags: frozenset[str]
    attributes: Mapping[str, frozenset[str]]
    url_schemes: frozenset[str]
    classes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    attribute_filter: AttributeFilter | None = None
    link_rel: str | None = None


def clean(html: str, allow: Allowlist) -> str:
    """``html`` with everything outside ``allow`` removed (see the module docstring)."""
    return nh3.clean(
        html,
        tags=allow.tags,
        clean_content_tags=CLEAN_CONTENT_TAGS,
        attributes=allow.attributes,
        attribute_filter=allow.attribute_filter,
        url_schemes=allow.url_schemes,
        link_rel=allow.link_rel,
        allowed_classes=allow.classes or None,
        strip_comments=True,
    )
