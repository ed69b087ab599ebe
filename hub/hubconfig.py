"""Apply validated settings to a JupyterHub config object.

One ``apply_<area>(c, settings, ...)`` function per area. Each only *sets* values, never appends,
so applying twice gives the same config. `jupyterhub_config.py` calls :func:`apply_all`; the
spawner backends are applied by `spawner_config.py`.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hub.access.hub_groups import ACCESS_SCOPES
from hub.access.status import EntitlementReason, EntitlementStatus
from hub.courses import Catalog, deadline_label, learner_group
from hub.errors import CourseError
from hub.network import gateway_address
from hub.settings import Settings

#: Demo accounts and the password stated in the README (overridable with LEARNHUB_DEMO_PASSWORD).
DEMO_USERS = ("demo-learner", "demo-instructor", "demo-admin")
DEMO_PASSWORD = "learnhub-demo"  # noqa: S105 - the documented demo password
#: The course the demo learner owns from the start, so the demo shows both Launch and Buy.
DEMO_OWNED_COURSE = "python-foundations"


@functools.cache
def _gateway(network: str) -> str:
    """The host's address on ``network``, looked up once per config load (a Docker API call)."""
    return gateway_address(network)


def hub_ip(settings: Settings) -> str:
    """Where the Hub API (and the exchange) listen: reachable from course containers only."""
    if settings.hub.hub_ip != "auto":
        return settings.hub.hub_ip
    if settings.spawner.backend in ("docker", "swarm"):
        return _gateway(settings.spawner.network)
    return "127.0.0.1"


def service_prefix(settings: Settings) -> str:
    """URL path of the LearnHub service, e.g. `/services/learnhub/`."""
    return urlparse(settings.hub.bind_url).path + "services/learnhub/"


def exchange_url(settings: Settings) -> str:
    """The nbgrader exchange as course containers reach it (the bridge gateway, not the proxy)."""
    return (
        f"http://{hub_ip(settings)}:{settings.hub.service_port}{service_prefix(settings)}exchange/"
    )


def make_private(data_dir: Path) -> None:
    """Keep the data folder (databases, cookie secret, exchange store) to its owner.

    The folder becomes 0700 and what it already holds loses group and other permissions; the
    umask makes every file this process and its children (the LearnHub service, the proxy)
    create from now on 0600 or 0700.
    """
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for path in data_dir.rglob("*"):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        if mode & 0o077:
            path.chmod(mode & 0o700)


def apply_hub(c: Any, settings: Settings) -> None:
    """Proxy, Hub API address, base URL, database, cookie secret, logging."""
    hub = settings.hub
    data_dir = settings.data_dir
    make_private(data_dir)
    c.JupyterHub.bind_url = hub.bind_url
    c.JupyterHub.hub_bind_url = f"http://{hub_ip(settings)}:{hub.hub_port}"
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(data_dir / "proxy.pid")
    if hub.subdomain_host:
        c.JupyterHub.subdomain_host = hub.subdomain_host
    c.JupyterHub.db_url = settings.hub_db_url
    tune_hub_sqlite(settings.hub_db_url)
    c.JupyterHub.cookie_secret_file = str(data_dir / "jupyterhub_cookie_secret")
    cookie_secret = settings.secret("cookie_secret")
    if cookie_secret:
        c.JupyterHub.cookie_secret = cookie_secret.encode()
    c.JupyterHub.pid_file = str(data_dir / "jupyterhub.pid")
    # traitlets spells it WARN; Python's logging (our service) spells it WARNING.
    c.JupyterHub.log_level = "WARN" if hub.log_level == "WARNING" else hub.log_level
    # Servers keep running across a hub restart; the new hub finds them again.
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = False
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 0
    # Every course has its own named server; people land on the page that lists them, never on
    # a default server (which LearnHub does not use).
    c.JupyterHub.default_url = urlparse(hub.bind_url).path + "hub/home"
    c.JupyterHub.template_paths = [str(Path(__file__).parent / "templates")]
    c.JupyterHub.template_vars = {
        "learnhub_mode": settings.mode,
        "learnhub_courses": home_courses(settings),
    }
    c.JupyterHub.authenticate_prometheus = True


def apply_auth(c: Any, settings: Settings) -> None:
    """Choose and configure the authenticator."""
    auth = settings.auth
    admins = set(settings.hub.admin_users)
    if settings.mode == "demo":
        admins.add("demo-admin")
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
        if settings.mode == "demo":
            password = settings.secret("demo_password") or DEMO_PASSWORD
            c.LearnHubNativeAuthenticator.seed_users = dict.fromkeys(DEMO_USERS, password)
            c.Authenticator.allowed_users = set(DEMO_USERS)
    elif auth.kind == "github":
        c.JupyterHub.authenticator_class = "github"
        c.GitHubOAuthenticator.client_id = auth.github.client_id
        c.GitHubOAuthenticator.client_secret = settings.secret("oauth_client_secret") or ""
        c.GitHubOAuthenticator.oauth_callback_url = auth.github.callback_url
        if auth.github.allowed_organizations:
            c.GitHubOAuthenticator.allowed_organizations = set(auth.github.allowed_organizations)
        else:
            c.GitHubOAuthenticator.allow_all = True
    else:
        generic = auth.generic
        c.JupyterHub.authenticator_class = "generic-oauth"
        c.GenericOAuthenticator.client_id = generic.client_id
        c.GenericOAuthenticator.client_secret = settings.secret("oauth_client_secret") or ""
        c.GenericOAuthenticator.oauth_callback_url = generic.callback_url
        c.GenericOAuthenticator.authorize_url = generic.authorize_url
        c.GenericOAuthenticator.token_url = generic.token_url
        c.GenericOAuthenticator.userdata_url = generic.userdata_url
        c.GenericOAuthenticator.username_claim = generic.username_claim
        c.GenericOAuthenticator.scope = list(generic.scope)
        c.GenericOAuthenticator.allow_all = True


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
    if settings.mode == "demo" and DEMO_OWNED_COURSE in catalog:
        groups[learner_group(DEMO_OWNED_COURSE)] = {"users": ["demo-learner"]}
    c.JupyterHub.load_groups = groups


def apply_services(c: Any, settings: Settings) -> None:
    """Managed services and their roles: the idle culler and the operator's admin token."""
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
    roles.append(
        {"name": "learnhub-service", "services": ["learnhub"], "scopes": list(ACCESS_SCOPES)}
    )
    # JupyterHub 5+ lets users sign in to a service only with `access:services`; every member
    # must reach the LearnHub service (catalog, checkout, purchases), so the default `user`
    # role gets it for that one service on top of its usual `self`.
    roles.append({"name": "user", "scopes": ["self", "access:services!service=learnhub"]})
    admin_token = settings.secret("admin_token")
    if admin_token:
        services.append({"name": "learnhub-admin", "api_token": admin_token})
        roles.append({"name": "admin", "services": ["learnhub-admin"]})
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
        "url": f"http://127.0.0.1:{settings.hub.service_port}",
        "command": [sys.executable, "-m", "hub.service"],
        "cwd": str(Path.cwd()),
        "environment": environment,
        "oauth_no_confirm": True,
        "display": True,
    }
    token = settings.secret("service_token")
    if token:
        # A fixed token survives hub restarts and can be rotated by the operator.
        service["api_token"] = token
    return service


#: The secrets the LearnHub service itself uses, and so the only ones it is given.
SERVICE_SECRETS = ("stripe_secret_key", "stripe_webhook_secrets")


#: JupyterHub SQLite files already given the pragmas below in this process.
_TUNED_SQLITE: set[str] = set()


def tune_hub_sqlite(db_url: str) -> None:
    """WAL and ``synchronous=NORMAL`` for JupyterHub's own SQLite database.

    JupyterHub commits on its event loop, and SQLite's default rollback journal with FULL sync
    waits for the disk at every commit: in a 20-server burst a quarter of the Hub's busy time was
    commits. In WAL mode NORMAL never corrupts the database; a power cut may lose the last
    commits, which the Hub rebuilds from the running containers at its next start. LearnHub's
    own database already runs this way (`hub/store/database.py`). JupyterHub creates its engine
    itself, so this listens for new connections to that one file. PostgreSQL is untouched.
    """
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    path = str(Path(str(url.database)).resolve())
    if path in _TUNED_SQLITE:
        return
    _TUNED_SQLITE.add(path)

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        databases = dbapi_connection.execute("PRAGMA database_list").fetchall()
        if not any(name == "main" and file == path for _, name, file in databases):
            return
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    sa.event.listen(sa.engine.Engine, "connect", pragmas)


def apply_all(c: Any, settings: Settings, catalog: Catalog) -> None:
    """Everything but the spawner backend."""
    apply_hub(c, settings)
    apply_auth(c, settings)
    apply_groups(c, settings, catalog)
    apply_services(c, settings)


def hub_api_url(settings: Settings) -> str:
    """The Hub REST API as seen from this machine (through the proxy)."""
    parsed = urlparse(settings.hub.bind_url)
    host = parsed.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - translating a bind-all address
        host = "127.0.0.1"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{host}:{port}{parsed.path}hub/api"


#: Why access ended, as the member home says it (entitlement ``status_reason`` -> words).
ENDED_REASONS: dict[str, str] = {
    EntitlementReason.REFUNDED: "refunded",
    EntitlementReason.DISPUTE_LOST: "payment disputed",
    EntitlementReason.DISPUTE_OPEN: "payment disputed",
    EntitlementReason.CANCELED: "membership cancelled",
    EntitlementReason.PAYMENT_FAILED: "payment failed",
}


def ended_courses(db: Any, username: str) -> dict[str, str]:
    """Courses whose every direct entitlement of ``username`` was revoked: ``{course: reason}``.

    Blocking, but one indexed query on a WAL database: cheap enough for a page render.
    """
    from hub.store import repository as repo

    reasons: dict[str, str] = {}
    live: set[str] = set()
    with db.transaction() as session:
        for row in repo.entitlements(session, username):
            if row.course_id is None:
                continue
            if row.status == EntitlementStatus.REVOKED:
                reasons[row.course_id] = ENDED_REASONS.get(row.status_reason or "", "access ended")
            else:
                live.add(row.course_id)
    return {course: reason for course, reason in reasons.items() if course not in live}


def home_courses(settings: Settings) -> Callable[[Any], dict[str, Any]]:
    """A `template_vars` callable: the courses the current user may open, and the others.

    Also says which courses' access ended (refund, dispute, cancellation) from LearnHub's
    database, each course's deadlines from `course.yaml`, and where the catalog is. A database
    problem only hides the "access ended" notes; it never breaks the page.
    """
    courses_dir = settings.courses_dir.resolve()
    catalog_url = urlparse(settings.hub.bind_url).path + "services/learnhub/"
    state: dict[str, Any] = {}

    from hub.progress import course_progress
    from hub.reviews import announcements

    def learnhub_db() -> Any:
        # One engine for the hub process, made on first use (never at import or config load).
        if "db" not in state:
            from hub.store import Database

            state["db"] = Database(settings.learnhub_db_url)
        return state["db"]

    def for_user(user: Any) -> dict[str, Any]:
        empty = {"mine": [], "others": [], "ended": [], "error": "", "catalog_url": catalog_url}
        if user is None:
            return empty
        try:
            catalog = Catalog.load(courses_dir)
        except CourseError:
            # The operator sees the details in `learnhub check`; members get a calm message.
            return {**empty, "error": "The catalog is being updated."}
        try:
            ended = ended_courses(learnhub_db(), user.name)
        except Exception:  # the home page must render even if LearnHub's database is down
            logging.getLogger("learnhub.home").exception("could not read entitlements")
            ended = {}
        groups = {group.name for group in user.groups}
        mine: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        ended_items: list[dict[str, Any]] = []
        for entry in catalog:
            course = entry.course
            role = (
                "instructor"
                if course.instructor_group in groups
                else "learner"
                if course.learner_group in groups or user.admin
                else None
            )
            item: dict[str, Any] = {
                "id": course.id,
                "title": course.title,
                "summary": course.summary,
                "role": role,
                "price": f"{course.price.amount / 100:.2f} {course.price.currency.upper()}",
                "deadlines": [
                    {"title": a.title, "due": deadline_label(a.due), "iso": a.due.isoformat()}
                    for a in course.assignments
                    if a.due is not None
                ],
                "ended": ended.get(course.id, ""),
            }
            if role:
                try:
                    item["progress"] = course_progress(learnhub_db(), course, user.name)
                    latest = announcements(learnhub_db(), course.id, limit=1)
                    item["announcement"] = latest[0] if latest else None
                except Exception:  # progress is a nicety; the page renders without it
                    logging.getLogger("learnhub.home").exception("could not read progress")
                    item["progress"] = []
                    item["announcement"] = None
                mine.append(item)
            elif course.id in ended:
                ended_items.append(item)
            else:
                others.append(item)
        return {
            "mine": mine,
            "others": others,
            "ended": ended_items,
            "error": "",
            "catalog_url": catalog_url,
        }

    return for_user
