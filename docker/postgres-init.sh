#!/bin/sh
# First start of an empty data volume (the postgres image runs /docker-entrypoint-initdb.d/):
# the application's role, which owns nothing and bypasses no row-level security. `migrate`,
# run as the owner (POSTGRES_USER), grants it what it needs. An existing volume: README,
# "Two database roles", creates it by hand once.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE schoolhouse_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS
  PASSWORD '${APP_DB_PASSWORD:-schoolhouse_app}';
SQL
