"""The words of entitlements: their status, why it is what it is, and what a buyer is shown.

Each value is the exact string stored in the database (``entitlements.status``,
``entitlements.status_reason``) and used in i18n keys (``status_<purchase status>``), so a
member is a ``str`` and compares equal to the stored text: renaming a value is a migration.
"""

from __future__ import annotations

from enum import StrEnum


class EntitlementStatus(StrEnum):
    """Whether an entitlement gives access (the ``ck_entitlements_status`` constraint)."""

    #: Paid, granted or taught: gives access.
    ACTIVE = "active"
    #: Payment not settled yet: no access.
    PENDING = "pending"
    #: A renewal failed: access until the period end plus the grace period.
    PAST_DUE = "past_due"
    #: Refunded, disputed, cancelled, failed or taken away: no access; the row is kept.
    REVOKED = "revoked"


#: Statuses that may give access (``past_due`` only within its grace period).
ACCESS_STATUSES = frozenset({EntitlementStatus.ACTIVE, EntitlementStatus.PAST_DUE})


class EntitlementReason(StrEnum):
    """Why fulfilment set an entitlement's status (``entitlements.status_reason``).

    The column also holds a subscription's own Stripe status (``trialing``, ``canceled``,
    ``unpaid`` ...) and an operator's free text, so it is read as a plain ``str``.
    """

    PAID = "paid"
    AWAITING_PAYMENT = "awaiting_payment"
    PAYMENT_FAILED = "payment_failed"
    REFUNDED = "refunded"
    DISPUTE_OPEN = "dispute_open"
    DISPUTE_LOST = "dispute_lost"
    DISPUTE_WON = "dispute_won"
    INCOMPLETE = "incomplete"
    CANCEL_AT_PERIOD_END = "cancel_at_period_end"
    #: Stripe's status of a subscription that ended (kept as Stripe says it).
    CANCELED = "canceled"
    #: ``learnhub revoke``: the row stays revoked whatever a later Stripe event about the same
    #: checkout says; only a new payment (a new row) or a new grant gives access again.
    OPERATOR_REVOKED = "revoked by operator"


#: Reason prefix shared by every dispute reason.
DISPUTE_PREFIX = "dispute"


class PurchaseStatus(StrEnum):
    """What a buyer sees for a purchase; ``status_<value>`` is its i18n key."""

    ACTIVE = "active"
    PENDING = "pending"
    PAST_DUE = "past_due"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    REVOKED = "revoked"
    #: A checkout was started and never paid.
    OPEN = "open"

    @property
    def i18n_key(self) -> str:
        """The key of this status's label in :mod:`hub.i18n`."""
        return f"status_{self.value}"
