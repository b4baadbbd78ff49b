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
echo "==> bandit (fails on any high-severity finding; the rest are ruff's S rules, reviewed)"
bandit -c pyproject.toml -r . -q --severity-level high
echo "==> pip-audit (known vulnerabilities in the installed requirements*.txt pins)"
# The virtualenv was just built from requirements-dev.txt (which includes requirements.txt),
# so auditing it audits both files with every transitive dependency, without resolving them
# again. --strict: a package that could not be checked fails the run, as a finding would.
# The advisories come from PyPI's JSON API: an unreachable or silent service must not hang
# the run (socket timeout 20 s, whole audit 300 s) nor pass it quietly.
set +e
audit_output=$(timeout 300 pip-audit --strict --progress-spinner off --timeout 20 2>&1)
audit_status=$?
set -e
echo "$audit_output"
if [ "$audit_status" -ne 0 ]; then
  if grep -qE "Found [0-9]+ known vulnerabilit" <<<"$audit_output"; then
    echo "pip-audit: known vulnerabilities above; upgrade those pins (or, for one that does" >&2
    echo "not affect us, add --ignore-vuln ID here with the reason)." >&2
    exit 1
  fi
  echo "pip-audit could not check the packages (status $audit_status): the vulnerability" >&2
  echo "service is unreachable or timed out, so nothing was audited." >&2
  if [ "${PIP_AUDIT_UNREACHABLE:-fail}" != "warn" ]; then
    echo "Set PIP_AUDIT_UNREACHABLE=warn to run the tests anyway on a machine without it." >&2
    exit 1
  fi
  echo "WARNING: PIP_AUDIT_UNREACHABLE=warn: continuing WITHOUT a dependency audit." >&2
fi
echo "==> pytest"
set +e
# --dist loadfile: a module's tests run on one worker, in order, so a module-scoped cluster
# (tests/backups/pitr.py) serves all of them. (--dist loadgroup does not group with pytest 9:
# pytest-xdist 3.8 tags the group onto `item._nodeid`, which pytest 9 no longer reads.)
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile --create-db "$@"
status=$?
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ]; then
  # schemathesis' items share one node id, which pytest-xdist cannot schedule: this one runs
  # in a single process (tests/api/test_schema.py).
  echo "==> pytest: schemathesis against the API schema"
  python -m pytest -p no:xdist -m schemathesis --create-db tests/api/test_schema.py
  status=$?
fi
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
