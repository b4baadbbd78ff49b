"""One entry point for the benchmarks: `python -m bench <name> [options]`.

load              the load benchmark (locust, gunicorn, cache on/off, saturation)
rls               the load benchmark's scenario and saturation with and without row-level
                  security, side by side in one run
soak              the staff scenario for a long while, with a backup and a verify inside
pitr              point-in-time recovery: pgBackRest backups and restores through the platform
                  against the same by hand, the logical pipeline, and the RPO (bench/pitr/)
backup            bench/backup_bench.py (backups)
sqlite-migration  bench/sqlite_migration.py (moving from SQLite to PostgreSQL)
upload-memory     bench/upload_memory.py (worker memory during a large upload)
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

SCRIPTS = {
    "backup": "backup_bench.py",
    "sqlite-migration": "sqlite_migration.py",
    "upload-memory": "upload_memory.py",
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] in {"-h", "--help"}:
        print(__doc__)
        return 0 if len(sys.argv) >= 2 else 2
    name, rest = sys.argv[1], sys.argv[2:]
    if name == "load":
        from bench.load.run import main as load_main

        return load_main(rest)
    if name == "rls":
        from bench.load.rls import main as rls_main

        return rls_main(rest)
    if name == "soak":
        from bench.soak import main as soak_main

        return soak_main(rest)
    if name == "pitr":
        from bench.pitr.run import main as pitr_main

        return pitr_main(rest)
    if name in SCRIPTS:
        path = Path(__file__).resolve().parent / SCRIPTS[name]
        sys.argv = [str(path), *rest]
        runpy.run_path(str(path), run_name="__main__")
        return 0
    print(f"unknown benchmark {name!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
