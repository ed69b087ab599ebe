"""The demo's accounts (``mode: demo``): who they are, their password, what they own at start.

The hub config seeds the accounts and the starting group; the service seeds the matching
entitlement. Both read them from here.
"""

from __future__ import annotations

from hub.courses import Catalog, learner_group
from hub.settings import Settings

#: Demo accounts and the password stated in the README (overridable with LEARNHUB_DEMO_PASSWORD).
DEMO_USERS = ("demo-learner", "demo-instructor", "demo-admin")
DEMO_PASSWORD = "learnhub-demo"  # noqa: S105 - the documented demo password
#: The course the demo learner owns from the start, so the demo shows both Launch and Buy.
DEMO_OWNED_COURSE = "python-foundations"
#: The demo account that is a JupyterHub admin.
DEMO_ADMIN = "demo-admin"
#: The demo account that owns :data:`DEMO_OWNED_COURSE`.
DEMO_LEARNER = "demo-learner"


def demo_seed_users(settings: Settings) -> dict[str, str]:
    """The demo accounts and their password, for the authenticator to create at start."""
    password = settings.secret("demo_password") or DEMO_PASSWORD
    return dict.fromkeys(DEMO_USERS, password)


def demo_groups(catalog: Catalog) -> dict[str, dict[str, list[str]]]:
    """The group the demo learner starts in (none if the demo course is not in the catalog)."""
    if DEMO_OWNED_COURSE not in catalog:
        return {}
    return {learner_group(DEMO_OWNED_COURSE): {"users": [DEMO_LEARNER]}}
