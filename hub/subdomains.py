"""Which host serves what once user servers have their own subdomains.

JupyterHub's default hook (`subdomain_hook_idna`) gives every user *and* every service a
subdomain. LearnHub's service (catalog, checkout, dashboards, the exchange) is trusted code whose
pages link to the Hub and back and whose sign-in is the Hub's OAuth: it stays on the Hub's own
host, so only learners' servers, which run strangers' code, get origins of their own.
"""

from __future__ import annotations

from jupyterhub.utils import subdomain_hook_idna


def learnhub_subdomain_hook(name: str, domain: str, kind: str) -> str:
    """The host of user server owner or service ``name`` under ``domain``.

    Services are served on ``domain`` itself (the Hub's host); users on
    ``<idna-safe name>.<domain>`` as JupyterHub does by default.
    """
    if kind == "service":
        return domain
    return str(subdomain_hook_idna(name, domain, kind))
