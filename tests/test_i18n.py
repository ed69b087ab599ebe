"""The language system's pure parts: gettext catalogs, plurals, money, the Hub pages' language.

The pages themselves, through the real stack, are in tests/browser/test_pages_http.py (the
Hub's templates in Chinese, the front door) and tests/test_auth.py (sign-up returns to `next`).
"""

from __future__ import annotations

import re

import pytest
from jinja2 import Environment, FileSystemLoader
from tornado.httputil import HTTPHeaders, HTTPServerRequest

from hub.i18n import LOCALE_DIR, MESSAGES, translate, translate_plural
from hub.i18n.hub_pages import RequestLanguage, hub_template_vars, request_language
from hub.i18n.money import format_money, major_units
from tests.harness import ROOT


def test_every_key_has_both_languages_and_the_same_placeholders() -> None:
    assert len(MESSAGES) > 200
    for key, texts in MESSAGES.items():
        assert set(texts) == {"en", "zh-CN"}, key
        en, zh = (set(re.findall(r"\{(\w+)\}", texts[lang])) for lang in ("en", "zh-CN"))
        assert en == zh, f"{key}: placeholders differ: {en} vs {zh}"


def test_every_key_a_template_uses_exists() -> None:
    """A key typed into a template but missing from the catalogs would break that page."""
    used: set[str] = set()
    for template in (ROOT / "hub").rglob("*.html"):
        text = template.read_text()
        used |= set(re.findall(r"""\b_n?\(\s*["']([a-z0-9_]+)["']\s*[,)]""", text))
    assert used, "no translated text found in the templates"
    assert sorted(used - set(MESSAGES)) == []


def test_catalogs_are_po_sources_only() -> None:
    """The catalogs are compiled at load: no binary .mo is kept beside them."""
    assert sorted(p.name for p in LOCALE_DIR.rglob("*.po")) == ["learnhub.po", "learnhub.po"]
    assert list(LOCALE_DIR.rglob("*.mo")) == []


def test_plurals_follow_each_language() -> None:
    assert translate_plural("en", "qa_answer_count", 1) == "1 answer"
    assert translate_plural("en", "qa_answer_count", 0) == "0 answers"
    assert translate_plural("en", "qa_answer_count", 2) == "2 answers"
    assert translate_plural("zh-CN", "qa_answer_count", 1) == "1 个回答"
    assert translate_plural("zh-CN", "qa_answer_count", 5) == "5 个回答"


def test_unknown_language_falls_back_to_english_and_unknown_key_fails() -> None:
    assert translate("fr", "nav_catalog") == "Catalog"
    with pytest.raises(KeyError):
        translate("en", "no_such_key")


@pytest.mark.parametrize(
    ("amount", "currency", "lang", "text"),
    [
        (4900, "jpy", "en", "¥4,900"),  # zero-decimal: 4900 yen, not 49.00
        (4900, "usd", "en", "$49.00"),
        (6900, "USD", "zh-CN", "US$69.00"),
        (4900, "jpy", "zh-CN", "JP¥4,900"),
        (123456, "eur", "en", "€1,234.56"),
        (1000, "kwd", "en", "KWD1.000"),  # three decimals
    ],
)
def test_money_knows_each_currencys_decimals(
    amount: int, currency: str, lang: str, text: str
) -> None:
    assert format_money(amount, currency, lang) == text


def test_major_units() -> None:
    assert str(major_units(4900, "jpy")) == "4900"
    assert str(major_units(4900, "usd")) == "49.00"


def test_no_amount_is_divided_by_100_in_hub() -> None:
    """Every amount goes through hub.i18n.money; `/ 100` showed 4900 JPY as 49.00 JPY."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "hub").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"/\s*100\b(?!\s*%)", line) and "amount" in line.lower() + path.name
    ]
    assert offenders == []


def request(uri: str, **headers: str) -> HTTPServerRequest:
    return HTTPServerRequest(method="GET", uri=uri, headers=HTTPHeaders(headers))


def test_hub_pages_use_the_services_language_rule() -> None:
    assert request_language(request("/hub/login", **{"Accept-Language": "zh-CN"})) == "zh-CN"
    cookie = request("/hub/home", Cookie="learnhub-lang=en", **{"Accept-Language": "zh-CN"})
    assert request_language(cookie) == "en"
    assert request_language(request("/hub/home?lang=zh-CN", Cookie="learnhub-lang=en")) == "zh-CN"
    assert request_language(request("/hub/home", Cookie="learnhub-lang=<bad>")) == "en"


def test_hub_template_vars_read_the_request_of_the_task() -> None:
    transform = RequestLanguage(request("/b/hub/login?next=%2Fb%2Fx&lang=zh-CN"))
    names = hub_template_vars("/b/services/learnhub/")
    assert names["lang"](None) == "zh-CN"
    assert names["_"](None)("nav_catalog") == "课程目录"
    assert names["learnhub_next"](None) == "/b/x"
    assert names["lang_url"](None)("en") == "/b/hub/login?next=%2Fb%2Fx&lang=en"
    headers = HTTPHeaders({"Content-Type": "text/html; charset=UTF-8"})
    transform.transform_first_chunk(200, headers, b"", True)
    assert headers.get_list("Set-Cookie") == ["learnhub-lang=zh-CN; Path=/; SameSite=Lax"]


def test_hub_templates_compile() -> None:
    env = Environment(loader=FileSystemLoader([str(ROOT / "hub" / "templates")]))
    for template in sorted((ROOT / "hub" / "templates").rglob("*.html")):
        name = template.relative_to(ROOT / "hub" / "templates").as_posix()
        if name.startswith(("spawn_pending", "not_running")):
            continue  # they extend JupyterHub's own templates (`templates/...`)
        env.parse(template.read_text())
