"""Settings: layering, validation and the production guard rails."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import SettingsError
from hub.settings import load_settings, settings_from_environment

STRONG = "x" * 40


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "learnhub.yaml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    settings = load_settings(None, {})
    assert settings.mode == "demo"
    assert settings.spawner.backend == "docker"
    assert settings.hub.bind_url == "http://127.0.0.1:8000/"
    assert settings.learnhub_db_url.startswith("sqlite:///")


def test_file_values_and_env_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hub:\n  bind_url: http://0.0.0.0:9000/learn\n  allow_public_demo: true\n"
        "spawner:\n  limits:\n    memory: 2G\n",
    )
    settings = load_settings(path, {"LEARNHUB_ADMIN_TOKEN": "t0ken"})
    assert settings.hub.bind_url == "http://0.0.0.0:9000/learn/"
    assert settings.spawner.limits.memory == "2G"
    assert settings.secret("admin_token") == "t0ken"
    # Secrets never show up in a dump of the settings.
    assert "t0ken" not in settings.model_dump_json()
    assert "t0ken" not in repr(settings)


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "spawner:\n  backnd: docker\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, {})
    message = str(info.value)
    assert str(path) in message
    assert "spawner.backnd" in message
    assert "unknown key" in message


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            "spawner:\n  backend: nomad\n",
            "spawner.backend",
            "'docker', 'swarm', 'kubernetes' or 'local'",
        ),
        ("spawner:\n  limits:\n    memory: lots\n", "spawner.limits.memory", "pattern"),
        ("hub:\n  hub_port: 99999\n", "hub.hub_port", "less than or equal to 65535"),
        ("hub:\n  bind_url: localhost:8000\n", "hub.bind_url", "must look like"),
        ("hub:\n  subdomain_host: https://a.example/x\n", "hub.subdomain_host", "without a path"),
        (
            "payments:\n  plans:\n    - id: Bad Id\n      title: x\n"
            "      interval: month\n      amount: 5\n",
            "payments.plans.0.id",
            "pattern",
        ),
    ],
)
def test_bad_values(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_settings(path, {})
    message = str(info.value)
    assert str(path) in message and key in message and problem in message


def test_not_yaml_and_not_mapping(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(write(tmp_path, "hub: [unclosed\n"), {})
    with pytest.raises(SettingsError, match="top level must be a mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"), {})


def test_secrets_in_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="environment variables only"):
        load_settings(write(tmp_path, "secrets:\n  admin_token: abc\n"), {})


def test_unknown_environment_variable() -> None:
    with pytest.raises(SettingsError, match="LEARNHUB_ADMN_TOKEN"):
        load_settings(None, {"LEARNHUB_ADMN_TOKEN": "x"})


def test_learnhubs_own_other_variables_are_not_unknown() -> None:
    # `LEARNHUB_EXTRA_CA=corp.pem ./scripts/demo.sh` built the images with the CA, then
    # `learnhub demo` refused the same variable as unknown.
    load_settings(None, {"LEARNHUB_EXTRA_CA": "corp.pem", "LEARNHUB_TOKEN": "t"})


def test_missing_file_named() -> None:
    with pytest.raises(SettingsError, match=r"nope\.yaml: settings file not found"):
        settings_from_environment({"LEARNHUB_CONFIG": "/nope.yaml"}, Path("/unused"))


def test_production_refuses_demo_parts(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, "mode: production\n"), {})
    message = str(info.value)
    assert "payments.provider" in message
    assert "LEARNHUB_COOKIE_SECRET" in message
    assert "LEARNHUB_CLI_TOKEN" in message


def test_production_refuses_sqlite_for_swarm(tmp_path: Path) -> None:
    path = write(
        tmp_path, "mode: production\npayments:\n  provider: stripe\nspawner:\n  backend: swarm\n"
    )
    env = {
        "LEARNHUB_COOKIE_SECRET": STRONG,
        "LEARNHUB_CLI_TOKEN": STRONG,
        "LEARNHUB_SERVICE_TOKEN": STRONG,
        "LEARNHUB_STRIPE_SECRET_KEY": "sk_test_x",
        "LEARNHUB_STRIPE_WEBHOOK_SECRETS": "whsec_x",
    }
    with pytest.raises(SettingsError, match="SQLite cannot be shared across hosts"):
        load_settings(path, env)


def test_production_accepts_a_safe_setup(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        (
            "mode: production\npayments:\n  provider: stripe\n"
            "hub:\n  subdomain_host: https://learn.example.org\n"
            "  public_url: https://learn.example.org/learn\n"
            "database:\n  hub_url: postgresql://h/db\n  learnhub_url: postgresql+psycopg://h/db\n"
            "spawner:\n  backend: swarm\n"
        ),
    )
    env = {
        "LEARNHUB_COOKIE_SECRET": STRONG,
        "LEARNHUB_CLI_TOKEN": STRONG,
        "LEARNHUB_SERVICE_TOKEN": STRONG,
        "LEARNHUB_STRIPE_SECRET_KEY": "sk_test_x",
        "LEARNHUB_STRIPE_WEBHOOK_SECRETS": "whsec_a,whsec_b",
    }
    settings = load_settings(path, env)
    assert settings.mode == "production"
    assert settings.hub.subdomain_host == "https://learn.example.org"
    assert settings.public_url == "https://learn.example.org/learn/"
    assert (
        settings.absolute_url("/learn/services/learnhub/checkout/success")
        == "https://learn.example.org/learn/services/learnhub/checkout/success"
    )


def test_production_refuses_homes_without_a_size_limit(tmp_path: Path) -> None:
    base = "mode: production\nspawner:\n  home:\n    storage: {}\n"
    with pytest.raises(SettingsError, match=r"spawner\.home\.storage: `volume` puts no size"):
        load_settings(write(tmp_path, base.format("volume")), {})
    for limited in ("image", "volume-quota"):
        with pytest.raises(SettingsError) as info:
            load_settings(write(tmp_path, base.format(limited)), {})
        assert "spawner.home.storage" not in str(info.value)


def test_production_needs_an_https_public_url(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"hub\.public_url: set the https:// address"):
        load_settings(write(tmp_path, "mode: production\n"), {})


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "learn.example.org", "[::]"])
def test_demo_refuses_a_public_bind(tmp_path: Path, host: str) -> None:
    path = write(tmp_path, f"hub:\n  bind_url: http://{host}:8000/\n")
    with pytest.raises(SettingsError, match=r"demo mode listens on .* which is not loopback"):
        load_settings(path, {})
    allowed = write(tmp_path, f"hub:\n  bind_url: http://{host}:8000/\n  allow_public_demo: true\n")
    assert load_settings(allowed, {}).hub.allow_public_demo


@pytest.mark.parametrize(
    ("host", "public_host"),
    [
        ("127.0.0.1", "localhost"),
        ("127.0.0.2", "localhost"),
        ("localhost", "localhost"),
        ("[::1]", "localhost"),
        ("x.localhost", "x.localhost"),
    ],
)
def test_demo_on_loopback_is_fine(tmp_path: Path, host: str, public_host: str) -> None:
    settings = load_settings(write(tmp_path, f"hub:\n  bind_url: http://{host}:8000/\n"), {})
    # An address has no subdomains: the demo is used at `localhost`, its servers at
    # `<user>.localhost` (browsers resolve both to loopback).
    assert settings.public_url == f"http://{public_host}:8000/"
    assert settings.subdomain_host == f"http://{public_host}:8000"


def test_subdomains_by_default_and_off_on_request(tmp_path: Path) -> None:
    default = load_settings(None, {})
    assert default.subdomain_host == "http://localhost:8000"
    assert default.public_url == "http://localhost:8000/"
    based = load_settings(write(tmp_path, "hub:\n  bind_url: http://127.0.0.1:9000/x/\n"), {})
    assert based.subdomain_host == "http://localhost:9000"
    assert based.public_url == "http://localhost:9000/x/"
    off = load_settings(write(tmp_path, "hub:\n  subdomain_host: ''\n"), {})
    assert off.subdomain_host == ""
    assert off.public_url == "http://127.0.0.1:8000/"


PRODUCTION_ENV = {
    "LEARNHUB_COOKIE_SECRET": STRONG,
    "LEARNHUB_CLI_TOKEN": STRONG,
    "LEARNHUB_SERVICE_TOKEN": STRONG,
    "LEARNHUB_STRIPE_SECRET_KEY": "sk_test_x",
    "LEARNHUB_STRIPE_WEBHOOK_SECRETS": "whsec_x",
}


@pytest.mark.parametrize(
    ("hub", "message"),
    [
        ("", r"hub\.subdomain_host: set the https:// host whose subdomains"),
        ("  subdomain_host: auto\n", r"hub\.subdomain_host: set the https:// host"),
        ("  subdomain_host: ''\n", r"hub\.subdomain_host: set the https:// host"),
        ("  subdomain_host: http://learn.example.org\n", r"must use https://"),
        (
            "  subdomain_host: https://servers.example.org\n",
            r"hub\.public_url: .* is not on hub\.subdomain_host",
        ),
    ],
)
def test_production_needs_one_https_origin_per_server(
    tmp_path: Path, hub: str, message: str
) -> None:
    path = write(
        tmp_path,
        "mode: production\npayments:\n  provider: stripe\n"
        f"hub:\n  public_url: https://learn.example.org/\n{hub}",
    )
    with pytest.raises(SettingsError, match=message):
        load_settings(path, PRODUCTION_ENV)


def test_short_production_secret(tmp_path: Path) -> None:
    env = {
        "LEARNHUB_COOKIE_SECRET": "short",
        "LEARNHUB_CLI_TOKEN": STRONG,
        "LEARNHUB_SERVICE_TOKEN": STRONG,
    }
    with pytest.raises(SettingsError, match="LEARNHUB_COOKIE_SECRET: must be at least 32"):
        load_settings(write(tmp_path, "mode: production\n"), env)


def test_https_bind_url_is_refused_with_the_fix(tmp_path: Path) -> None:
    # The documented production config once said `bind_url: https://...` with no certificate:
    # JupyterHub then serves plain HTTP on that port and `hub_api_url` speaks https to it.
    path = write(
        tmp_path,
        "hub:\n  bind_url: https://learn.example.org/\n  allow_public_demo: true\n",
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    message = str(caught.value)
    assert "hub.bind_url" in message and "plain http" in message
    assert "learnhub edge config" in message and "hub.public_url" in message


def test_edge_settings_are_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "edge:\n  certificate: /etc/ssl/learn.pem\n  cerificate_key: x\n")
    with pytest.raises(SettingsError, match=r"edge\.cerificate_key.*unknown key"):
        load_settings(path, {})
    path = write(tmp_path, "edge:\n  http_port: 0\n")
    with pytest.raises(SettingsError, match=r"edge\.http_port"):
        load_settings(path, {})
    path = write(tmp_path, "edge:\n  certificate: relative.pem\n")
    with pytest.raises(SettingsError, match=r"edge\.certificate.*absolute"):
        load_settings(path, {})
