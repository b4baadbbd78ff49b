#!/usr/bin/env bash
# Set up and run the whole platform in the foreground: web (gunicorn), Celery worker and beat.
# PostgreSQL/Redis are used when DATABASE_URL/REDIS_URL are set (or in .env); otherwise the
# embedded defaults: SQLite in var/, a file cache and a filesystem broker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh requirements.txt
export PATH="$PWD/.venv/bin:$PATH"
if [ ! -f .env ]; then
  # A secret key of this checkout's own, so `python manage.py ...` works here later without
  # DEBUG (settings refuse to start without one). .env is git-ignored; nothing else goes in.
  echo "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(64))')" > .env
  chmod 600 .env
  echo "==> wrote a SECRET_KEY for this checkout into .env"
fi
export DEBUG=${DEBUG:-true}
export GUNICORN_BIND=${GUNICORN_BIND:-127.0.0.1:8000}
export GUNICORN_WORKERS=${GUNICORN_WORKERS:-2}

if [ -z "${DATABASE_URL:-}" ] && ! grep -qs '^DATABASE_URL=' .env; then
  echo "==> no DATABASE_URL: embedded mode (SQLite in var/, file cache, filesystem broker)"
fi
python manage.py migrate --noinput
python manage.py setup_periodic_tasks
python manage.py collectstatic --noinput -v 0
python manage.py seed_demo --if-empty
python manage.py demo_accounts
echo "==> Schoolhouse: http://$GUNICORN_BIND/  (Ctrl-C stops web, worker and beat)"
exec honcho start -f Procfile
