"""`learnhub stripe sync`: make sure Stripe has a price for every course and membership plan.

Prices are found by a lookup key that encodes what is sold and for how much, so running the sync
again finds them instead of creating duplicates, and a changed price gets a new Stripe price
(Stripe prices are immutable) while the old one keeps serving existing subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import stripe

from hub.courses import Catalog
from hub.settings import PlanSettings


def course_lookup_key(course_id: str, amount: int, currency: str) -> str:
    """Lookup key of a course's one-off price."""
    return f"learnhub-course-{course_id}-{amount}-{currency}"


def plan_lookup_key(plan: PlanSettings) -> str:
    """Lookup key of a plan's recurring price."""
    return f"learnhub-plan-{plan.id}-{plan.interval}-{plan.amount}-{plan.currency}"


@dataclass
class PriceSync:
    """Price ids found or created, and which were created now."""

    courses: dict[str, str] = field(default_factory=dict)
    plans: dict[str, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)

    def as_settings_yaml(self) -> str:
        """The `payments:` settings that use these prices."""
        lines = ["payments:", "  course_price_ids:"]
        lines += [f"    {course}: {price}" for course, price in sorted(self.courses.items())]
        if self.plans:
            lines.append("  # and on each plan:")
            lines += [
                f"  #   - id: {plan}\n  #     stripe_price_id: {price}"
                for plan, price in sorted(self.plans.items())
            ]
        return "\n".join(lines)


def _find_or_create(
    client: stripe.StripeClient,
    key: str,
    name: str,
    price: dict[str, Any],
    metadata: dict[str, str],
    result: PriceSync,
) -> str:
    found = client.v1.prices.list({"lookup_keys": [key], "limit": 1})
    if found.data:
        return str(found.data[0].id)
    product = client.v1.products.create({"name": name, "metadata": metadata})
    created = client.v1.prices.create(
        {"product": product.id, "lookup_key": key, "metadata": metadata, **price}  # type: ignore[typeddict-item]
    )
    result.created.append(key)
    return str(created.id)


def sync_prices(
    client: stripe.StripeClient, catalog: Catalog, plans: list[PlanSettings]
) -> PriceSync:
    """Find or create a Stripe price for every paid course and every plan (blocking)."""
    result = PriceSync()
    for entry in catalog:
        course = entry.course
        if course.price.amount == 0:
            continue
        key = course_lookup_key(course.id, course.price.amount, course.price.currency)
        result.courses[course.id] = _find_or_create(
            client,
            key,
            course.title,
            {"unit_amount": course.price.amount, "currency": course.price.currency},
            {"learnhub_course": course.id},
            result,
        )
    for plan in plans:
        result.plans[plan.id] = _find_or_create(
            client,
            plan_lookup_key(plan),
            plan.title,
            {
                "unit_amount": plan.amount,
                "currency": plan.currency,
                "recurring": {"interval": plan.interval},
            },
            {"learnhub_plan": plan.id},
            result,
        )
    return result
