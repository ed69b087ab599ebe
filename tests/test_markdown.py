"""The Markdown renderer of members' posts (hub/markdown.py): highlighted code, nothing that runs.

Every attack here is written as a member would type it into the Q&A; the assertions read the
HTML the way a browser would (html.parser), not by looking for substrings only.
"""

from __future__ import annotations

import time
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from hub.markdown import LINK_REL, plain_text_source, render, stylesheet
from hub.service.static_files import HIGHLIGHT_CSS

SAFE_SCHEMES = {"", "http", "https", "mailto"}


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def names(self) -> set[str]:
        return {tag for tag, _ in self.tags}

    def links(self) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == "a"]


def assert_inert(html: str) -> Elements:
    """Nothing in ``html`` can run script: no script/style/iframe/img/object elements, no event
    handler or style attribute, no link to anything but http(s), mailto or a relative URL."""
    parsed = Elements(html)
    assert parsed.names() <= {
        "p", "br", "hr", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "li", "strong",
        "em", "code", "pre", "a", "span",
    }, html  # fmt: skip
    for tag, attrs in parsed.tags:
        for name in attrs:
            assert not name.startswith("on"), (tag, attrs)
            assert name in {"href", "title", "rel", "class", "start"}, (tag, attrs)
    for link in parsed.links():
        href = (link.get("href") or "").strip()
        assert urlsplit(href).scheme.lower() in SAFE_SCHEMES, href
        assert link.get("rel") == LINK_REL
    return parsed


def test_fenced_code_is_highlighted_with_classes() -> None:
    html = render('Try this:\n\n```python\ndef area(r):\n    return 3.14 * r ** 2  # "<b>"\n```')
    parsed = assert_inert(html)
    assert '<pre class="learnhub-code"><code>' in html
    classes = {attrs.get("class") for tag, attrs in parsed.tags if tag == "span"}
    assert {"tok-k", "tok-nf", "tok-mf", "tok-c1"} <= classes, classes  # def, area, 3.14, comment
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "style=" not in html  # colours come from the stylesheet, never inline


def test_unknown_or_missing_language_is_plain_code() -> None:
    for fence in ("```\nx < 1\n```", "```no-such-language fixed-top\nx < 1\n```"):
        html = render(fence)
        assert html == '<pre class="learnhub-code"><code>x &lt; 1\n</code></pre>'


@pytest.mark.parametrize(
    "attack",
    [
        "<script>document.title='pwned'</script>",
        "<img src=x onerror=\"document.title='pwned'\">",
        '<a href="javascript:alert(1)">x</a>',
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](java&#x09;script:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "<javascript:alert(1)>",
        "[x]: javascript:alert(1)\n\n[x]",
        "![x](javascript:alert(1))",
        "![x](http://attacker.example/pixel.png)",
        '<div style="position:fixed">x</div>',
        "<iframe src=https://attacker.example></iframe>",
        '<svg><a xlink:href="javascript:alert(1)">x</a></svg>',
        '[x](https://ok.example "title" onmouseover="alert(1)")',
        "<!-- <script>x</script> -->",
        "```\n</code></pre><script>alert(1)</script>\n```",
    ],
)
def test_no_markup_of_the_writer_survives(attack: str) -> None:
    html = render(attack)
    parsed = assert_inert(html)
    assert "<script" not in html.lower() and "onerror" not in html.replace("onerror=", "")
    # Raw HTML is shown as the text it is, never parsed into elements.
    assert not parsed.names() & {"script", "img", "iframe", "div", "svg"}


def test_a_javascript_link_is_not_a_link() -> None:
    html = render("[click me](javascript:document.title='pwned')")
    assert Elements(html).links() == []
    assert "click me" in html


def test_links_and_autolinks_are_marked_user_generated() -> None:
    html = render(
        "<https://docs.python.org/3/> and [spec](https://spec.commonmark.org) and <me@x.org>"
    )
    links = assert_inert(html).links()
    assert [link["href"] for link in links] == [
        "https://docs.python.org/3/",
        "https://spec.commonmark.org",
        "mailto:me@x.org",
    ]
    assert all(link["rel"] == "nofollow ugc noopener" for link in links)


def test_html_entities_stay_text() -> None:
    html = render("a &lt;script&gt; &amp; &copy; &#0; &#x3C;b&#x3E;")
    parsed = assert_inert(html)
    assert "".join(parsed.text) == "a <script> & © \ufffd <b>"
    assert parsed.names() == {"p"}


def test_headings_stay_below_the_page_headings() -> None:
    assert render("# Big") == "<h3>Big</h3>"
    assert render("###### Small") == "<h6>Small</h6>"


@pytest.mark.parametrize(
    "long_input",
    [
        "x" * 10_000,
        "*a" * 5_000,
        "[" * 10_000,
        ">" * 10_000,
        "- " * 5_000,
        "`" * 10_000,
        "```python\n" + "def f(): pass\n" * 700 + "```",
        "<" * 10_000,
    ],
    ids=["plain", "emphasis", "brackets", "quotes", "lists", "backticks", "code", "tags"],
)
def test_very_long_input_renders_quickly_and_safely(long_input: str) -> None:
    started = time.monotonic()
    html = render(long_input)
    elapsed = time.monotonic() - started
    assert_inert(html)
    assert elapsed < 5, f"{elapsed:.1f} s for {len(long_input)} characters"


@pytest.mark.parametrize(
    "text",
    [
        "Why is __eq__ not enough? a*b*c",
        "# not a heading\n1. not a list\n- nor this\n> nor a quote",
        "<script>alert(1)</script> &amp; [x](javascript:y) `not code`",
        "def f(x):\n    return x\n\n\tindented with a tab",
        "Title\n=====\nnot a setext heading",
        "back\\slash at the end\\",
    ],
)
def test_plain_text_migrates_to_markdown_that_reads_the_same(text: str) -> None:
    html = render(plain_text_source(text))
    parsed = assert_inert(html)
    assert parsed.names() <= {"p", "br"}, html
    shown = "".join(parsed.text).replace("\xa0", " ")
    expected_lines = [line.rstrip().expandtabs(4) for line in text.split("\n")]
    assert [line.rstrip() for line in shown.split("\n") if line.strip()] == [
        line for line in expected_lines if line.strip()
    ]


def test_the_static_stylesheet_is_current() -> None:
    assert HIGHLIGHT_CSS.read_text(encoding="utf-8").endswith(stylesheet()), (
        "run: python -m hub.service.static_files"
    )
    assert ".learnhub-code .tok-k " in stylesheet()
