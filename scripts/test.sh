#!/usr/bin/env bash
# Set up and run the whole test suite against real PostgreSQL and Redis on 127.0.0.1.
# Extra arguments go to pytest (for example: scripts/test.sh -m unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh requirements-dev.txt
scripts/ensure_services.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "==> ruff"
ruff check .
echo "==> mypy"
SCHOOLHOUSE_TESTING=true mypy .
echo "==> pytest"
set +e
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadgroup --create-db "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
