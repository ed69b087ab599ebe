"""LearnHub's own database: models, the :class:`Database` wrapper and migrations."""

from hub.store.certificate_models import Certificate
from hub.store.database import Database, create_engine, upgrade
from hub.store.exchange_models import ExchangeFeedback, ExchangeRelease, ExchangeSubmission
from hub.store.job_models import GradingJob
from hub.store.mail_models import MemberEmail, OutboxMessage
from hub.store.models import (
    Base,
    CheckoutSession,
    DemoStripeObject,
    Entitlement,
    Payment,
    StripeEvent,
    utcnow,
)
from hub.store.preference_models import MemberPreference
from hub.store.usage_models import (
    Announcement,
    AutogradeRun,
    CourseReview,
    GradeSummary,
    ServerUsage,
)

__all__ = [
    "Announcement",
    "AutogradeRun",
    "Base",
    "Certificate",
    "CheckoutSession",
    "CourseReview",
    "Database",
    "DemoStripeObject",
    "Entitlement",
    "ExchangeFeedback",
    "ExchangeRelease",
    "ExchangeSubmission",
    "GradeSummary",
    "GradingJob",
    "MemberEmail",
    "MemberPreference",
    "OutboxMessage",
    "Payment",
    "ServerUsage",
    "StripeEvent",
    "create_engine",
    "upgrade",
    "utcnow",
]
