"""What every page of a browser journey must pass, in either language and at both widths.

:class:`PageChecker` collects a page's visible texts (text nodes, and the labels people meet
without reading the page's text: ``aria-label``, ``title``, ``alt``, ``placeholder``, button
values), and fails on

- in Chinese, any run of Latin-letter words that is not on the allow-list below;
- in English, any Chinese character, or anything that looks like an untranslated message key
  (``nav_catalog``);

and runs axe-core (``harness.browser.serious_violations``) on it. Each page is checked at the
context's own width and at the other one (the viewport is resized, so a journey walked once
covers the phone and the desktop layout), which keeps a journey's cost at one walk.

What may stay in Latin letters on a Chinese page, and why:

- ``ALLOWED_WORDS``: the product's name, currency and time-zone codes, protocol names and the
  names of programs a learner uses (they are names, not words to translate);
- everything an instructor wrote in ``course.yaml`` (titles, summaries, syllabus...), which
  :func:`course_texts` reads, and whatever a member wrote (their name, their posts): the test
  hands those in as ``extra_allowed``;
- code (``<code>``, ``<pre>``, ``<kbd>``, ``<samp>``), and any element whose ``lang`` attribute
  says it is in another language (the toggle's "English");
- e-mail addresses, URLs and what follows Markdown's backticks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from playwright.sync_api import Page, ViewportSize

from harness.browser import DESKTOP, PHONE, serious_violations

#: Names that are the same in every language (see the module's docstring).
ALLOWED_WORDS = (
    "LearnHub",
    "JupyterLab",
    "Jupyter",
    "Python",
    "Markdown",
    "USD",
    "EUR",
    "JPY",
    "CNY",
    "US$",
    "Stripe",
    "HTTP",
    "HTTPS",
    # A time zone's name, as Chinese pages write it too (the dates themselves are tz-lab's).
    "UTC",
)

#: A run of Latin-letter words (two letters or more, so "A" in "A+" or a variable is not one).
_WORD = r"[A-Za-z][A-Za-z&'\u2019.-]*"
LATIN_RUN = re.compile(rf"{_WORD}[A-Za-z](?:[\s,:;!?]+{_WORD})*")
#: Han characters (CJK Unified Ideographs and the symbols Chinese text uses).
HAN = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
#: A message key that reached the page instead of its text.
MESSAGE_KEY = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
#: E-mail addresses, URLs and inline code (Markdown's backticks with what they hold).
NOT_WORDS = re.compile(r"\S+@\S+\.\S+|https?://\S+|\b\S+\.localhost\S*|`+[^`\s]*")

#: In the page: every visible text with where it is. Text inside code or in an element whose
#: `lang` differs from the page's is left out; text that is there for screen readers only
#: (Bootstrap's visually-hidden) counts, as people hear it.
_COLLECT = """
() => {
  const pageLang = document.documentElement.lang;
  const skipTags = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "CODE", "PRE", "KBD",
                            "SAMP", "svg"]);
  const where = (el) => {
    const id = el.id ? "#" + el.id : "";
    const cls = typeof el.className === "string" && el.className
      ? "." + el.className.trim().split(/\\s+/).slice(0, 2).join(".") : "";
    return el.tagName.toLowerCase() + id + cls;
  };
  const skipped = (el) => {
    for (let e = el; e && e !== document.documentElement; e = e.parentElement) {
      if (skipTags.has(e.tagName)) return true;
      if (e.hasAttribute("lang") && e.getAttribute("lang") !== pageLang) return true;
    }
    return false;
  };
  const shown = (el) => el.checkVisibility({checkVisibilityCSS: true}) &&
    !el.closest("[hidden], [aria-hidden=true]");
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    const text = node.textContent.replace(/\\s+/g, " ").trim();
    if (!text || !el || skipped(el) || !shown(el)) continue;
    found.push([where(el), text]);
  }
  const attrs = ["aria-label", "title", "alt", "placeholder"];
  for (const el of document.body.querySelectorAll("*")) {
    if (skipped(el) || !shown(el)) continue;
    for (const attr of attrs) {
      const value = (el.getAttribute(attr) || "").trim();
      if (value) found.push([where(el) + "[" + attr + "]", value]);
    }
    if (el.tagName === "INPUT" && ["submit", "button", "reset"].includes(el.type) && el.value) {
      found.push([where(el) + "[value]", el.value]);
    }
  }
  found.push(["title", document.title]);
  return found;
}
"""


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def course_texts(courses_dir: Path) -> list[str]:
    """Every string an instructor wrote in the courses' ``course.yaml`` files."""
    texts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            texts.append(_normal(value))
            # Markdown's markers do not reach the page; the words between them do.
            texts.append(_normal(re.sub(r"[*_`#]+", "", value)))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in sorted(courses_dir.glob("*/course.yaml")):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return [t for t in texts if t]


def untranslated(lang: str, texts: Iterable[tuple[str, str]], allowed: Iterable[str]) -> list[str]:
    """The texts of a page in ``lang`` that are not in ``lang``: ``where: text`` lines.

    Chinese: a run of Latin-letter words left after removing ``allowed`` strings, the
    allowed words, e-mail addresses and URLs. English: a Han character or a message key.
    """
    allowed = sorted({_normal(a) for a in allowed if a.strip()}, key=len, reverse=True)
    problems = []
    for where, raw in texts:
        text = _normal(raw)
        if any(text in a for a in allowed):  # a piece of an instructor's (or member's) text
            continue
        if lang == "en":
            if HAN.search(text) or MESSAGE_KEY.fullmatch(text):
                problems.append(f"{where}: {text!r}")
            continue
        rest = NOT_WORDS.sub(" ", text)
        for a in (*allowed, *ALLOWED_WORDS):
            rest = rest.replace(a, " ")
        runs = [run for run in LATIN_RUN.findall(rest) if len(run.replace(".", "")) > 1]
        if runs:
            problems.append(f"{where}: {text!r} (untranslated: {', '.join(runs)})")
    return problems


@dataclass
class PageChecker:
    """Checks pages in one language; keeps every problem it finds, to fail once at the end
    with all of them (one run shows every untranslated text, not only the first)."""

    lang: str
    viewport: ViewportSize
    allowed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def allow(self, *texts: str) -> None:
        """Also accept ``texts`` (a member's name, what they wrote) in Latin letters."""
        self.allowed.extend(texts)

    def check(self, page: Page, step: str) -> None:
        """Check ``page`` as it is now at its width and at the other one."""
        other = DESKTOP if self.viewport == PHONE else PHONE
        for size in (self.viewport, other):
            page.set_viewport_size(size)
            label = f"{step} @{size['width']}px"
            lang = page.evaluate("() => document.documentElement.lang")
            if lang != self.lang:
                self.problems.append(f"{label}: <html lang={lang!r}>, not {self.lang!r}")
            texts = [(str(w), str(t)) for w, t in page.evaluate(_COLLECT)]
            found = untranslated(self.lang, texts, self.allowed)
            self.problems.extend(f"{label} {page.url}: {p}" for p in found)
            self.problems.extend(f"{label}: {v}" for v in serious_violations(page))
        page.set_viewport_size(self.viewport)
        self.checked.append(step)

    def assert_clean(self) -> None:
        """Fail with every problem found on every page checked."""
        assert self.problems == [], (
            f"{len(self.problems)} problems on {', '.join(self.checked)}:\n"
            + "\n".join(self.problems)
        )
