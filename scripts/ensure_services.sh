#!/usr/bin/env bash
# Make sure the PostgreSQL 15 and Redis 7 that the test suite runs against are installed and
# up on 127.0.0.1, and that the `schoolhouse` role exists. Installs them with apt-get when
# missing (needs root), starts them when stopped. Never stops anything.
set -euo pipefail

PGPORT=${PGPORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi

apt_install() {
  echo "==> installing $* with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- PostgreSQL -----------------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt_install postgresql postgresql-contrib
fi
if ! pg_isready -q -h 127.0.0.1 -p "$PGPORT"; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if ! pg_lsclusters -h | grep -q "^$version main"; then
    $SUDO pg_createcluster "$version" main >/dev/null
  fi
  echo "==> starting PostgreSQL $version"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p "$PGPORT" && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p "$PGPORT" >/dev/null

# The role the suite connects as. With trust auth (this project's CI) the password is
# ignored; on a stock Debian install (scram) it is what makes the TCP login work.
psql_admin() {
  if psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -tAc "select 1" >/dev/null 2>&1; then
    psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -tAc "$1"
  else
    $SUDO runuser -u postgres -- psql -p "$PGPORT" -d postgres -v ON_ERROR_STOP=1 -tAc "$1"
  fi
}
if [ "$(psql_admin "select 1 from pg_roles where rolname = 'schoolhouse'")" != "1" ]; then
  echo "==> creating PostgreSQL role schoolhouse"
  psql_admin "create role schoolhouse login createdb password 'schoolhouse'" >/dev/null
fi
# Restore drills and fault tests create and drop scratch databases and clusters.
psql_admin "alter role schoolhouse createdb" >/dev/null
if [ "$(psql_admin "select 1 from pg_database where datname = 'schoolhouse'")" != "1" ]; then
  psql_admin "create database schoolhouse owner schoolhouse" >/dev/null
fi
# The application's role (README, "Two database roles"): it owns nothing and bypasses no
# row-level security; migrations, run as `schoolhouse`, grant it what it needs.
if [ "$(psql_admin "select 1 from pg_roles where rolname = 'schoolhouse_app'")" != "1" ]; then
  echo "==> creating PostgreSQL role schoolhouse_app"
  psql_admin "create role schoolhouse_app login nosuperuser nocreatedb nocreaterole nobypassrls password 'schoolhouse_app'" >/dev/null
fi

# --- Redis ----------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server
fi
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "==> starting Redis"
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null

# --- Browser for the end-to-end tests --------------------------------------------------------
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium fonts-dejavu-core
fi

# --- libmagic: document uploads are typed from their bytes (python-magic) -------------------
if ! ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1'; then
  apt_install libmagic1
fi
# --- Point-in-time recovery: pgBackRest archives WAL and takes physical backups; nginx is
# the TLS front the tests put before the object-store emulators (pgBackRest speaks only TLS).
missing=()
command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi
echo "==> PostgreSQL, Redis, Chromium, pgBackRest and nginx are ready"
