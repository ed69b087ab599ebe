"""`learnhub stripe sync`: prices found by lookup key, never duplicated, and usable at checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.stripe_standin import API_KEY, StripeStandIn
from hub.billing.prices import course_lookup_key, sync_prices
from hub.cli import main
from hub.courses import Catalog
from hub.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_sync_creates_once_then_finds(
    standin: StripeStandIn, catalog: Catalog, settings: Settings
) -> None:
    first = sync_prices(standin.client(), catalog, settings.payments.plans)
    # The free course gets no price; two paid courses and two plans do.
    assert set(first.courses) == {"python-101", "data-201"}
    assert set(first.plans) == {"all-access", "data-only"}
    assert len(first.created) == 4
    second = sync_prices(standin.client(), catalog, settings.payments.plans)
    assert second.created == []
    assert second.courses == first.courses and second.plans == first.plans
    price = standin.store.objects[first.plans["data-only"]]
    assert price["recurring"] == {"interval": "year"} and price["unit_amount"] == 9900
    assert standin.store.objects[first.courses["python-101"]]["lookup_key"] == (
        course_lookup_key("python-101", 4900, "usd")
    )
    assert "course_price_ids:" in second.as_settings_yaml()


def test_cli_stripe_sync(
    standin: StripeStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "learnhub.yaml"
    config.write_text(
        f"courses_dir: {ROOT / 'courses'}\n"
        f"payments:\n  provider: stripe\n  stripe_api_base: {standin.url}\n"
    )
    env = {"LEARNHUB_CONFIG": str(config), "LEARNHUB_STRIPE_SECRET_KEY": API_KEY}
    assert main(["stripe", "sync"], env) == 0
    out = capsys.readouterr().out
    assert "created price learnhub-course-python-foundations-4900-usd" in out
    assert "python-foundations: price_" in out
    assert main(["stripe", "sync"], env) == 0
    assert "created price" not in capsys.readouterr().out


def test_cli_stripe_sync_without_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "learnhub.yaml"
    config.write_text(f"courses_dir: {ROOT / 'courses'}\npayments:\n  provider: stripe\n")
    assert main(["stripe", "sync"], {"LEARNHUB_CONFIG": str(config)}) == 2
    assert "LEARNHUB_STRIPE_SECRET_KEY is not set" in capsys.readouterr().err
