#!/bin/sh
# Start PostgreSQL archiving through pgBackRest, with pgBackRest's TLS server beside it.
#
# pgBackRest reads its options from PGBACKREST_* variables (compose.pitr.yaml sets the
# repository, the stanza's data directory and the TLS server's certificate); the
# repository passphrase comes from the Docker secret, never from the compose file. The
# archive_command inherits this environment from the postmaster.
set -eu

if [ -n "${PGBACKREST_REPO1_TYPE:-}" ]; then
  secret=${PITR_PASSPHRASE_FILE:-/run/secrets/pitr_passphrase}
  if [ ! -r "$secret" ]; then
    echo "pitr-entrypoint: $secret is missing: create the passphrase (README, 'Point-in-time recovery')" >&2
    exit 1
  fi
  PGBACKREST_REPO1_CIPHER_PASS=$(cat "$secret")
  export PGBACKREST_REPO1_CIPHER_PASS
  stanza=${PITR_STANZA:-schoolhouse}
  # The TLS server, as postgres, restarted if it ever exits (the worker's backups need it).
  (
    while true; do
      gosu postgres pgbackrest server || true
      echo "pitr-entrypoint: pgbackrest server exited; restarting in 5 s" >&2
      sleep 5
    done
  ) &
  set -- "$@" \
    -c wal_level=replica \
    -c archive_mode=on \
    -c "archive_command=pgbackrest --stanza=$stanza archive-push %p" \
    -c "archive_timeout=${PITR_ARCHIVE_TIMEOUT:-60}"
fi

exec docker-entrypoint.sh "$@"
