#!/usr/bin/env bash
# Set up what is needed, then run LearnHub with its demo courses on http://localhost:8000/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/learnhub demo --skip-images "$@"
