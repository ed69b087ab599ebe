"""The sign-up name rules and the login back-off, without a hub."""

from __future__ import annotations

import pytest

from hub.logins import LoginThrottle
from hub.usernames import lookalike_of, normalize_username, username_refusal


@pytest.mark.parametrize("name", ["ada-lovelace", "a", "Grace-Hopper", "r2d2", "x" * 32])
def test_plain_names_are_accepted(name: str) -> None:
    assert username_refusal(name) is None


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "Choose a username"),
        ("ada lovelace", "U+0020 SPACE"),
        ("ada\u00a0lovelace", "U+00A0 NO-BREAK SPACE"),
        ("ada\u2060lovelace", "invisible character (U+2060 WORD JOINER)"),
        ("ada\u202elovelace", "invisible character (U+202E RIGHT-TO-LEFT OVERRIDE)"),
        ("ada\x00", "invisible character (U+0000"),
        ("\u0430da", "CYRILLIC SMALL LETTER A"),
        ("\u03bfscar", "GREEK SMALL LETTER OMICRON"),
        ("\uff41\uff44\uff41", "plain letters: ada"),
        ("ada&co", "markup"),
        ("ada-", "single hyphens"),
        ("-ada", "start with a letter"),
        ("ada_lovelace", "only a-z, 0-9"),
        ("x" * 33, "longer than 32"),
    ],
)
def test_refusals_name_the_problem(name: str, says: str) -> None:
    refusal = username_refusal(name)
    assert refusal is not None and says in refusal, refusal


def test_nfkc_makes_full_width_names_find_the_plain_account() -> None:
    assert normalize_username("\uff24\uff45\uff4d\uff4f-Learner") == "demo-learner"


def test_lookalikes() -> None:
    existing = ["root-admin", "ada-lovelace", "william"]
    assert lookalike_of("r00t-admin", existing) == "root-admin"
    assert lookalike_of("adalovelace", existing) == "ada-lovelace"
    assert lookalike_of("wiiliam", existing) == "william"
    # The same name is "taken", not a look-alike.
    assert lookalike_of("root-admin", existing) is None
    assert lookalike_of("grace", existing) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_back_off_doubles_and_is_capped() -> None:
    clock = Clock()
    throttle = LoginThrottle(threshold=3, base_seconds=10, max_seconds=60, clock=clock)
    assert throttle.count_attempt("x") == 0
    assert throttle.count_attempt("x") == 0
    assert throttle.count_attempt("x") == 10
    assert throttle.wait("x") == 10
    clock.now += 10
    assert throttle.wait("x") == 0
    assert throttle.count_attempt("x") == 20
    clock.now += 20
    assert throttle.count_attempt("x") == 40
    clock.now += 40
    assert throttle.count_attempt("x") == 60  # capped
    assert throttle.wait("other") == 0


def test_quiet_failures_are_forgotten_and_success_clears() -> None:
    clock = Clock()
    throttle = LoginThrottle(threshold=2, base_seconds=10, max_seconds=60, clock=clock)
    throttle.count_attempt("x")
    clock.now += 61
    assert throttle.count_attempt("x") == 0  # the first failure was too long ago
    throttle.forget("x")
    assert throttle.count_attempt("x") == 0
    # A correct login from an address takes back its own count, and unlocks if below the limit.
    throttle.count_attempt("addr")
    assert throttle.count_attempt("addr") == 10
    throttle.forgive("addr")
    assert throttle.wait("addr") == 0
