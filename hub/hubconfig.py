"""Apply validated settings to a JupyterHub config object.

One ``apply_<area>(c, settings, ...)`` function per area. Each only *sets* values, never appends,
so applying twice gives the same config. `jupyterhub_config.py` calls :func:`apply_all`; the
spawner backends are applied by `spawner_config.py`. What the values are made from lives beside:
addresses in `hub.addresses`, the demo accounts in `hub.demo_accounts`, the member home page in
`hub.home`, the Hub's SQLite pragmas in `hub.hub_sqlite`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hub.access.hub_groups import ACCESS_SCOPES
from hub.access.scopes import (
    CLI_SCOPES,
    CUSTOM_SCOPES,
    LEARNHUB_SCOPE,
    OPERATOR_SCOPE,
    SERVER_TOKEN_SCOPES,
)
from hub.addresses import hub_connect_host, hub_ip, service_prefix, service_url
from hub.courses import Catalog
from hub.demo_accounts import DEMO_ADMIN, DEMO_USERS, demo_groups, demo_seed_users
from hub.home import course_titles, front_door, home_courses
from hub.hub_sqlite import tune_hub_sqlite
from hub.i18n.hub_pages import hub_template_vars, language_transform
from hub.logs import hub_logging_config
from hub.metrics import (
    HUB_METRICS_SCOPE,
    METRICS_CUSTOM_SCOPES,
    METRICS_SCOPE,
    SCRAPER_ROLE,
    SCRAPER_SERVICE,
)
from hub.privilege import prepare_data_dir, proxy_account, service_account
from hub.seo import site_root_routes
from hub.settings import Settings
from hub.store.hub_side import service_db_owner
from hub.subdomains import learnhub_subdomain_hook


def apply_hub(c: Any, settings: Settings) -> None:
    """Proxy, Hub API address, base URL, database, cookie secret, logging."""
    hub = settings.hub
    data_dir = settings.data_dir
    # Root's part 0700 (0710 for the service's group), the service's part its own.
    prepare_data_dir(settings)
    c.JupyterHub.bind_url = hub.bind_url
    c.JupyterHub.hub_bind_url = f"http://{hub_ip(settings)}:{hub.hub_port}"
    if settings.spawner.backend == "kubernetes":
        # The Hub binds its pod's addresses; pods and the proxy come through its Service.
        c.JupyterHub.hub_connect_url = f"http://{hub_connect_host(settings)}:{hub.hub_port}"
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(data_dir / "proxy.pid")
    c.ConfigurableHTTPProxy.command = proxy_command(settings)
    # robots.txt and sitemap.xml at the site's root, served by the LearnHub service (hub.seo).
    c.Proxy.extra_routes = site_root_routes(settings, service_url(settings))
    # One origin per user server: a learner's page cannot read the Hub's pages (its tokens)
    # as whoever opens it. The LearnHub service stays on the Hub's host (hub.subdomains).
    if settings.subdomain_host:
        c.JupyterHub.subdomain_host = settings.subdomain_host
        c.JupyterHub.subdomain_hook = learnhub_subdomain_hook
    c.JupyterHub.db_url = settings.hub_db_url
    tune_hub_sqlite(settings.hub_db_url)
    c.JupyterHub.cookie_secret_file = str(data_dir / "jupyterhub_cookie_secret")
    cookie_secret = settings.secret("cookie_secret")
    if cookie_secret:
        c.JupyterHub.cookie_secret = cookie_secret.encode()
    c.JupyterHub.pid_file = str(data_dir / "jupyterhub.pid")
    # traitlets spells it WARN; Python's logging (our service) spells it WARNING.
    c.JupyterHub.log_level = "WARN" if hub.log_level == "WARNING" else hub.log_level
    # LearnHub's own records in the Hub's log, with their key=value pairs (hub.logs).
    c.JupyterHub.logging_config = hub_logging_config(hub.log_level)
    # Servers keep running across a hub restart; the new hub finds them again.
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = False
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 0
    # The site's root is the front door: visitors land on the catalog, members on the page that
    # lists their courses (one named server per course), never on a default server.
    c.JupyterHub.default_url = front_door(settings)
    # The Hub's pages share the service's look, navigation and language (hub/templates).
    c.JupyterHub.template_paths = [str(Path(__file__).parent / "templates")]
    c.JupyterHub.logo_file = str(Path(__file__).parent / "service" / "static" / "learnhub-logo.svg")
    c.JupyterHub.template_vars = {
        "learnhub_mode": settings.mode,
        "learnhub_native_auth": settings.auth.kind == "native",
        "learnhub_courses": home_courses(settings),
        "learnhub_course_title": course_titles(settings),
        **hub_template_vars(service_prefix(settings)),
    }
    c.JupyterHub.tornado_settings = {
        "transforms": [language_transform(urlparse(hub.bind_url).path)],
    }
    c.JupyterHub.authenticate_prometheus = True


def apply_auth(c: Any, settings: Settings) -> None:
    """Choose and configure the authenticator."""
    auth = settings.auth
    admins = set(settings.hub.admin_users)
    if settings.mode == "demo":
        admins.add(DEMO_ADMIN)
    c.Authenticator.admin_users = admins
    if auth.kind == "native":
        c.JupyterHub.authenticator_class = "hub.auth.LearnHubNativeAuthenticator"
        c.Authenticator.allow_all = True
        c.NativeAuthenticator.open_signup = auth.open_signup
        c.NativeAuthenticator.minimum_password_length = auth.minimum_password_length
        c.NativeAuthenticator.check_common_password = True
        c.NativeAuthenticator.enable_signup = True
        c.LearnHubNativeAuthenticator.reserved_courses_dir = str(settings.courses_dir.resolve())
        for key, value in auth.lockout.model_dump().items():
            setattr(c.LearnHubNativeAuthenticator, f"lockout_{key}", value)
        apply_email_auth(c, settings)
        if settings.mode == "demo":
            c.LearnHubNativeAuthenticator.seed_users = demo_seed_users(settings)
            c.Authenticator.allowed_users = set(DEMO_USERS)
    elif auth.kind == "github":
        c.JupyterHub.authenticator_class = "hub.oauth.LearnHubGitHubOAuthenticator"
        c.GitHubOAuthenticator.client_id = auth.github.client_id
        c.GitHubOAuthenticator.client_secret = settings.secret("oauth_client_secret") or ""
        c.GitHubOAuthenticator.oauth_callback_url = auth.github.callback_url
        if auth.github.allowed_organizations:
            c.GitHubOAuthenticator.allowed_organizations = set(auth.github.allowed_organizations)
        else:
            c.GitHubOAuthenticator.allow_all = True
    else:
        generic = auth.generic
        c.JupyterHub.authenticator_class = "hub.oauth.LearnHubGenericOAuthenticator"
        c.GenericOAuthenticator.client_id = generic.client_id
        c.GenericOAuthenticator.client_secret = settings.secret("oauth_client_secret") or ""
        c.GenericOAuthenticator.oauth_callback_url = generic.callback_url
        c.GenericOAuthenticator.authorize_url = generic.authorize_url
        c.GenericOAuthenticator.token_url = generic.token_url
        c.GenericOAuthenticator.userdata_url = generic.userdata_url
        c.GenericOAuthenticator.username_claim = generic.username_claim
        c.GenericOAuthenticator.scope = list(generic.scope)
        c.GenericOAuthenticator.allow_all = True


def apply_email_auth(c: Any, settings: Settings) -> None:
    """Mail on the Hub's side: the address at sign-up, its verification, password reset."""
    email = settings.email
    native = c.LearnHubNativeAuthenticator
    native.email_enabled = email.enabled
    native.ask_email_on_signup = email.enabled
    native.learnhub_db_url = settings.learnhub_db_url
    native.learnhub_db_owner = service_db_owner(settings)  # whose SQLite file the Hub opens
    native.email_secret = settings.email_secret
    native.email_verify_hours = email.verify_hours
    native.email_reset_minutes = email.reset_minutes
    native.email_reset_requests = email.reset_requests
    native.email_reset_window = settings.limits.window_seconds


def apply_groups(c: Any, settings: Settings, catalog: Catalog) -> None:
    """Create every course's groups; seed instructors (and the demo learner's course).

    `load_groups` only adds members, so these are the starting point; later changes go through
    `hub.access.hub_groups`.
    """
    groups: dict[str, dict[str, list[str]]] = {}
    for entry in catalog:
        course = entry.course
        groups[course.learner_group] = {"users": []}
        groups[course.instructor_group] = {"users": sorted(course.instructors)}
    if settings.mode == "demo":
        groups.update(demo_groups(catalog))
    c.JupyterHub.load_groups = groups


def apply_services(c: Any, settings: Settings) -> None:
    """Managed services and their roles: the idle culler, the operator's admin token and the
    metrics scraper's token."""
    services: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    if settings.spawner.idle_timeout > 0:
        services.append(
            {
                "name": "idle-culler",
                "command": [
                    sys.executable,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={settings.spawner.idle_timeout}",
                    "--cull-every=60",
                ],
                # It only calls the Hub API: no reason to be root.
                **run_as(settings),
            }
        )
        roles.append(
            {
                "name": "idle-culler",
                "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
                "services": ["idle-culler"],
            }
        )
    services.append(learnhub_service(settings))
    if settings.grading.worker.enabled:
        services.append(grading_worker_service(settings))
        # Its token reaches the exchange (release, collect, feedback) as an operator, as the
        # CLI's token does for `learnhub grader`; it needs no more than that.
        roles.append(
            {
                "name": "learnhub-grading-worker",
                "services": ["grading-worker"],
                "scopes": [OPERATOR_SCOPE, LEARNHUB_SCOPE],
            }
        )
    roles.append(
        {"name": "learnhub-service", "services": ["learnhub"], "scopes": list(ACCESS_SCOPES)}
    )
    # JupyterHub 5+ lets users sign in to a service only with `access:services`; every member
    # must reach the LearnHub service (catalog, checkout, purchases), so the default `user`
    # role gets it for that one service on top of its usual `self`.
    # Members also hold LearnHub's scope, which the exchange and the grades API require on the
    # token itself (hub.access.scopes); their servers' tokens ask for it.
    roles.append(
        {"name": "user", "scopes": ["self", "access:services!service=learnhub", LEARNHUB_SCOPE]}
    )
    cli_token = settings.secret("cli_token")
    if cli_token:
        # The `learnhub` CLI's token: the Hub scopes its membership commands use and LearnHub's
        # own (the exchange, account activation); it cannot make users, tokens or admins, read
        # servers' state or shut the Hub down (docs/security.md, "The CLI's token").
        services.append({"name": CLI_SERVICE, "api_token": cli_token})
        roles.append({"name": CLI_SERVICE, "scopes": list(CLI_SCOPES), "services": [CLI_SERVICE]})
    admin_token = settings.secret("admin_token")
    if admin_token:
        # Optional: a full-admin token for the operator's own scripts (and the test harness).
        # LearnHub's own code never uses it.
        services.append({"name": "learnhub-admin", "api_token": admin_token})
        roles.append({"name": "admin", "services": ["learnhub-admin"]})
        roles.append(
            {
                "name": "learnhub-operator",
                "scopes": [LEARNHUB_SCOPE, OPERATOR_SCOPE],
                "services": ["learnhub-admin"],
            }
        )
    metrics_token = settings.secret("metrics_token")
    if metrics_token:
        # A token-only service (no process, no URL) that reads the Hub's /hub/metrics and the
        # LearnHub service's /metrics, and nothing else: no user, group or server data.
        services.append({"name": SCRAPER_SERVICE, "api_token": metrics_token})
        roles.append(
            {
                "name": SCRAPER_ROLE,
                "scopes": [HUB_METRICS_SCOPE, METRICS_SCOPE],
                "services": [SCRAPER_SERVICE],
            }
        )
    c.JupyterHub.custom_scopes = {**CUSTOM_SCOPES, **METRICS_CUSTOM_SCOPES}
    c.Spawner.server_token_scopes = list(SERVER_TOKEN_SCOPES)
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


def learnhub_service(settings: Settings) -> dict[str, Any]:
    """The LearnHub service (catalog, checkout, Stripe webhook) as a hub-managed service.

    JupyterHub starts it with a clean environment, so the settings file and the secrets are
    passed explicitly; they never appear on its command line.
    """
    environment: dict[str, str] = {"LEARNHUB_MODE": settings.mode}
    if settings.source != "<defaults>":
        environment["LEARNHUB_CONFIG"] = str(Path(settings.source).resolve())
    # Only its own secrets: the service is the most exposed process (public webhook, uploads,
    # members' posts). Its Hub token comes from JupyterHub (JUPYTERHUB_API_TOKEN, role
    # learnhub-service); the admin token, cookie secret and OAuth secret stay with the Hub.
    for field in SERVICE_SECRETS:
        value = settings.secret(field)
        if value:
            environment[f"LEARNHUB_{field.upper()}"] = value
    service: dict[str, Any] = {
        "name": "learnhub",
        "url": service_url(settings),
        # Where containers reach the exchange, resolved here: the service has no Docker access.
        "command": [
            sys.executable,
            "-m",
            "hub.service",
            f"--container-address={hub_ip(settings)}",
        ],
        "cwd": str(Path.cwd()),
        "environment": environment,
        "oauth_no_confirm": True,
        "display": True,
        # JupyterHub exits when a managed service does not answer within `timeout` (30 s by
        # default). The service imports Stripe, SQLAlchemy and Alembic, migrates and loads the
        # catalog first: with 200 courses on a busy 2-core machine that took longer, and the
        # Hub exited at start (benchmarks/scale.py).
        "timeout": SERVICE_START_TIMEOUT,
        **run_as(settings),
    }
    token = settings.secret("service_token")
    if token:
        # A fixed token survives hub restarts and can be rotated by the operator.
        service["api_token"] = token
    return service


def proxy_command(settings: Settings) -> list[str]:
    """configurable-http-proxy through :mod:`hub.proxy_launch`: as ``hub.proxy_user`` when the
    Hub is root, and in every case without the Hub's environment (its secrets)."""
    account = proxy_account(settings)  # a missing user fails here, naming useradd
    user = account.name if account else ""
    return [sys.executable, "-m", "hub.proxy_launch", "--user", user, "--"]


def grading_worker_service(settings: Settings) -> dict[str, Any]:
    """`learnhub grader worker` as a managed service without URL (like the idle culler), by its
    own entry point :mod:`hub.grading_worker`: the CLI's imports took 14 s under load.

    It runs as the Hub's user (root): grading needs the Docker engine for the sandboxes and the
    root-only grading folders. It takes no network input, only job rows, which it checks again
    against `course.yaml` and an allow-list (docs/security.md, "Grading jobs"). No secret is
    passed: its Hub token comes from JupyterHub.
    """
    environment: dict[str, str] = {"LEARNHUB_MODE": settings.mode}
    if settings.source != "<defaults>":
        environment["LEARNHUB_CONFIG"] = str(Path(settings.source).resolve())
    return {
        "name": "grading-worker",
        "command": [sys.executable, "-m", "hub.grading_worker"],
        "cwd": str(Path.cwd()),
        "environment": environment,
    }


def run_as(settings: Settings) -> dict[str, str]:
    """The managed-service ``user`` key: the unprivileged ``hub.service_user`` when the Hub
    is root (JupyterHub then sets the uid, gid, groups, ``USER`` and ``HOME`` of the service
    before it runs), else nothing: a Hub that is not root runs its services as itself."""
    account = service_account(settings)
    return {"user": account.name} if account else {}


#: Seconds the Hub waits for the LearnHub service to answer at start.
SERVICE_START_TIMEOUT = 180

#: The Hub service (and role) whose token the `learnhub` CLI uses (``LEARNHUB_CLI_TOKEN``).
CLI_SERVICE = "learnhub-cli"

#: The secrets the LearnHub service itself uses, and so the only ones it is given.
SERVICE_SECRETS = (
    "stripe_secret_key",
    "stripe_webhook_secrets",
    "smtp_password",
    "email_secret",
)


def apply_all(c: Any, settings: Settings, catalog: Catalog) -> None:
    """Everything but the spawner backend."""
    apply_hub(c, settings)
    apply_auth(c, settings)
    apply_groups(c, settings, catalog)
    apply_services(c, settings)
