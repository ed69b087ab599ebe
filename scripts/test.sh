#!/usr/bin/env bash
# Set up what is needed, then run lint, type checks and the whole test suite (Docker tests
# included: they never skip). Extra arguments go to pytest (`-n 2`: two xdist workers).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --test
cd "$ROOT"

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
mkdir -p test-artifacts
# Let Python keep compiled bytecode (__pycache__, git-ignored). Shells that export
# PYTHONDONTWRITEBYTECODE make every Python process the suite starts (each hub and its service,
# every nbgrader and learnhub command) compile all it imports from source again: measured here,
# the service's imports took 6.7 s of CPU instead of 2.6 s, and tests/exchange/
# test_nbgrader_client.py 244 s of CPU instead of 119 s.
unset PYTHONDONTWRITEBYTECODE
# Two pytest-xdist workers: most of a test's time is waiting (hubs starting, containers,
# sandboxes), not CPU, and one process left a 2-core machine at load 1-2. `--dist loadgroup`
# makes tests/conftest.py's scheduler keep each module on one worker, and modules that share
# host-global state on one worker together (docs/how-to/writing-tests.md). `-n 0` (given
# after, it wins) runs everything in this process, e.g. to debug one test.
set +e
.venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
status=$?
set -e
if (( status == 5 )); then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $status
