"""Members' Markdown to safe HTML: questions, answers, announcements and community rules.

Everything a member writes is untrusted. It goes through three steps, each with one job:

1. **markdown-it-py** with the ``commonmark`` preset and raw HTML **off**: ``<script>`` in a
   post is text, never markup. Images are off too (a post cannot make every reader's browser
   fetch an address of the writer's choosing; the page's CSP would block them anyway), so
   ``![x](u)`` shows as a link. Headings move down two levels (``#`` is ``<h3>``): the page
   owns ``<h1>`` and ``<h2>``.
2. **Pygments** highlights a fenced block whose info string names a language it knows
   (```` ```python ````), as ``<span class="tok-…">`` classes; the colours are a stylesheet
   among the service's static files (:func:`stylesheet`), never inline styles. An unknown or
   missing language is shown as plain code: guessing a lexer is slow and often wrong.
3. The site's one sanitizer (:mod:`hub.sanitize`, nh3) cleans the result with this module's
   allow-list (:data:`POST_HTML`): only the tags CommonMark makes,
   only ``href``/``title`` on links, ``start`` on lists, and only Pygments' own classes; links
   only to ``http``, ``https``, ``mailto`` or relative addresses, each with
   ``rel="nofollow ugc noopener"``. Step 1 already refuses ``javascript:`` links; this step
   holds even if a parser bug or a future option lets something through.

Pages store both the source (to edit) and the HTML rendered here (to show), so a page view
never parses Markdown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

from hub.sanitize import Allowlist, clean

#: Prefix of Pygments' token classes, so they cannot collide with the site's Bootstrap classes.
TOKEN_CLASS_PREFIX = "tok-"  # noqa: S105 (a CSS class prefix, not a secret)
#: The class of every rendered code block (the stylesheet's scope).
CODE_CLASS = "learnhub-code"
#: What a link in a post says about itself: not endorsed, user-generated, no window.opener.
LINK_REL = "nofollow ugc noopener"

#: The tags CommonMark produces with raw HTML and images off.
_TAGS = frozenset(
    {
        "p",
        "br",
        "hr",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "ul",
        "ol",
        "li",
        "strong",
        "em",
        "code",
        "pre",
        "a",
        "span",
    }
)
#: Characters that can mean something in CommonMark; escaped to keep plain text plain.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]<>()#+\-.!|~&=])")


def _token_classes() -> frozenset[str]:
    return frozenset(TOKEN_CLASS_PREFIX + name for name in STANDARD_TYPES.values() if name)


#: What a post's HTML may keep: CommonMark's tags, ``href``/``title`` on links, ``start`` on
#: lists, Pygments' own classes only, links to http(s), mailto or relative addresses.
POST_HTML = Allowlist(
    tags=_TAGS,
    attributes={"a": frozenset({"href", "title"}), "ol": frozenset({"start"})},
    url_schemes=frozenset({"http", "https", "mailto"}),
    classes={"span": _token_classes(), "pre": frozenset({CODE_CLASS})},
    link_rel=LINK_REL,
)


@cache
def _formatter() -> HtmlFormatter[str]:
    # nowrap: the fence rule below writes the <pre><code> itself.
    return HtmlFormatter(nowrap=True, classprefix=TOKEN_CLASS_PREFIX)


def _lexer(info: str) -> Lexer | None:
    name = info.strip().split(maxsplit=1)[0] if info.strip() else ""
    if not name:
        return None
    try:
        return get_lexer_by_name(name.lower())
    except ClassNotFound:
        return None


def _code_block(content: str, lexer: Lexer | None) -> str:
    if lexer is None:
        body = escapeHtml(content)
    else:
        body = highlight(content, lexer, _formatter())
    return f'<pre class="{CODE_CLASS}"><code>{body}</code></pre>\n'


def _fence(_self: Any, tokens: Sequence[Token], idx: int, _options: Any, _env: Any) -> str:
    token = tokens[idx]
    return _code_block(token.content, _lexer(token.info))


def _indented_code(_self: Any, tokens: Sequence[Token], idx: int, _options: Any, _env: Any) -> str:
    return _code_block(tokens[idx].content, None)


def _demote_headings(state: Any) -> None:
    """``#`` -> ``<h3>`` ... (at most ``<h6>``): the page's own headings stay on top."""
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            level = min(int(token.tag[1]) + 2, 6)
            token.tag = f"h{level}"


@cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _indented_code)
    md.core.ruler.push("learnhub_demote_headings", _demote_headings)
    return md


def sanitize(html: str) -> str:
    """``html`` with everything outside the posts' allow-list removed (see the module docstring)."""
    return clean(html, POST_HTML)


def render(source: str) -> str:
    """Safe HTML for the Markdown ``source`` (blocking; callers limit its length)."""
    return sanitize(_parser().render(source)).strip()


def plain_text_source(text: str) -> str:
    """Markdown that shows ``text`` exactly as the plain text it was written as.

    Posts written before Markdown (plain text shown with its line breaks and indentation kept)
    are migrated through this: every character with a meaning in CommonMark is escaped, each
    line break within a paragraph becomes a hard break and leading indentation becomes
    non-breaking spaces, so ``render(plain_text_source(t))`` reads as ``t`` did.
    """
    out: list[str] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, raw in enumerate(lines):
        line = raw.rstrip().expandtabs(4)
        if not line.strip():
            out.append("")
            continue
        stripped = line.lstrip(" ")
        indent = "&nbsp;" * (len(line) - len(stripped))
        escaped = indent + _MARKDOWN_PUNCTUATION.sub(r"\\\1", stripped)
        following = lines[number + 1] if number + 1 < len(lines) else ""
        # A backslash at the end of a line is a hard line break in CommonMark.
        out.append(escaped + ("\\" if following.strip() else ""))
    return "\n".join(out).strip("\n")


def stylesheet() -> str:
    """The CSS of highlighted code (Pygments' default colours, scoped to code blocks)."""
    scope = f".{CODE_CLASS}"
    # Pygments also emits unscoped rules (``pre``, line numbers): keep only the scoped ones.
    defs = _formatter().get_style_defs(scope).splitlines()
    rules = "\n".join(line for line in defs if line.startswith(scope + " "))
    base = (
        f".{CODE_CLASS} {{ background: #f6f8fa; padding: .75rem; border-radius: .375rem; "
        "overflow-x: auto; }\n"
    )
    return base + rules + "\n"
