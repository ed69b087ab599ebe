"""The TLS edge: an nginx site file made from the validated settings.

Why nginx (Debian's 1.22) and not Caddy (Debian's 2.6): the certificates are the operator's
files anyway (a wildcard for the user subdomains needs the DNS-01 challenge, which Debian's
Caddy build has no DNS provider plugins for), and nginx's `proxy_cache` revalidates expired
pages with their ETag (`proxy_cache_revalidate`), collapses concurrent misses
(`proxy_cache_lock`) and reports what it did (`$upstream_cache_status`). docs/security.md,
"The TLS edge", says what the edge guarantees.

The site file belongs in nginx's `http {}` context (Debian: `/etc/nginx/conf.d/learnhub.conf`);
Debian's own `nginx.service` runs it. Every name it defines starts with `learnhub_` so it lives
beside other sites.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from hub.addresses import service_url, webhook_intake_port
from hub.errors import LearnHubError
from hub.settings import Settings

#: The response header that says what the edge cache did (MISS, HIT, REVALIDATED, BYPASS...).
CACHE_STATUS_HEADER = "X-LearnHub-Cache"

#: The nginx upstream (configurable-http-proxy) the site file defines.
UPSTREAM = "learnhub_proxy"
#: The nginx upstream of the LearnHub service itself, for the Stripe webhook only.
SERVICE_UPSTREAM = "learnhub_service"

#: Where Debian's nginx reads extra `http {}` configuration from.
DEBIAN_SITE_FILE = Path("/etc/nginx/conf.d/learnhub.conf")


class EdgeConfigError(LearnHubError):
    """The settings do not describe an edge nginx could serve; the message says what to set."""


@dataclass(frozen=True)
class EdgeSite:
    """What the site file is made of, derived from the settings only."""

    server_names: tuple[str, ...]
    https_port: int
    redirect_port: str
    upstream: str
    cached_paths: tuple[str, ...]
    service_path: str
    #: Where the webhook goes (``host:port``): the webhook intake, or the LearnHub service.
    service_upstream: str
    #: The Stripe webhook's path, passed straight to the service.
    webhook_path: str


def _nginx_string(value: str) -> str:
    """``value`` as one double-quoted nginx string; ``$`` would start a variable there."""
    if any(ch in value for ch in '"\\$\n\r{};') or not value.isprintable():
        raise EdgeConfigError(f"{value!r}: cannot be written safely into the nginx site file")
    return f'"{value}"'


def describe_site(settings: Settings) -> EdgeSite:
    """Check that the settings make a servable edge and return its parts."""
    edge = settings.edge
    if edge.certificate is None or edge.certificate_key is None:
        raise EdgeConfigError(
            "edge.certificate and edge.certificate_key: set the paths of the PEM certificate "
            "chain (valid for the public host and its wildcard) and its key"
        )
    public = urlparse(settings.public_url)
    if public.scheme != "https" or not public.hostname:
        raise EdgeConfigError(
            f"hub.public_url: {settings.public_url!r} must be the https:// address people use"
        )
    subdomain_host = settings.subdomain_host
    names = [public.hostname]
    if subdomain_host:
        sub = urlparse(subdomain_host)
        if sub.scheme != "https" or sub.hostname != public.hostname or sub.port != public.port:
            raise EdgeConfigError(
                f"hub.subdomain_host: {subdomain_host!r} must be the host and port of "
                f"hub.public_url ({public.scheme}://{public.netloc}), with https"
            )
        names.append(f"*.{public.hostname}")
    bind = urlparse(settings.hub.bind_url)
    host = bind.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - the proxy listens everywhere; use loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    # The base URL path as nginx compares it: decoded (`%20` is a space in a location).
    base = unquote(bind.path)
    if unquote(public.path) != base:
        raise EdgeConfigError(
            f"hub.public_url: its path {public.path!r} must be hub.bind_url's {bind.path!r}"
        )
    service = base + "services/learnhub/"
    https_port = public.port or 443
    return EdgeSite(
        server_names=tuple(names),
        https_port=https_port,
        redirect_port="" if https_port == 443 else f":{https_port}",
        upstream=f"http://{host}:{bind.port or 80}",
        # The anonymous catalog and course pages (hub.service.pages.PublicPages send ETags).
        cached_paths=(service, service + "courses", service + "courses/"),
        service_path=service,
        # The webhook intake when there is one (hub/billing/intake.py), else the service.
        service_upstream=(
            f"127.0.0.1:{intake}"
            if (intake := webhook_intake_port(settings)) is not None
            else service_url(settings).removeprefix("http://")
        ),
        webhook_path=service + "stripe/webhook",
    )


def _headers(indent: str, *, cache_status: bool = False) -> list[str]:
    lines = [
        'add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;',
    ]
    if cache_status:
        lines.append(f"add_header {CACHE_STATUS_HEADER} $upstream_cache_status always;")
    return [indent + line for line in lines]


def render_site(settings: Settings) -> str:
    """The nginx site file for ``settings`` (raises :class:`EdgeConfigError`)."""
    site = describe_site(settings)
    edge = settings.edge
    assert edge.certificate is not None and edge.certificate_key is not None  # describe_site
    listen = "" if edge.listen_address == "*" else f"{edge.listen_address}:"
    names = " ".join(site.server_names)
    proxy = [
        f"proxy_pass http://{UPSTREAM};",
        # The request URI goes on as the browser sent it (the base URL may hold %20 or @).
        "proxy_http_version 1.1;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host $http_host;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $learnhub_connection_upgrade;",
    ]
    out = [
        f"# LearnHub's TLS edge, written by `learnhub edge config` from {settings.source}.",
        "# Do not edit: change the settings and write it again (docs/how-to/production.md).",
        "",
        # Connections to the proxy are kept alive (a new TCP connection per request cost the
        # proxy more than the request itself): an empty Connection header, except to upgrade.
        f"upstream {UPSTREAM} {{",
        f"    server {site.upstream.removeprefix('http://')};",
        "    keepalive 32;",
        # Below Node's 5 s: configurable-http-proxy closes a connection idle for 5 s, and nginx
        # reusing one at that moment answered a POST with 502 (16 of 900 webhooks, when the
        # open loop of benchmarks/edge.py started after a pause).
        "    keepalive_timeout 4s;",
        "}",
        "",
        # The Stripe webhook goes straight to the LearnHub service: it has no login (Stripe's
        # signature is checked by the service on the raw body), and through the proxy each
        # event cost configurable-http-proxy about as much CPU as the service's own accepting
        # of it (benchmarks/edge.py). Nothing else of the service takes this way.
        f"upstream {SERVICE_UPSTREAM} {{",
        f"    server {site.service_upstream};",
        "    keepalive 64;",
        "    keepalive_timeout 30s;",
        "}",
        "",
        "map $http_upgrade $learnhub_connection_upgrade {",
        "    default upgrade;",
        "    ''      '';",
        "}",
        "",
        # Cookies or an Authorization header mean someone is signed in (or trying): never
        # cache their answer, never answer them from the cache. `?token=` is the Hub's other
        # way to authenticate a request.
        'map "$http_cookie$http_authorization$arg_token" $learnhub_personal {',
        '    ""      0;',
        "    default 1;",
        "}",
        "",
        f"proxy_cache_path {_nginx_string(str(edge.cache_dir))} levels=1:2 "
        f"keys_zone=learnhub_pages:10m max_size={edge.cache_max_size} inactive=10m "
        "use_temp_path=off;",
        "",
        "server {",
        f"    listen {listen}{edge.http_port};",
        f"    server_name {names};",
        f"    return 301 https://$host{site.redirect_port}$request_uri;",
        "}",
        "",
    ]
    tls = [
        f"    ssl_certificate {_nginx_string(str(edge.certificate))};",
        f"    ssl_certificate_key {_nginx_string(str(edge.certificate_key))};",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_prefer_server_ciphers off;",
        "    ssl_session_cache shared:learnhub_tls:10m;",
        "    ssl_session_timeout 1d;",
        f"    client_max_body_size {edge.upload_limit};",
        # Kernels' websockets stay open for hours while a learner thinks.
        "    proxy_read_timeout 1h;",
        "    proxy_send_timeout 1h;",
        "",
        "    location / {",
        *("        " + line for line in proxy),
        # Streamed answers (event streams, long polls) go through as they come.
        "        proxy_buffering off;",
        "        proxy_request_buffering off;",
        *_headers("        "),
        "    }",
    ]
    cached = [
        *proxy,
        "proxy_cache learnhub_pages;",
        "proxy_cache_key $scheme$host$request_uri;",
        # The service says `Cache-Control: no-cache` (revalidate every time) and nginx cannot
        # keep a page for less than a second: keep it `cache_seconds`, then ask again with
        # its ETag (`proxy_cache_revalidate`), one request for all who wait (`proxy_cache_lock`).
        "proxy_ignore_headers Cache-Control Expires;",
        f"proxy_cache_valid 200 {edge.cache_seconds}s;",
        "proxy_cache_revalidate on;",
        "proxy_cache_lock on;",
        # While one request revalidates an expired page, the others get the copy they would
        # have got a moment earlier instead of all asking the service at once: at 100 clients
        # every expiry sent ~100 requests through the proxy and made the p95 (benchmarks/edge.py).
        "proxy_cache_use_stale updating;",
        "proxy_cache_bypass $learnhub_personal;",
        "proxy_no_cache $learnhub_personal;",
    ]
    # The Hub's host: exact locations (and one course-page pattern) are cached; nothing else of
    # the service (checkout, webhooks, the exchange, dashboards) ever is.
    out += ["server {", f"    listen {listen}{site.https_port} ssl http2;"]
    out += [f"    server_name {site.server_names[0]};", *tls]
    out += [
        "",
        # Exactly the webhook's path (a POST of a few kilobytes, answered once the event is
        # stored): to the service, kept alive, never cached, never upgraded.
        f"    location = {_nginx_string(site.webhook_path)} {{",
        f"        proxy_pass http://{SERVICE_UPSTREAM};",
        *("        " + line for line in proxy[1:-2]),
        '        proxy_set_header Connection "";',
        "        proxy_cache off;",
        *_headers("        "),
        "    }",
    ]
    course_pattern = "^" + re.escape(site.service_path) + "courses/[a-z0-9-]+$"
    selectors = [f"= {_nginx_string(path)}" for path in site.cached_paths]
    selectors.append(f'~ "{course_pattern}"')
    for selector in selectors:
        out += [
            "",
            f"    location {selector} {{",
            *("        " + line for line in cached),
            *_headers("        ", cache_status=True),
            "    }",
        ]
    out += ["}", ""]
    if len(site.server_names) > 1:
        # The learners' servers, each on its own subdomain: proxied, never cached.
        out += ["server {", f"    listen {listen}{site.https_port} ssl http2;"]
        out += [f"    server_name {site.server_names[1]};", *tls, "}", ""]
    return "\n".join(out)
