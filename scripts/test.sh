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
mkdir -p test-artifacts
# mypy runs alongside pytest, at a lower priority: on a clean clone (no .mypy_cache) it is minutes
# of CPU on one core, while the test suite mostly waits for hubs, containers and Chromium. Its
# output comes after pytest's; either failing fails the run.
echo "==> mypy (in the background: test-artifacts/mypy.log)"
nice -n 10 .venv/bin/mypy >test-artifacts/mypy.log 2>&1 &
mypy_pid=$!
trap 'kill "$mypy_pid" 2>/dev/null || true' EXIT  # an interrupted run leaves no mypy behind
echo "==> pytest"
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
wait "$mypy_pid"
mypy_status=$?
set -e
echo "==> mypy"
cat test-artifacts/mypy.log
if (( status == 5 )); then
  echo "pytest collected no tests: that is a failure" >&2
  status=1
fi
if (( status == 0 && mypy_status != 0 )); then
  status=$mypy_status
fi
exit $status
