#!/usr/bin/env bash
# Set up everything LearnHub needs on a Debian machine, as root. Idempotent: a second run only
# checks. Used by scripts/demo.sh and scripts/test.sh.
#
#   scripts/setup.sh            platform: Docker engine, Python venv, proxy, images
#   scripts/setup.sh --test     also what the test suite needs: PostgreSQL, Chromium, nginx
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1
UV_VERSION=0.13.8
mkdir -p var/log

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# 1. Debian packages, installed only when something is missing.
need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_cmd python3 || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
have_cmd dockerd || need+=(docker.io)
have_cmd debootstrap || need+=(debootstrap)
have_cmd node || need+=(nodejs)
have_cmd npm || need+=(npm)
have_cmd git || need+=(git)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || need+=(ca-certificates)
have_cmd setfacl || need+=(acl)
if (( WITH_TEST )); then
  [[ -x /usr/lib/postgresql/15/bin/initdb ]] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  have_cmd chromium || need+=(chromium)
  have_cmd chromedriver || need+=(chromium-driver)
  # `ip netns`: every test Chromium runs in a network namespace of its own
  # (harness/browser_network.py); not in a minimal Debian image.
  have_cmd ip || need+=(iproute2)
  # The TLS edge (`learnhub edge config`) is tested with Debian's nginx, run by the test itself.
  [[ -x /usr/sbin/nginx ]] || need+=(nginx)
  # Chinese pages are tested in Chromium; without a CJK font their screenshots show boxes.
  [[ -d /usr/share/fonts/opentype/noto ]] && ls /usr/share/fonts/opentype/noto | grep -qi cjk || need+=(fonts-noto-cjk)
fi
if (( ${#need[@]} )); then
  say "installing Debian packages: ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# 2. A running Docker engine.
if ! docker info >/dev/null 2>&1; then
  say "starting the Docker engine"
  if have_cmd systemctl && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
  else
    nohup dockerd >var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "Docker engine did not start; see var/log/dockerd.log" >&2; exit 1; }
fi

# 3. One virtual environment, from the lock file.
if [[ ! -x .venv/bin/python ]]; then
  say "creating the virtual environment"
  python3 -m venv .venv
fi
if [[ ! -x .venv/bin/uv ]] || ! .venv/bin/uv --version | grep -q "$UV_VERSION"; then
  .venv/bin/pip install -q "uv==$UV_VERSION"
fi
say "syncing Python packages (uv.lock)"
UV_PROJECT_ENVIRONMENT=.venv .venv/bin/uv sync --frozen --inexact --quiet
# Bytecode for everything the Hub, the service and the CLI import, written now as root: the
# service's user cannot write __pycache__ here, and shells with PYTHONDONTWRITEBYTECODE set
# would otherwise compile every import again in every process (6-9 s of CPU per service
# start instead of 2.5). compileall skips what is up to date, so a second run takes seconds.
# It runs while the proxy is installed and the images are built (on a clean clone, a minute or
# more of CPU next to downloads and Docker builds); step 6 waits for it.
say "compiling Python bytecode (in the background)"
.venv/bin/python -m compileall -q -j 0 .venv/lib/python3*/site-packages hub grader harness \
  learnhub_container >/dev/null &
compile_pid=$!

# 4. configurable-http-proxy from npm, pinned by tools/package-lock.json.
if [[ ! -x tools/node_modules/.bin/configurable-http-proxy ]] \
   || [[ tools/package-lock.json -nt tools/node_modules/.package-lock.json ]]; then
  say "installing configurable-http-proxy"
  npm ci --prefix tools --no-audit --no-fund --loglevel=error
fi

# 5. Container images: the offline base image, then whatever is out of date.
say "building images that are out of date"
.venv/bin/learnhub images build ${LEARNHUB_EXTRA_CA:+--extra-ca "$LEARNHUB_EXTRA_CA"}

wait "$compile_pid"

# 6. The unprivileged users the Hub starts its helpers as (docs/security.md): the LearnHub
#    service and the idle culler as `learnhub` (hub.service_user), configurable-http-proxy as
#    `learnhub-proxy` (hub.proxy_user). Each must reach this checkout, and the service the
#    venv's Python too. Where either lives under a private folder (a Python in /root/.pyenv),
#    that user alone is allowed through it (search permission only, no listing).
SERVICE_USER=learnhub
PROXY_USER=learnhub-proxy
let_through() { # USER PATH...: give USER search permission on what blocks it from each PATH
  local user="$1" target dir blocked granted=""
  shift
  reach() { runuser -u "$user" -- test -x "$1"; }
  for target in "$@"; do
    dir="$(dirname "$target")"
    [[ -d "$target" ]] && dir="$target"
    while ! reach "$dir"; do
      blocked="$dir"
      while [[ "$blocked" != / ]] && ! reach "$(dirname "$blocked")"; do
        blocked="$(dirname "$blocked")"
      done
      if [[ "$blocked" == "$granted" ]]; then
        echo "$user still cannot pass through $blocked; see docs/how-to/production.md" >&2
        exit 1
      fi
      say "letting $user through $blocked (search permission only)"
      setfacl -m "u:$user:x" "$blocked"
      granted="$blocked"
    done
  done
}
for user in "$SERVICE_USER" "$PROXY_USER"; do
  if ! id -u "$user" >/dev/null 2>&1; then
    say "creating the system user $user"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$user"
  fi
done
let_through "$SERVICE_USER" "$ROOT" "$(readlink -f .venv/bin/python)"
let_through "$PROXY_USER" "$ROOT/tools/node_modules/.bin"
runuser -u "$SERVICE_USER" -- .venv/bin/python -c 'import hub.service' \
  || { echo "$SERVICE_USER cannot run LearnHub from $ROOT; see docs/security.md" >&2; exit 1; }
runuser -u "$PROXY_USER" -- tools/node_modules/.bin/configurable-http-proxy --version >/dev/null \
  || { echo "$PROXY_USER cannot run the proxy from $ROOT; see docs/security.md" >&2; exit 1; }
