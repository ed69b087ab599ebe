"""Creating Stripe Checkout Sessions for a course (one-off) or a plan (subscription)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import stripe

from hub.access.policy import Member
from hub.billing.fulfilment import META_COURSE, META_PLAN, META_USER, FulfilmentError
from hub.courses import Catalog
from hub.entitlements import courses_granted
from hub.errors import LearnHubError
from hub.settings import Settings
from hub.store import Database, utcnow
from hub.store import repository as repo

log = logging.getLogger("learnhub.billing")


class CheckoutRefused(LearnHubError):
    """A checkout that must not happen; the message is meant for the learner."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def user_courses(db: Database, catalog: Catalog, settings: Settings, user: str) -> set[str]:
    """Courses our database entitles ``user`` to now (blocking)."""
    with db.transaction() as session:
        return courses_granted(
            repo.entitlements(session, user),
            catalog,
            settings.payments.plans,
            now=utcnow(),
            grace=timedelta(days=settings.payments.grace_period_days),
        )


def _course_params(settings: Settings, catalog: Catalog, course_id: str) -> dict[str, Any]:
    entry = catalog.get(course_id)
    if entry is None:
        raise CheckoutRefused(f"There is no course {course_id!r}.", status=404)
    course = entry.course
    if course.price.amount == 0:
        raise CheckoutRefused(f"{course.title} is free; no payment is needed.")
    price_id = settings.payments.course_price_ids.get(course_id)
    item: dict[str, Any] = (
        {"price": price_id, "quantity": 1}
        if price_id
        else {
            "quantity": 1,
            "price_data": {
                "currency": course.price.currency,
                "unit_amount": course.price.amount,
                "product_data": {"name": course.title},
            },
        }
    )
    return {"mode": "payment", "line_items": [item]}


def _plan_params(settings: Settings, plan_id: str) -> dict[str, Any]:
    plan = next((p for p in settings.payments.plans if p.id == plan_id), None)
    if plan is None:
        raise CheckoutRefused(f"There is no plan {plan_id!r}.", status=404)
    item: dict[str, Any] = (
        {"price": plan.stripe_price_id, "quantity": 1}
        if plan.stripe_price_id
        else {
            "quantity": 1,
            "price_data": {
                "currency": plan.currency,
                "unit_amount": plan.amount,
                "recurring": {"interval": plan.interval},
                "product_data": {"name": plan.title},
            },
        }
    )
    return {"mode": "subscription", "line_items": [item]}


async def create_checkout(
    client: stripe.StripeClient,
    db: Database,
    settings: Settings,
    catalog: Catalog,
    *,
    user: str,
    success_url: str,
    cancel_url: str,
    course_id: str | None = None,
    plan_id: str | None = None,
) -> tuple[str, str]:
    """Create a Checkout Session for ``user``; return ``(session_id, url)``.

    ``success_url`` should contain ``{CHECKOUT_SESSION_ID}``. The session is recorded with the
    user and the price asked for: fulfilment grants only sessions recorded so, and only when
    what was paid matches (see :func:`hub.billing.fulfilment.line_item_problem`). Refuses
    (``CheckoutRefused``) an unknown course or plan, a free course, and anything the learner
    already has access to.
    """
    if (course_id is None) == (plan_id is None):
        raise ValueError("give exactly one of course_id and plan_id")
    # Only entitlements count here, not Hub groups or the admin flag: a purchase adds an
    # entitlement, so only an existing one makes it pointless.
    buyer = Member(
        user, entitled=frozenset(await asyncio.to_thread(user_courses, db, catalog, settings, user))
    )
    if course_id is not None:
        params = _course_params(settings, catalog, course_id)
        if buyer.may_open(course_id):
            raise CheckoutRefused(
                f"You already have access to {course_id}; there is nothing to buy.", status=409
            )
        metadata = {META_USER: user, META_COURSE: course_id}
        params["payment_intent_data"] = {"metadata": metadata}
        entry = catalog.get(course_id)
        assert entry is not None  # _course_params refused an unknown course
        price_id = settings.payments.course_price_ids.get(course_id) or None
        amount, currency = entry.course.price.amount, entry.course.price.currency
    else:
        assert plan_id is not None
        params = _plan_params(settings, plan_id)
        plan = next(p for p in settings.payments.plans if p.id == plan_id)
        courses = set(catalog.ids()) if plan.courses == "all" else set(plan.courses)
        if courses and all(buyer.may_open(course) for course in courses):
            raise CheckoutRefused(
                f"You already have access to every course of {plan.title}.", status=409
            )
        metadata = {META_USER: user, META_PLAN: plan_id}
        params["subscription_data"] = {"metadata": metadata}
        price_id = plan.stripe_price_id or None
        amount, currency = plan.amount, plan.currency
    params.update(
        {
            "client_reference_id": user,
            "metadata": metadata,
            # Promotion codes are off: a code of the Stripe account is not limited to
            # LearnHub's products unless its coupon says so, and LearnHub cannot check that at
            # checkout. Discounts are given with LearnHub prices, or `learnhub grant`.
            "allow_promotion_codes": False,
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
    )
    try:
        session = await client.v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        raise FulfilmentError(f"Stripe create checkout session failed: {exc}") from exc
    session_id = str(session.id)
    url = str(session.url)

    def record() -> None:
        with db.transaction() as s:
            repo.record_checkout_session(
                s,
                session_id=session_id,
                username=user,
                course_id=course_id,
                plan_id=plan_id,
                mode=str(params["mode"]),
                status="open",
                price_id=price_id,
                amount=amount,
                currency=currency.lower(),
            )

    await asyncio.to_thread(record)
    log.info(
        "checkout created",
        extra={"user": user, "course": course_id, "plan": plan_id, "outcome": "created"},
    )
    return session_id, url
