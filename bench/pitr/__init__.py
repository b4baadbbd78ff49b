"""`python -m bench pitr`: point-in-time recovery with pgBackRest, measured side by side in one
run against the same work done by hand.

1. A throwaway PostgreSQL 15 cluster of the run's own (initdb as `postgres`, a free port on
   loopback, fsync on) holding the load benchmark's dataset, copied from the shared cluster
   with pg_dump and grown to about 1.7 GB with period attendance (`--extra-periods`); then
   archiving on, through pgBackRest as the platform configures it (`manage.py pitr setup`).
2. Full backups, A B B A: `manage.py backup_now --physical full` against
   `pgbackrest backup --type=full` with the platform's own configuration (the orchestration's
   overhead); then `--write-minutes` of write load (`writes.py`); then differential backups
   the same way; then `backup_now` (the logical pipeline) against `pg_dump -Fc`.
3. Restores of the same data: `restore_backup --to-time` (a new cluster, WAL replayed to a
   moment nine tenths into the write load, checked against the writes acknowledged before
   it), `restore_backup <run> --target-database` (the logical restore into a new database)
   and `createdb` + `pg_restore`.
4. RPO, twice: under the write load, then with a trickle of writes (`archive_timeout`, not
   full segments, decides what is archived); each time the server killed with SIGKILL when
   its newest archived WAL is about as old as it gets, its data directory taken away,
   `recover_server` to the latest WAL; the acknowledged transactions lost and their span.
5. Wall time and peak RSS of each command's process tree (`measure.py`), the load average
   and the other processes' CPU time meanwhile; results in bench/results/pitr-<stamp>/ and
   BENCHMARKS.md's "### Point-in-time recovery" block (`report.py`, against the issue's
   targets).
"""
