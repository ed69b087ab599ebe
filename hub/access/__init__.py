"""Access: who may open, teach and administer which course, and making the Hub agree.

- :mod:`hub.access.policy` — :class:`Member` and its rule (pure; no Hub, no database).
- :mod:`hub.access.status` — the entitlement statuses and reasons, as stored in the database.
- :mod:`hub.access.hub_groups` — the Hub REST client and the membership sync, the only code that
  changes JupyterHub groups. Import it by its module name: it reads the database and the Hub, and
  this package's root stays light enough for the spawner and the exchange.
"""

from hub.access.policy import Member
from hub.access.status import (
    ACCESS_STATUSES,
    EntitlementReason,
    EntitlementStatus,
    PurchaseStatus,
)

__all__ = [
    "ACCESS_STATUSES",
    "EntitlementReason",
    "EntitlementStatus",
    "Member",
    "PurchaseStatus",
]
