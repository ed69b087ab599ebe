"""LearnHub settings: one typed, validated object built from a YAML file plus environment.

Layering, lowest to highest:

1. the defaults declared on the models below (the embedded single-machine demo);
2. the YAML settings file (``learnhub.yaml`` or the path given with ``--config`` /
   ``LEARNHUB_CONFIG``);
3. secrets from ``LEARNHUB_*`` environment variables (never from the file, so the file can be
   committed and shared).

Unknown keys, unknown ``LEARNHUB_*`` variables and bad values stop the start with one
:class:`SettingsError` that names the file, the key and the problem. Nothing here reads the
environment at import time: callers pass the mapping to :func:`load_settings`.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from hub.errors import SettingsError, describe_validation_error

#: Memory sizes as Docker and KubeSpawner understand them: a number with an optional K/M/G/T suffix.
MEMORY_PATTERN = r"^[1-9][0-9]*(\.[0-9]+)?[KMGT]?$"

#: Which process loads the settings: the Hub and the CLI hold the Hub's secrets; the LearnHub
#: service is given only its own (payments), and the grading worker none (its Hub token comes
#: from JupyterHub), so the production guard does not ask them for more.
Process = Literal["hub", "service", "worker"]

#: Secret values that must never reach production.
DEMO_SECRET_MARKER = "demo-insecure"  # noqa: S105 - a marker, not a secret


class _Model(BaseModel):
    """Base for every settings section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSettings(_Model):
    """Where the Hub and its proxy listen."""

    bind_url: str = Field(
        "http://127.0.0.1:8000/",
        description=(
            "Where configurable-http-proxy listens, plain http, with the base URL path, e.g. "
            "http://127.0.0.1:8000/learn/. In production it sits behind the TLS edge "
            "(`learnhub edge config`) on loopback; people use `public_url`. https is refused: "
            "JupyterHub would serve plain http there without a certificate."
        ),
    )
    public_url: str = Field(
        "",
        description=(
            "The address people use, e.g. https://learn.example.org/ (with the base URL path). "
            "Every absolute link LearnHub makes (Stripe's success, cancel and return URLs) is "
            "built from it, never from a request's Host header. Empty: `bind_url`. Required, "
            "with https, in production."
        ),
    )
    allow_public_demo: bool = Field(
        False,
        description=(
            "Let demo mode listen on an address other than loopback. The demo has a published "
            "admin password and a Pay button that charges nothing: leave this off unless the "
            "machine is private."
        ),
    )
    hub_ip: str = Field(
        "auto",
        description=(
            "Address the Hub API binds to and containers connect to. `auto` uses the gateway of "
            "the Docker network, so course containers can reach the Hub and nothing else can. "
            "On Swarm it must be the hub host's address that the course nodes reach (not `auto` "
            "or loopback): each node's firewall lets only this address open connections to a "
            "course server."
        ),
    )
    hub_port: int = Field(8081, ge=1, le=65535, description="Port of the Hub API.")
    proxy_api_port: int = Field(8001, ge=1, le=65535, description="Port of the proxy's REST API.")
    service_port: int = Field(
        10101,
        ge=1,
        le=65535,
        description="Port of the LearnHub service (catalog, checkout, webhook), behind the proxy.",
    )
    webhook_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description=(
            "Port, on loopback, of the webhook intake: a process of its own, started by the "
            "LearnHub service, that verifies and records Stripe's deliveries while the service "
            "processes them, so the two use two cores. The edge (`learnhub edge config`) passes "
            "Stripe's webhook path to it. Empty: the service takes webhooks itself (the demo; "
            "enough below about 150 events/s, see docs/benchmarks.md)."
        ),
    )
    subdomain_host: str = Field(
        "auto",
        description=(
            "Serve each user's servers on their own subdomain of this host, so every server is "
            "its own origin and a learner's JavaScript cannot act as whoever opens their link "
            "(e.g. `https://learn.example.org`: servers at `https://<user>.learn.example.org`; "
            "needs wildcard DNS and a wildcard certificate). `auto`: the scheme, host and port "
            "of the public URL, with a loopback address written `localhost` (browsers resolve "
            "`*.localhost` to loopback, so the demo has subdomains too). Empty: no subdomains, "
            "every server shares the Hub's origin (tests only; refused in production, which "
            "needs an explicit https value)."
        ),
    )
    data_dir: Path = Field(
        Path("var"),
        description=(
            "Folder for databases, cookie secret and state. The LearnHub service's part (its "
            "database and the exchange store) is the `service/` folder in it, owned by "
            "`service_user`; the rest is root's."
        ),
    )
    service_user: Annotated[str, Field(pattern=r"^([a-z_][a-z0-9_-]{0,31})?$")] = Field(
        "learnhub",
        description=(
            "Unprivileged system user the LearnHub service and the idle culler run as when the "
            "Hub runs as root (scripts/setup.sh creates `learnhub`). It owns `data_dir/service` "
            "and may read the gradebooks, nothing else of the data folder. Empty: they run as "
            "the Hub's user, like everything when the Hub is not root."
        ),
    )
    proxy_user: Annotated[str, Field(pattern=r"^([a-z_][a-z0-9_-]{0,31})?$")] = Field(
        "learnhub-proxy",
        description=(
            "Unprivileged system user configurable-http-proxy runs as when the Hub runs as root "
            "(scripts/setup.sh creates `learnhub-proxy`). Not `service_user`: the service could "
            "then read the proxy's API token and reroute the Hub. Empty: the proxy runs as the "
            "Hub's user. Either way it gets only its own token, none of the Hub's secrets."
        ),
    )
    admin_users: list[str] = Field(
        default_factory=list, description="Hub usernames that are JupyterHub admins."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Hub log level."
    )

    @field_validator("bind_url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        if value.startswith("https://"):
            # JupyterHub serves plain http on an https bind_url unless given ssl_cert/ssl_key,
            # and LearnHub's own clients (hub_api_url) would then speak TLS to that port.
            raise ValueError(
                "the proxy listens on plain http; TLS is the edge's job. Set bind_url to "
                "http://127.0.0.1:8000/ (with your base URL path), put the https address in "
                "hub.public_url, and put the TLS edge in front (`learnhub edge config`, "
                "docs/how-to/production.md)"
            )
        if not re.match(r"^http://[^/]+(/.*)?$", value):
            raise ValueError("must look like http://HOST:PORT/ or http://HOST:PORT/PATH/")
        return value if value.endswith("/") else value + "/"

    @field_validator("public_url")
    @classmethod
    def _public_url_shape(cls, value: str) -> str:
        if not value:
            return value
        if not re.match(r"^https?://[^/?#]+(/[^?#]*)?$", value):
            raise ValueError("must look like https://HOST/ or https://HOST/PATH/")
        return value if value.endswith("/") else value + "/"

    @field_validator("subdomain_host")
    @classmethod
    def _subdomain_has_scheme(cls, value: str) -> str:
        if value and value != "auto" and not re.match(r"^https?://[^/]+$", value):
            raise ValueError(
                "must be a scheme and host without a path, e.g. https://learn.example.org"
            )
        return value

    @model_validator(mode="after")
    def _proxy_has_its_own_user(self) -> HubSettings:
        if self.proxy_user and self.proxy_user == self.service_user:
            raise ValueError(
                "proxy_user must not be service_user: the service could read the proxy's API "
                "token and reroute the Hub; give the proxy its own user (learnhub-proxy)"
            )
        return self


class EdgeSettings(_Model):
    """The TLS edge (nginx) in front of the proxy, written by `learnhub edge config`.

    It serves `hub.public_url` (its host and port) and the user subdomains of
    `hub.subdomain_host` with the operator's certificate, redirects http to https and proxies
    everything, websockets included, to `hub.bind_url`."""

    certificate: Path | None = Field(
        None,
        description=(
            "PEM certificate chain (server certificate first, then intermediates) valid for the "
            "public host *and* `*.<host>` (a wildcard, for the user subdomains). Absolute path."
        ),
    )
    certificate_key: Path | None = Field(
        None, description="PEM private key of `certificate`. Absolute path, readable by root only."
    )
    listen_address: Annotated[str, Field(pattern=r"^(\*|[0-9.]+|\[[0-9a-fA-F:]+\])$")] = Field(
        "*",
        description=(
            "Address the edge listens on: `*` (every IPv4 address), an IPv4 address, or an "
            "IPv6 address in brackets. The https port is the port of `hub.public_url` (443 "
            "without one)."
        ),
    )
    http_port: int = Field(
        80, ge=1, le=65535, description="Port of the plain-http listener that only redirects."
    )
    cache_dir: Path = Field(
        Path("/var/cache/nginx/learnhub"),
        description="Where the edge keeps cached anonymous catalog pages. Absolute path.",
    )
    cache_seconds: int = Field(
        1,
        ge=1,
        le=3600,
        description=(
            "Seconds an anonymous catalog page is served from the edge before the edge asks "
            "the service again with its ETag (a 304 costs the service no rendering). Requests "
            "with cookies or an Authorization header are never cached."
        ),
    )
    cache_max_size: Annotated[str, Field(pattern=r"^[1-9][0-9]*[kmg]?$")] = Field(
        "256m", description="Largest size of the page cache on disk (nginx size: 256m, 1g)."
    )
    upload_limit: Annotated[str, Field(pattern=r"^[1-9][0-9]*[kmg]?$")] = Field(
        "100m", description="Largest request body (notebook uploads), nginx size."
    )

    @field_validator("certificate", "certificate_key", "cache_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError(f"{value}: must be an absolute path (nginx reads it from /)")
        return value

    @model_validator(mode="after")
    def _certificate_and_key_together(self) -> EdgeSettings:
        if (self.certificate is None) != (self.certificate_key is None):
            raise ValueError("certificate and certificate_key go together: set both")
        return self


class GitHubAuthSettings(_Model):
    """GitHub OAuth (oauthenticator.GitHubOAuthenticator). The client secret comes from
    ``LEARNHUB_OAUTH_CLIENT_SECRET``."""

    client_id: str = Field("", description="OAuth app client id.")
    callback_url: str = Field("", description="e.g. https://learn.example.org/hub/oauth_callback")
    allowed_organizations: list[str] = Field(
        default_factory=list,
        description="Only members of these GitHub organizations; empty: anyone.",
    )


class GenericOAuthSettings(_Model):
    """Any OpenID Connect / OAuth2 provider (oauthenticator.GenericOAuthenticator)."""

    client_id: str = Field("", description="OAuth client id.")
    callback_url: str = Field("", description="e.g. https://learn.example.org/hub/oauth_callback")
    authorize_url: str = Field("", description="The provider's authorization endpoint.")
    token_url: str = Field("", description="The provider's token endpoint.")
    userdata_url: str = Field("", description="The provider's userinfo endpoint.")
    username_claim: str = Field(
        "preferred_username", description="Claim of the user info that becomes the hub username."
    )
    scope: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "email"], description="Scopes requested."
    )


class LockoutSettings(_Model):
    """Native auth: back-off after failed logins, per username and per client address."""

    name_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description=(
            "Failed logins for one username before it must wait (every further failure doubles "
            "the wait). The correct password is refused too while it waits."
        ),
    )
    address_failures: int = Field(
        30,
        ge=1,
        le=100_000,
        description=(
            "Failed logins from one client address, over all usernames, before that address "
            "must wait. Higher than `name_failures`: many people can share one address (NAT)."
        ),
    )
    seconds: int = Field(
        60, ge=1, le=86_400, description="First wait, in seconds, once a limit is reached."
    )
    max_seconds: int = Field(
        900,
        ge=1,
        le=86_400,
        description=("Longest wait, in seconds; failures further apart than this are forgotten."),
    )

    @model_validator(mode="after")
    def _max_is_not_below_first(self) -> LockoutSettings:
        if self.max_seconds < self.seconds:
            raise ValueError("max_seconds must be at least seconds")
        return self


class AuthSettings(_Model):
    """How people sign in."""

    kind: Literal["native", "github", "generic"] = Field(
        "native",
        description=(
            "`native`: local sign-up with passwords (jupyterhub-nativeauthenticator); `github` and "
            "`generic`: OAuth through oauthenticator."
        ),
    )
    open_signup: bool = Field(
        True, description="Native auth: new accounts may log in without an admin approving them."
    )
    minimum_password_length: int = Field(
        8,
        ge=8,
        le=72,
        description=(
            "Native auth: shortest password accepted at sign-up. Passwords are at most 72 bytes "
            "(bcrypt's limit); longer ones are refused with a message."
        ),
    )
    lockout: LockoutSettings = Field(default_factory=LockoutSettings)
    github: GitHubAuthSettings = Field(default_factory=GitHubAuthSettings)
    generic: GenericOAuthSettings = Field(default_factory=GenericOAuthSettings)


class ResourceLimits(_Model):
    """Container resource limits; `course.yaml` may override them per course."""

    memory: Annotated[str, Field(pattern=MEMORY_PATTERN)] = Field(
        "1G", description="Memory limit, e.g. 512M, 1G."
    )
    cpu: float = Field(1.0, gt=0, le=64, description="CPU cores.")


class HomeSettings(_Model):
    """The learner's home in a course server (`/home/jovyan`), one per learner and course.

    Docker backend only: on Swarm the volume driver, on Kubernetes the storage class of the
    PVC decides the size."""

    storage: Literal["image", "volume", "volume-quota"] = Field(
        "image",
        description=(
            "`image` (default): an ext4 image file per home under `<data_dir>/homes/`, "
            "loop-mounted by the Hub (which must run as root) and bind-mounted as the home; "
            "writing past `size` fails with ENOSPC and never fills the Hub's disk. An existing "
            "named volume is copied into the image on first use. `volume`: a named Docker "
            "volume with no size limit (refused in production). `volume-quota`: a named volume "
            "created with the local driver's `size` option, for hosts whose Docker data root is "
            "on xfs mounted with `pquota` (volumes that already exist keep having no limit)."
        ),
    )
    size: Annotated[str, Field(pattern=MEMORY_PATTERN)] = Field(
        "2G",
        description=(
            "Size of each home with `image` or `volume-quota`, e.g. 500M, 2G. Images are sparse: "
            "a home takes the disk space its files use, so watch the data disk's free space. "
            "Raising it grows existing images at their next start; lowering it leaves them."
        ),
    )


#: A Kubernetes Service name (an RFC 1035 label), optionally with its namespace and domain.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
KUBERNETES_SERVICE_PATTERN = rf"^[a-z]([-a-z0-9]{{0,61}}[a-z0-9])?(\.{_DNS_LABEL})*$"


class SwarmSettings(_Model):
    """Course servers as Docker Swarm services (`spawner.backend: swarm`); see
    docs/how-to/scale.md#docker-swarm."""

    course_image: str = Field(
        "learnhub/course-{course}:latest",
        description=(
            "Image of a course's servers, `{course}` replaced by the course id: the course image "
            "with the course's materials baked in at /srv/learnhub/materials (`python -m "
            "hub.swarm images`), since a bind mount of the hub host's folder does not follow a "
            "server to another node. Push it to a registry every node can pull from."
        ),
    )
    constraints: list[str] = Field(
        default_factory=list,
        description=(
            "Swarm placement constraints of every course server, e.g. "
            "`node.labels.learnhub.courses==true` to keep them off the managers."
        ),
    )
    home_affinity: bool = Field(
        True,
        description=(
            "Pin each learner's course server to the node where its home volume was created "
            "(the node id is kept in the Hub's database), so the local volume driver is enough. "
            "Turn it off only with a volume driver that every node shares."
        ),
    )
    volume_driver: str = Field(
        "",
        description="Volume driver of the homes (empty: `local`, one volume per node).",
    )


class SpawnerSettings(_Model):
    """Which engine runs the course containers and how."""

    backend: Literal["docker", "swarm", "kubernetes", "local"] = Field(
        "docker",
        description=(
            "`docker`: DockerSpawner on the local engine (default); `swarm`: SwarmSpawner on a "
            "Docker Swarm; `kubernetes`: KubeSpawner; `local`: processes on this machine, for "
            "tests only."
        ),
    )
    image: str = Field("learnhub/singleuser:latest", description="Default course image.")
    name_prefix: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,19}$")] = Field(
        "learnhub", description="Prefix of every container and volume LearnHub creates."
    )
    network: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,50}$")] = Field(
        "learnhub",
        description=(
            "Docker network the course containers join. LearnHub creates it (`learnhub network "
            "apply`, as root) as an internal network without inter-container traffic, where "
            "containers reach only the Hub API and the exchange, plus `<network>-internet` for "
            "courses whose course.yaml allows the internet (private and link-local addresses "
            "stay blocked). Docker's own `bridge` is not isolated: refused in production. With "
            "`backend: swarm` the same two names are Swarm-scoped networks, made on a manager by "
            "`learnhub network apply` and walled off on every course node by `learnhub network "
            "apply --swarm-node` (docs/how-to/scale.md)."
        ),
    )
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    home: HomeSettings = Field(default_factory=HomeSettings)
    start_timeout: int = Field(
        120, ge=5, le=3600, description="Seconds a server may take to start."
    )
    idle_timeout: int = Field(
        3600, ge=0, description="Stop servers idle this many seconds (0 disables the culler)."
    )
    swarm: SwarmSettings = Field(default_factory=SwarmSettings)
    kubernetes_namespace: str = Field(
        "learnhub", description="Namespace of the course pods with `backend: kubernetes`."
    )
    kubernetes_hub_service: Annotated[str, Field(pattern=KUBERNETES_SERVICE_PATTERN)] = Field(
        "hub",
        description=(
            "With `backend: kubernetes`: the Kubernetes Service in front of the Hub's pod (Zero "
            "to JupyterHub names it `hub`), a DNS name. Course pods and the proxy's pod reach the "
            "Hub API and the exchange through it; the Hub binds all addresses of its own pod "
            "(with `hub.hub_ip: auto`), because 127.0.0.1 there is unreachable from other pods."
        ),
    )


class SandboxSettings(_Model):
    """Limits of the throwaway containers that run submissions for autograding. `course.yaml`
    may override each of them per course (`grading.sandbox`). Where they run follows
    `spawner.backend`: with `swarm`, each sandbox is a one-shot Swarm service on the cluster
    (the course's `spawner.swarm.course_image`, placed by `spawner.swarm.constraints`) with the
    same limits, see docs/how-to/scale.md#grading-sandboxes-on-swarm; otherwise a container on
    the hub host's Docker engine."""

    memory: Annotated[str, Field(pattern=MEMORY_PATTERN)] | None = Field(
        None,
        description=(
            "Memory limit of one sandbox (swap disabled), e.g. 512M, 1G. Empty: the course "
            "server's own memory limit, so code that runs for the learner also runs when graded."
        ),
    )
    cpus: float = Field(1.0, gt=0, le=64, description="CPU cores one sandbox may use.")
    pids: int = Field(
        128, ge=16, le=4096, description="Processes and threads one sandbox may start."
    )
    cell_timeout: int = Field(
        30, ge=1, le=3600, description="Seconds one cell may run before it is marked a timeout."
    )
    notebook_timeout: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="Seconds a whole notebook may run in its sandbox, kernel start included.",
    )
    parallel: int = Field(
        0,
        ge=0,
        le=256,
        description=(
            "Submissions graded at once. 0: two per CPU core (a sandbox leaves its core idle "
            "while Docker creates and removes it); `learnhub grader autograde --parallel` "
            "overrides it for one run."
        ),
    )


class GradingWorkerSettings(_Model):
    """The grading worker: runs the jobs instructors queue from their dashboard."""

    enabled: bool = Field(
        True,
        description=(
            "Run `learnhub grader worker` beside the Hub (a managed service, as the Hub's user: "
            "root, for Docker), so instructors can release, collect, grade and export from "
            "their dashboard. Off: only the operator's `learnhub grader` grades."
        ),
    )
    poll_seconds: float = Field(
        1.0, gt=0, le=60, description="How often an idle worker looks for a queued job."
    )


class GradingSettings(_Model):
    """Autograding."""

    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    worker: GradingWorkerSettings = Field(default_factory=GradingWorkerSettings)


class PlanSettings(_Model):
    """A membership plan: a subscription that grants all courses or a set of them."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    title: str
    interval: Literal["month", "year"]
    amount: int = Field(gt=0, description="Price per interval in minor units (cents).")
    currency: Annotated[str, Field(pattern=r"^[a-z]{3}$")] = "usd"
    courses: list[str] | Literal["all"] = "all"
    stripe_price_id: str = ""


class PaymentSettings(_Model):
    """How learners pay."""

    provider: Literal["demo", "stripe"] = Field(
        "demo",
        description=(
            "`demo`: an offline checkout that emits genuinely signed Stripe-format events into the "
            "same webhook (refused in production); `stripe`: Stripe Checkout."
        ),
    )
    stripe_api_base: str = Field(
        "",
        description=(
            "Another address for Stripe's API (stripe-mock, or a test stand-in); empty: Stripe "
            "itself. Production accepts only a loopback address (a rehearsal)."
        ),
    )
    plans: list[PlanSettings] = Field(
        default_factory=list,
        description="Membership plans (id, title, interval month/year, amount, currency, courses).",
    )
    container_hour_cost: int = Field(
        0,
        ge=0,
        description=(
            "What one course server costs per hour, in minor units of the main currency (for the "
            "operator dashboard's cost C = container-hours x this). 0: not configured."
        ),
    )
    grace_period_days: int = Field(
        3, ge=0, le=60, description="Days a membership keeps access after a failed payment."
    )
    course_price_ids: dict[str, str] = Field(
        default_factory=dict,
        description="Stripe price id per course id (else `learnhub stripe sync` creates them).",
    )


class ExchangeSettings(_Model):
    """The nbgrader exchange served by the LearnHub service."""

    max_submission_mib: int = Field(
        20, ge=1, le=1024, description="Largest accepted upload (the `.tar.gz` archive), in MiB."
    )
    max_entries: int = Field(
        2000,
        ge=1,
        le=100_000,
        description=(
            "Most entries in one upload, counting files, folders and everything else alike "
            "(each costs an inode and unpacking time, whatever its size)."
        ),
    )
    max_unpacked_mib: int = Field(
        100,
        ge=1,
        le=10_240,
        description="Most bytes one upload may unpack to (file contents and header data), in MiB.",
    )
    max_file_mib: int = Field(
        50, ge=1, le=10_240, description="Largest single file in an upload, in MiB."
    )
    max_kept_submissions: int = Field(
        50,
        ge=1,
        le=10_000,
        description=(
            "Submissions kept per learner and assignment; past it a submission is refused (422) "
            "and the learner is told to ask the course's instructors."
        ),
    )
    max_learner_assignment_mib: int = Field(
        500,
        ge=1,
        le=1_048_576,
        description="Unpacked MiB kept per learner and assignment, all submissions together.",
    )
    max_course_mib: int = Field(
        20_480,
        ge=1,
        le=104_857_600,
        description=(
            "Unpacked MiB kept per course: releases and every learner's submissions together. "
            "Keep the sum over all courses below the free space of the data disk."
        ),
    )
    upload_workers: int = Field(
        2,
        ge=1,
        le=32,
        description=(
            "Threads that unpack and store uploads, apart from the service's other work (pages, "
            "webhooks), so a burst of uploads queues instead of slowing everything."
        ),
    )

    @model_validator(mode="after")
    def _limits_nest(self) -> ExchangeSettings:
        # A smaller outer limit would make the inner one unreachable, which is a typo, not a plan.
        chain = ("max_file_mib", "max_unpacked_mib", "max_learner_assignment_mib", "max_course_mib")
        for inner, outer in itertools.pairwise(chain):
            if getattr(self, inner) > getattr(self, outer):
                raise ValueError(
                    f"exchange.{inner} ({getattr(self, inner)}) is larger than exchange.{outer} "
                    f"({getattr(self, outer)}); raise {outer} or lower {inner}"
                )
        return self


#: A number of requests one person may make per `limits.window_seconds`.
PerWindow = Annotated[int, Field(ge=1, le=100_000)]


class LimitsSettings(_Model):
    """Per-person rate limits of the LearnHub service (per signed-in user, else per address).

    Each limit is a token bucket: up to that many requests at once, refilled evenly over
    `window_seconds`. Past it the service answers 429 with `Retry-After` and a message page
    (JSON for JSON callers).
    """

    window_seconds: int = Field(
        60, ge=1, le=86_400, description="The window every limit below counts in, in seconds."
    )
    checkout: PerWindow = Field(
        10,
        description=(
            "Checkout sessions one person may create per window (each is a Stripe API call and "
            "a database row)."
        ),
    )
    checkout_success: PerWindow = Field(
        20,
        description=(
            "Visits of the checkout success page per window (each asks Stripe about the "
            "session id it is given)."
        ),
    )
    qa: PerWindow = Field(
        30,
        description="Q&A writes per window: questions, answers, votes and accepts together.",
    )
    reviews: PerWindow = Field(10, description="Course reviews written or replaced per window.")

    def as_buckets(self) -> dict[str, tuple[int, int]]:
        """``{action: (requests, seconds)}`` for :class:`hub.service.ratelimit.RateLimiter`."""
        actions = ("checkout", "checkout_success", "qa", "reviews")
        return {action: (getattr(self, action), self.window_seconds) for action in actions}


class SmtpSettings(_Model):
    """The SMTP server LearnHub's mail goes out through (the service sends it)."""

    host: str = Field("127.0.0.1", min_length=1, description="SMTP server name or address.")
    port: int = Field(
        25, ge=1, le=65535, description="SMTP port: 587 for STARTTLS, 465 for TLS, 25 plain."
    )
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description=(
            "`starttls` (upgrade after connecting, port 587), `tls` (TLS from the first byte, "
            "port 465) or `none` (plain text: only to a server on this machine; production "
            "refuses it for any other host)."
        ),
    )
    username: str = Field(
        "",
        description=(
            "Login name on the SMTP server; empty for none. Its password comes from "
            "`LEARNHUB_SMTP_PASSWORD` and is never logged."
        ),
    )
    timeout_seconds: float = Field(
        30, gt=0, le=300, description="Longest wait for the SMTP server on each step."
    )


class EmailSettings(_Model):
    """Mail: address verification, password reset and notices (hub/mail).

    Off by default (the Hub logs one line saying so): sign-up then asks no address and the
    sign-in page offers no reset. Links in mail are built from `hub.public_url`. Tokens in
    links are signed with `LEARNHUB_EMAIL_SECRET`.
    """

    enabled: bool = Field(
        False,
        description=(
            "Send mail. Needs `from_address`; production also needs `LEARNHUB_EMAIL_SECRET` "
            "(32+ random characters) and an encrypted SMTP connection."
        ),
    )
    from_address: str = Field(
        "",
        description="Sender of every mail, e.g. `LearnHub <noreply@learn.example.org>`.",
    )
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    verify_hours: int = Field(
        48, ge=1, le=24 * 30, description="How long an address-verification link works."
    )
    reset_minutes: int = Field(
        60, ge=5, le=24 * 60, description="How long a password-reset link works (once)."
    )
    reset_requests: int = Field(
        5,
        ge=1,
        le=1000,
        description=(
            "Password-reset requests per `limits.window_seconds`, counted per client address "
            "and per address asked for."
        ),
    )
    retry_seconds: int = Field(
        30,
        ge=1,
        le=3600,
        description=(
            "First wait before a message the SMTP server did not take is tried again; each "
            "further failure doubles it, up to an hour."
        ),
    )
    give_up_hours: int = Field(
        72,
        ge=1,
        le=24 * 30,
        description=(
            "A message still not sent after this long is marked failed (kept in the outbox, "
            "logged and counted in `learnhub_mail_failed_total`)."
        ),
    )
    poll_seconds: float = Field(
        5, gt=0, le=300, description="How often the service looks in the outbox for mail due."
    )
    reminder_check_seconds: int = Field(
        900,
        ge=1,
        le=6 * 3600,
        description=(
            "How often the service looks for assignments due within 24 hours to remind their "
            "learners (each learner is reminded once per deadline)."
        ),
    )

    @field_validator("from_address")
    @classmethod
    def _from_shape(cls, value: str) -> str:
        address = parseaddr_address(value)
        if value and address is None:
            raise ValueError(
                f"{value!r} is not a mail address; write `noreply@example.org` or "
                "`LearnHub <noreply@example.org>`"
            )
        return value

    @model_validator(mode="after")
    def _sender_when_enabled(self) -> EmailSettings:
        if self.enabled and not self.from_address:
            raise ValueError("from_address: required when email is enabled")
        return self


def parseaddr_address(value: str) -> str | None:
    """The bare ``user@domain`` in ``value`` (``Name <user@domain>`` or plain), or None."""
    from email.utils import parseaddr

    _name, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in address):
        return None
    return address


class MonitoringSettings(_Model):
    """What the LearnHub service reports to operators: ``/health`` and ``/metrics``.

    The metrics are read by a scraper holding ``LEARNHUB_METRICS_TOKEN`` (the Hub service
    ``metrics``, role ``metrics-scraper``); see docs/how-to/production.md, "Monitoring".
    """

    queue_age_alert_seconds: int = Field(
        900,
        ge=10,
        le=3 * 24 * 3600,
        description=(
            "`/health` answers `degraded` (503) once the oldest Stripe event still queued is "
            "older than this: its re-fetch from Stripe keeps failing, so a payment is not "
            "turned into access yet. Retries back off to 5 minutes apart, so keep it above that."
        ),
    )


class DatabaseSettings(_Model):
    """Database URLs. SQLite files under `hub.data_dir` unless given."""

    hub_url: str = Field("", description="JupyterHub's database; default sqlite under data_dir.")
    learnhub_url: str = Field(
        "", description="LearnHub's database; default sqlite under data_dir/service."
    )
    gradebook_url: str = Field(
        "",
        description=(
            "nbgrader gradebook per course; `{course}` is replaced by the course id "
            "(e.g. postgresql://db/gradebook_{course}). Default: sqlite under data_dir/grader."
        ),
    )


class Secrets(_Model):
    """Secrets, filled only from the environment (``LEARNHUB_<NAME>``)."""

    #: A full-admin Hub token (service ``learnhub-admin``) for the operator's own scripts; optional.
    #: LearnHub itself never uses it.
    admin_token: SecretStr | None = None
    #: The `learnhub` CLI's Hub token (service ``learnhub-cli``, only the scopes it needs).
    cli_token: SecretStr | None = None
    cookie_secret: SecretStr | None = None
    service_token: SecretStr | None = None
    oauth_client_secret: SecretStr | None = None
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secrets: SecretStr | None = None
    #: The Hub API token of the metrics scraper (Hub service ``metrics``), optional.
    metrics_token: SecretStr | None = None
    demo_password: SecretStr | None = None
    #: The SMTP server's password (``email.smtp.username``); only the service holds it.
    smtp_password: SecretStr | None = None
    #: Signs the links in mail (verification, password reset, unsubscribe).
    email_secret: SecretStr | None = None


#: Environment variables that feed :class:`Secrets`, and the others LearnHub itself reads
#: (scripts/setup.sh's extra build CA, an instructor's token for `learnhub grader --hub-url`).
SECRET_ENV = {f"LEARNHUB_{name.upper()}": name for name in Secrets.model_fields}
OTHER_ENV = {"LEARNHUB_CONFIG", "LEARNHUB_MODE", "LEARNHUB_EXTRA_CA", "LEARNHUB_TOKEN"}


class Settings(_Model):
    """Everything LearnHub needs to run, validated."""

    mode: Literal["demo", "production"] = Field(
        "demo",
        description=(
            "`demo` seeds demo users and allows the offline checkout; `production` refuses demo "
            "parts, default secrets and single-host-only storage."
        ),
    )
    courses_dir: Path = Field(Path("courses"), description="Folder with one folder per course.")
    hub: HubSettings = Field(default_factory=HubSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    spawner: SpawnerSettings = Field(default_factory=SpawnerSettings)
    payments: PaymentSettings = Field(default_factory=PaymentSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings)
    grading: GradingSettings = Field(default_factory=GradingSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)
    source: str = Field("<defaults>", exclude=True, description="Where these settings came from.")

    @model_validator(mode="after")
    def _demo_stays_private(self) -> Settings:
        if self.mode != "demo" or self.hub.allow_public_demo:
            return self
        host = urlparse(self.hub.bind_url).hostname or ""
        if not _is_loopback(host):
            raise ValueError(
                f"hub.bind_url: demo mode listens on {host!r}, which is not loopback; the demo "
                "has a published admin password and a free Pay button. Bind 127.0.0.1, use "
                "`mode: production`, or set hub.allow_public_demo: true on a private machine"
            )
        return self

    @model_validator(mode="after")
    def _smtp_password_given(self) -> Settings:
        if self.email.enabled and self.email.smtp.username and self.secrets.smtp_password is None:
            raise ValueError(
                "LEARNHUB_SMTP_PASSWORD: required with email.smtp.username (set it in the "
                "environment, never in the settings file)"
            )
        return self

    @model_validator(mode="after")
    def _production_is_safe(self, info: ValidationInfo) -> Settings:
        if self.mode != "production":
            return self
        problems: list[str] = []
        if self.payments.provider == "demo":
            problems.append(
                "payments.provider: the demo checkout is refused in production; use stripe"
            )
        # The LearnHub service is given only its own secrets (hub.hubconfig.SERVICE_SECRETS):
        # the Hub's secrets are checked where they are used.
        hub_secrets: tuple[str, ...] = ("cookie_secret", "cli_token", "service_token")
        # Optional, but when set it is a full-admin Hub token.
        optional_secrets: tuple[str, ...] = ("admin_token",)
        process = (info.context or {}).get("process")
        if process in ("service", "worker"):
            hub_secrets = optional_secrets = ()
        for name in (*hub_secrets, *optional_secrets):
            value = getattr(self.secrets, name)
            if value is None and name in optional_secrets:
                continue
            if value is None or DEMO_SECRET_MARKER in value.get_secret_value():
                problems.append(
                    f"LEARNHUB_{name.upper()}: must be set to a random secret in production"
                )
            elif len(value.get_secret_value()) < 32:
                problems.append(f"LEARNHUB_{name.upper()}: must be at least 32 characters")
        metrics_token = self.secrets.metrics_token
        if metrics_token is not None and (
            DEMO_SECRET_MARKER in metrics_token.get_secret_value()
            or len(metrics_token.get_secret_value()) < 32
        ):
            # Optional, but when set it reads the Hub's and the service's metrics.
            problems.append(
                "LEARNHUB_METRICS_TOKEN: must be a random secret of at least 32 characters"
            )
        stripe_base = self.payments.stripe_api_base
        if stripe_base and not _is_loopback(urlparse(stripe_base).hostname or ""):
            # A stand-in on this machine's loopback (stripe-mock; the production how-to's test,
            # which cannot reach Stripe) is the operator's own rehearsal; anything else would
            # send the secret key and take payment facts from a third party.
            problems.append(
                "payments.stripe_api_base: production talks to Stripe itself (only a stand-in "
                "on this machine's loopback is accepted, for a rehearsal)"
            )
        if not self.hub.public_url.startswith("https://"):
            problems.append(
                "hub.public_url: set the https:// address people use; absolute links (Stripe "
                "return URLs) are built from it"
            )
        problems.extend(_origin_problems(self.hub))
        # The grading worker never talks to Stripe, and is given no secret (a managed service
        # that asked for them exited at every start in production).
        if self.payments.provider == "stripe" and process != "worker":
            if self.secrets.stripe_secret_key is None:
                problems.append(
                    "LEARNHUB_STRIPE_SECRET_KEY: required with payments.provider stripe"
                )
            if self.secrets.stripe_webhook_secrets is None:
                problems.append(
                    "LEARNHUB_STRIPE_WEBHOOK_SECRETS: required with payments.provider stripe"
                )
        problems.extend(_email_problems(self))
        if self.spawner.backend in ("swarm", "kubernetes"):
            for key in ("hub_url", "learnhub_url"):
                if not getattr(self.database, key) or getattr(self.database, key).startswith(
                    "sqlite"
                ):
                    problems.append(
                        f"database.{key}: SQLite cannot be shared across hosts; use PostgreSQL "
                        f"with spawner.backend {self.spawner.backend}"
                    )
        if self.spawner.backend in ("docker", "swarm") and self.spawner.network in (
            "bridge",
            "host",
        ):
            problems.append(
                f"spawner.network: Docker's `{self.spawner.network}` network lets course "
                "containers reach each other and the host; use a LearnHub network (the default)"
            )
        if self.spawner.backend == "docker" and self.spawner.home.storage == "volume":
            problems.append(
                "spawner.home.storage: `volume` puts no size limit on learners' homes, so one "
                "learner can fill the disk that holds the payment database; use `image` (the "
                "default) or `volume-quota`"
            )
        if self.spawner.backend == "local":
            problems.append(
                "spawner.backend: `local` runs learner code on the hub host; tests only"
            )
        if problems:
            raise ValueError("production mode refuses:\n  " + "\n  ".join(problems))
        return self

    @property
    def public_url(self) -> str:
        """The address people use, ending in ``/``: ``hub.public_url``; else the subdomain
        host with the base URL path (``http://localhost:8000/`` in the demo); else
        ``hub.bind_url``."""
        if self.hub.public_url:
            return self.hub.public_url
        if self.subdomain_host:
            return self.subdomain_host + urlparse(self.hub.bind_url).path
        return self.hub.bind_url

    @property
    def subdomain_host(self) -> str:
        """The host whose subdomains serve user servers (``scheme://host[:port]``), or ``""``
        when subdomains are off. ``auto`` is resolved here, from ``hub.public_url`` or
        ``hub.bind_url``."""
        if self.hub.subdomain_host != "auto":
            return self.hub.subdomain_host
        parsed = urlparse(self.hub.public_url or self.hub.bind_url)
        host = parsed.hostname or "localhost"
        is_address = host.replace(".", "").isdigit() or ":" in host
        if is_address and (_is_loopback(host) or host in ("0.0.0.0", "::")):  # noqa: S104
            # An address has no subdomains; browsers resolve `*.localhost` to loopback.
            host = "localhost"
        port = f":{parsed.port}" if parsed.port else ""
        return f"{parsed.scheme}://{host}{port}"

    def absolute_url(self, path: str) -> str:
        """``path`` (an absolute URL path, e.g. ``/services/learnhub/x``) on the public URL."""
        parsed = urlparse(self.public_url)
        return f"{parsed.scheme}://{parsed.netloc}{path}"

    @property
    def data_dir(self) -> Path:
        """Absolute data folder."""
        return self.hub.data_dir.resolve()

    @property
    def service_dir(self) -> Path:
        """The LearnHub service's own folder (its database, the exchange store), owned by
        ``hub.service_user`` (hub/privilege.py)."""
        return self.data_dir / "service"

    @property
    def exchange_dir(self) -> Path:
        """The exchange store (releases, submissions, feedback), written by the service."""
        return self.service_dir / "exchange"

    @property
    def hub_db_url(self) -> str:
        """JupyterHub's database URL."""
        return self.database.hub_url or f"sqlite:///{self.data_dir / 'jupyterhub.sqlite'}"

    @property
    def learnhub_db_url(self) -> str:
        """LearnHub's own database URL."""
        return self.database.learnhub_url or f"sqlite:///{self.service_dir / 'learnhub.sqlite'}"

    @property
    def grader_dir(self) -> Path:
        """Folder of the courses' nbgrader directories (`<grader_dir>/<course>/`), for host
        processes only: never mounted into a container."""
        return self.data_dir / "grader"

    @property
    def homes_dir(self) -> Path:
        """Folder of the learners' home images (`spawner.home.storage: image`), root only."""
        return self.data_dir / "homes"

    @property
    def formgrader_dir(self) -> Path:
        """Folder of the instructors' copies of the grading directories (`<..>/<course>/`),
        mounted into their course servers; host processes never execute or follow anything
        in it (grader/ownership.py)."""
        return self.data_dir / "formgrader"

    def gradebook_url(self, course_id: str) -> str:
        """The nbgrader gradebook of one course."""
        template = self.database.gradebook_url or (
            f"sqlite:///{self.grader_dir / '{course}' / 'gradebook.db'}"
        )
        return template.replace("{course}", course_id)

    @property
    def email_secret(self) -> str:
        """The key that signs links in mail. Demo mode falls back to a published one, which
        production refuses (:func:`_email_problems`). Never log what this returns."""
        return self.secret("email_secret") or f"{DEMO_SECRET_MARKER}-email-links"

    def secret(self, name: str) -> str | None:
        """The plain value of secret ``name``, or None. Never log what this returns."""
        value = getattr(self.secrets, name)
        return None if value is None else str(value.get_secret_value())


def _email_problems(settings: Settings) -> list[str]:
    """What production refuses about mail: unsigned links, passwords in clear text."""
    email = settings.email
    if not email.enabled:
        return []
    problems: list[str] = []
    secret = settings.secrets.email_secret
    if secret is None or DEMO_SECRET_MARKER in secret.get_secret_value():
        problems.append("LEARNHUB_EMAIL_SECRET: must be set to a random secret with email on")
    elif len(secret.get_secret_value()) < 32:
        problems.append("LEARNHUB_EMAIL_SECRET: must be at least 32 characters")
    if email.smtp.security == "none" and not _is_loopback(email.smtp.host):
        problems.append(
            f"email.smtp.security: `none` sends mail (and the SMTP password) in clear text to "
            f"{email.smtp.host!r}; use starttls or tls"
        )
    return problems


def _origin_problems(hub: HubSettings) -> list[str]:
    """What production refuses about origins: each user server needs its own https origin,
    and the public URL must be on the host whose subdomains serve them."""
    subdomain_host = hub.subdomain_host
    if subdomain_host in ("", "auto"):
        return [
            "hub.subdomain_host: set the https:// host whose subdomains serve user servers "
            "(e.g. https://learn.example.org, with wildcard DNS and a wildcard certificate "
            "for *.learn.example.org); without it every learner's server shares the Hub's "
            "origin and its JavaScript can act as whoever opens it"
        ]
    problems: list[str] = []
    if not subdomain_host.startswith("https://"):
        problems.append(f"hub.subdomain_host: {subdomain_host!r} must use https://")
    public = urlparse(hub.public_url)
    if hub.public_url and f"{public.scheme}://{public.netloc}" != subdomain_host:
        problems.append(
            f"hub.public_url: {hub.public_url!r} is not on hub.subdomain_host "
            f"{subdomain_host!r}; people must reach the Hub at the host whose subdomains "
            "serve their servers (its cookies stay on that host)"
        )
    return problems


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback only."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _format_errors(source: str, error: ValidationError) -> str:
    def explain(item: ErrorDetails) -> str | None:
        if item["type"] == "extra_forbidden":
            return "unknown key (check the spelling; see docs/reference/settings.md)"
        return None

    return describe_validation_error(f"{source}: invalid settings", error, explain)


def load_settings(
    path: Path | None, environ: Mapping[str, str], *, process: Process = "hub"
) -> Settings:
    """Build the settings from ``path`` (optional YAML file) and ``environ``.

    Raises :class:`SettingsError` naming file, key and problem when anything is wrong.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"{path}: settings file not found") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path}: the top level must be a mapping of keys to values")
        if "secrets" in loaded:
            raise SettingsError(
                f"{path}: secrets: secrets are read from LEARNHUB_* environment variables only, "
                "never from the settings file"
            )
        data.update(loaded)
    unknown = sorted(
        name
        for name in environ
        if name.startswith("LEARNHUB_") and name not in SECRET_ENV and name not in OTHER_ENV
    )
    if unknown:
        known = ", ".join(sorted(SECRET_ENV) + sorted(OTHER_ENV))
        raise SettingsError(f"environment: unknown variable {unknown[0]} (known: {known})")
    data["secrets"] = {field: environ[env] for env, field in SECRET_ENV.items() if environ.get(env)}
    if environ.get("LEARNHUB_MODE"):
        data["mode"] = environ["LEARNHUB_MODE"]
    data["source"] = source
    try:
        return Settings.model_validate(data, context={"process": process})
    except ValidationError as exc:
        raise SettingsError(_format_errors(source, exc)) from None


def settings_from_environment(
    environ: Mapping[str, str], default_path: Path, *, process: Process = "hub"
) -> Settings:
    """Load settings from ``LEARNHUB_CONFIG`` if set, else ``default_path`` when it exists."""
    configured = environ.get("LEARNHUB_CONFIG")
    if configured:
        return load_settings(Path(configured), environ, process=process)
    return load_settings(default_path if default_path.exists() else None, environ, process=process)
