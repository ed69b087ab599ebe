"""The language check of the browser journeys (tests/browser/page_checks.py), without a browser."""
# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)

from __future__ import annotations

from tests.browser.page_checks import course_texts, untranslated
from tests.harness import ROOT


def test_chinese_page_flags_english_words_but_not_names_or_content() -> None:
    allowed = [*course_texts(ROOT / "courses"), "tu-youyou"]
    texts = [
        ("a#login", "Sign in"),  # untranslated
        ("button", "购买（US$69.00）"),
        ("h2", "Algorithms in Python"),  # an instructor's title
        ("span", "tu-youyou"),  # the member's name
        ("p", "截止：2027-03-08 23:59 UTC"),
        ("p", "支持 Markdown：`代码`，```python 代码块"),
        ("p", "邮件已发送到 tu-youyou@example.org"),
        ("nav[aria-label]", "breadcrumb"),  # untranslated label
        ("p", "问答 Q&A"),  # untranslated abbreviation
    ]
    found = untranslated("zh-CN", texts, allowed)
    assert [line.split(":")[0] for line in found] == ["a#login", "nav[aria-label]", "p"], found


def test_english_page_flags_chinese_text_and_message_keys() -> None:
    texts = [("h1", "My courses"), ("p", "课程目录"), ("a", "nav_email"), ("strong", "bisect_left")]
    found = untranslated("en", texts, ["Compared with **bisect_left**"])
    assert found == ["p: '课程目录'", "a: 'nav_email'"], found
