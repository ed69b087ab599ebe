#!/usr/bin/env bash
# Set up what is needed, then run lint, type checks and the whole test suite (Docker tests
# included: they never skip). Extra arguments go to pytest.
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
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if (( status == 5 )); then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $status
