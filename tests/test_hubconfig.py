"""Applying settings to JupyterHub's config: pure, idempotent, and complete."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from traitlets.config import Config

from hub import settings_docs
from hub.addresses import hub_api_url
from hub.courses import Catalog
from hub.errors import SettingsError
from hub.hubconfig import apply_all
from hub.settings import load_settings
from hub.subdomains import learnhub_subdomain_hook

ROOT = Path(__file__).resolve().parent.parent


def spawner_config():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("spawner_config", ROOT / "spawner_config.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def configured(env: dict[str, str], yaml_text: str = "", tmp: Path | None = None) -> Config:
    path = None
    if yaml_text and tmp:
        path = tmp / "learnhub.yaml"
        path.write_text(yaml_text)
    settings = load_settings(path, env)
    c = Config()
    apply_all(c, settings, Catalog.load(ROOT / "courses"))
    spawner_config().apply_spawner(c, settings)
    return c


def test_applying_twice_gives_the_same_config(tmp_path: Path) -> None:
    env = {"LEARNHUB_ADMIN_TOKEN": "a" * 40}
    text = f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\n"
    first = configured(env, text, tmp_path)
    settings = load_settings(tmp_path / "learnhub.yaml", env)
    apply_all(first, settings, Catalog.load(ROOT / "courses"))
    second = configured(env, text, tmp_path)
    assert first.JupyterHub.services == second.JupyterHub.services
    assert first.JupyterHub.load_groups == second.JupyterHub.load_groups


def test_services_roles_and_groups(tmp_path: Path) -> None:
    text = f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\n"
    c = configured(
        {"LEARNHUB_ADMIN_TOKEN": "t" * 40, "LEARNHUB_CLI_TOKEN": "c" * 40}, text, tmp_path
    )
    services = {s["name"]: s for s in c.JupyterHub.services}
    # The idle culler runs as a hub-managed service with only the scopes it needs.
    assert "jupyterhub_idle_culler" in services["idle-culler"]["command"]
    assert services["learnhub-admin"]["api_token"] == "t" * 40
    # A slow start on a loaded host is waited for, not fatal after JupyterHub's 30 s.
    assert services["learnhub"]["timeout"] >= 120
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["idle-culler"]["scopes"] == [
        "list:users",
        "read:users:activity",
        "read:servers",
        "delete:servers",
    ]
    assert roles["admin"]["services"] == ["learnhub-admin"]
    # The CLI's token has its own narrow role: never `admin`, never `admin:users`.
    assert services["learnhub-cli"]["api_token"] == "c" * 40
    assert roles["learnhub-cli"]["services"] == ["learnhub-cli"]
    assert "admin:users" not in roles["learnhub-cli"]["scopes"]
    assert "custom:learnhub:operate" in roles["learnhub-cli"]["scopes"]
    groups = c.JupyterHub.load_groups
    assert groups["instructors-python-foundations"]["users"] == ["demo-instructor"]
    assert groups["course-python-foundations"]["users"] == ["demo-learner"]
    assert groups["course-algorithms-in-python"]["users"] == []
    assert c.JupyterHub.spawner_class == "hub.spawner.LearnHubDockerSpawner"
    assert c.DockerSpawner.remove is True
    assert c.JupyterHub.cleanup_servers is False


def test_no_admin_service_without_token(tmp_path: Path) -> None:
    c = configured({}, f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\n", tmp_path)
    assert "learnhub-admin" not in {s["name"] for s in c.JupyterHub.services}


def test_production_oauth_and_subdomains(tmp_path: Path) -> None:
    strong = "s" * 40
    env = {
        "LEARNHUB_COOKIE_SECRET": strong,
        "LEARNHUB_CLI_TOKEN": strong,
        "LEARNHUB_SERVICE_TOKEN": strong,
        "LEARNHUB_STRIPE_SECRET_KEY": "sk_test_1",
        "LEARNHUB_STRIPE_WEBHOOK_SECRETS": "whsec_1",
        "LEARNHUB_OAUTH_CLIENT_SECRET": "gh-secret",
    }
    text = (
        f"mode: production\npayments:\n  provider: stripe\nhub:\n  data_dir: {tmp_path}\n"
        "  hub_ip: 127.0.0.1\n  subdomain_host: https://learn.example.org\n"
        "  public_url: https://learn.example.org/\n"
        "auth:\n  kind: github\n  github:\n    client_id: abc\n"
        "    allowed_organizations: [learnhub-members]\n"
    )
    c = configured(env, text, tmp_path)
    assert c.JupyterHub.authenticator_class == "hub.oauth.LearnHubGitHubOAuthenticator"
    assert c.GitHubOAuthenticator.client_secret == "gh-secret"
    assert c.GitHubOAuthenticator.allowed_organizations == {"learnhub-members"}
    assert c.JupyterHub.subdomain_host == "https://learn.example.org"
    assert c.JupyterHub.subdomain_hook is learnhub_subdomain_hook
    # Production never seeds demo accounts.
    assert "seed_users" not in c.LearnHubNativeAuthenticator


def test_swarm_backend(tmp_path: Path) -> None:
    text = f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\nspawner:\n  backend: swarm\n"
    c = configured({}, text, tmp_path)
    assert c.JupyterHub.spawner_class == "hub.spawner.LearnHubSwarmSpawner"
    assert c.LearnHubSwarmSpawner.name_prefix == "learnhub"
    # Materials come in the course's image; servers are reached on a host-mode port.
    assert c.LearnHubSwarmSpawner.swarm_course_image == "learnhub/course-{course}:latest"
    assert c.LearnHubSwarmSpawner.home_affinity is True
    assert c.SwarmSpawner.use_internal_ip is False
    assert c.SwarmSpawner.network_name == ""


def test_warning_log_level_is_spelled_for_traitlets(tmp_path: Path) -> None:
    text = f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\n  log_level: WARNING\n"
    assert configured({}, text, tmp_path).JupyterHub.log_level == "WARN"


def test_hub_api_url_through_the_proxy() -> None:
    settings = load_settings(None, {})
    assert hub_api_url(settings) == "http://127.0.0.1:8000/hub/api"


def test_settings_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "reference" / "settings.md").read_text()
    assert committed == settings_docs.render(), "run: python -m hub.settings_docs"


def test_kubernetes_backend(tmp_path: Path) -> None:
    text = f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\nspawner:\n  backend: kubernetes\n"
    c = configured({}, text, tmp_path)
    spawner_class = c.JupyterHub.spawner_class
    assert spawner_class.__name__ == "LearnHubKubeSpawner"
    assert [k.__name__ for k in spawner_class.__mro__[:3]] == [
        "LearnHubKubeSpawner",
        "CourseSpawnerMixin",
        "KubeSpawner",
    ]
    assert c.KubeSpawner.namespace == "learnhub"


def test_jupyterhub_sqlite_runs_in_wal_mode_and_nothing_else_changes(tmp_path: Path) -> None:
    import sqlalchemy as sa

    text = f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\n"
    c = configured({"LEARNHUB_ADMIN_TOKEN": "a" * 40}, text, tmp_path)
    # The Hub makes its engine from db_url; any engine on that file gets the pragmas.
    hub_engine = sa.create_engine(c.JupyterHub.db_url)
    other_engine = sa.create_engine(f"sqlite:///{tmp_path / 'other.sqlite'}")
    try:
        with hub_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        with other_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        hub_engine.dispose()
        other_engine.dispose()


def test_demo_servers_have_their_own_origins(tmp_path: Path) -> None:
    c = configured({}, f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\n", tmp_path)
    assert c.JupyterHub.subdomain_host == "http://localhost:8000"
    assert c.JupyterHub.subdomain_hook is learnhub_subdomain_hook
    off = configured(
        {}, f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\n  subdomain_host: ''\n", tmp_path
    )
    assert "subdomain_host" not in off.JupyterHub


def test_subdomain_hook_keeps_the_service_on_the_hubs_host() -> None:
    assert learnhub_subdomain_hook("learnhub", "localhost", "service") == "localhost"
    assert learnhub_subdomain_hook("ada", "localhost", "user") == "ada.localhost"
    # Names that are not DNS labels still get a valid, distinct subdomain (JupyterHub's idna).
    odd = learnhub_subdomain_hook("Ada Lovelace@x", "learn.example.org", "user")
    assert odd.endswith(".learn.example.org") and " " not in odd and "@" not in odd


def test_kubernetes_hub_is_reached_through_its_service(tmp_path: Path) -> None:
    """Issue 16: with `hub_ip: auto` the Hub bound 127.0.0.1 and told pods to connect there,
    which is each pod's own loopback: no Hub API, no exchange. As in Zero to JupyterHub, the Hub
    binds its pod's addresses and pods (and the proxy's pod) connect to its Service."""
    text = (
        f"hub:\n  data_dir: {tmp_path}\n  hub_port: 8081\n  service_port: 10101\n"
        "spawner:\n  backend: kubernetes\n  kubernetes_hub_service: hub\n"
    )
    c = configured({}, text, tmp_path)
    assert c.JupyterHub.hub_bind_url == "http://0.0.0.0:8081"
    assert c.JupyterHub.hub_connect_url == "http://hub:8081"
    assert c.LearnHubKubeSpawner.exchange_url == "http://hub:10101/services/learnhub/exchange/"
    (service,) = [s for s in c.JupyterHub.services if s["name"] == "learnhub"]
    assert service["url"] == "http://hub:10101"
    assert "--container-address=0.0.0.0" in service["command"]


def test_kubernetes_hub_service_name_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "learnhub.yaml"
    path.write_text("spawner:\n  backend: kubernetes\n  kubernetes_hub_service: Hub_Service\n")
    with pytest.raises(SettingsError, match="kubernetes_hub_service"):
        load_settings(path, {})


def test_other_backends_keep_connecting_where_the_hub_binds(tmp_path: Path) -> None:
    text = f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 172.31.0.1\n"
    c = configured({}, text, tmp_path)
    assert c.JupyterHub.hub_bind_url == "http://172.31.0.1:8081"
    assert "hub_connect_url" not in c.JupyterHub
    assert c.LearnHubDockerSpawner.exchange_url.startswith("http://172.31.0.1:10101/")


def test_only_native_accounts_get_the_change_password_link(tmp_path: Path) -> None:
    """The navigation links /hub/change-password for LearnHub's own accounts; GitHub and other
    OAuth sign-ins have no LearnHub password (hub/templates/site/nav.html)."""
    from jinja2 import Environment, FileSystemLoader

    hub = f"hub:\n  data_dir: {tmp_path}\n  hub_ip: 127.0.0.1\n"
    github = "auth:\n  kind: github\n  github:\n    client_id: abc\n"
    native, oauth = (
        configured({}, text, tmp_path).JupyterHub.template_vars["learnhub_native_auth"]
        for text in (hub, hub + github)
    )
    assert (native, oauth) == (True, False)
    nav = Environment(loader=FileSystemLoader(ROOT / "hub" / "templates"), autoescape=True)
    macro = nav.get_template("site/nav.html").module.navbar  # type: ignore[attr-defined]
    site = {"user_name": "ada", "extra": [], "catalog_url": "/", "email_url": "/email"}
    for password_url, shown in (("/hub/change-password", True), ("", False)):
        html = str(macro(str, "en", [], str, {**site, "password_url": password_url}))
        assert ('id="learnhub-nav-password"' in html) is shown
