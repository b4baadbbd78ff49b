"""Point-in-time recovery into object stores: the real pgBackRest archives the WAL of a cluster
of the test's own, and takes and restores its backups, in a bucket on moto's S3 server and on
gcp-storage-emulator, each reached through a TLS front (pgBackRest speaks only TLS to them).
What lands in the buckets is encrypted. One cluster for the module: each test points
PITR_REPOS at a store of its own (a new bucket) and runs `pitr setup` as an operator moving
the repository would.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backups.conftest import gcs_client, s3_client
from tests.backups.pitr import PitrPlatform, add_students, available, count, pitr_platform, restore
from tests.backups.tls_front import (
    TlsFront,
    nginx_available,
    pitr_gcs_env,
    pitr_s3_env,
    tls_front,
)

pytestmark = [
    pytest.mark.skipif(
        bool(available() or nginx_available()), reason=available() or nginx_available() or "-"
    ),
    pytest.mark.xdist_group(name="pitr-objects"),
    pytest.mark.timeout(900),
    pytest.mark.integration,
]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@pytest.fixture(scope="module")
def s3_front(moto_endpoint: str) -> Iterator[TlsFront]:
    with tls_front(moto_endpoint) as front:
        yield front


@pytest.fixture(scope="module")
def gcs_front(gcs_endpoint: str) -> Iterator[TlsFront]:
    with tls_front(gcs_endpoint) as front:
        yield front


@pytest.fixture(scope="module")
def platform() -> Iterator[PitrPlatform]:
    with pitr_platform() as p:
        yield p


def new_s3_bucket(moto_endpoint: str) -> str:
    bucket = f"pitr-{uuid.uuid4().hex[:12]}"
    s3_client(moto_endpoint).create_bucket(Bucket=bucket)
    return bucket


def s3_objects(moto_endpoint: str, bucket: str) -> dict[str, bytes]:
    client = s3_client(moto_endpoint)
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def gcs_objects(gcs_endpoint: str, bucket: str) -> dict[str, bytes]:
    client = gcs_client(gcs_endpoint)
    # A listed blob downloads from its stored mediaLink, which the emulator wrote with the
    # Host its uploader sent (the front's, without a port): fetch by name instead.
    names = [b.name for b in client.list_blobs(bucket)]
    return {name: client.bucket(bucket).blob(name).download_as_bytes() for name in names}


def newest_physical_run(p: PitrPlatform) -> dict[str, Any]:
    return json.loads(
        p.shell(
            "import json; from backups.models import BackupRun; "
            "r = BackupRun.objects.physical().latest('started_at'); "
            "print(json.dumps(dict(status=r.status, label=r.label, type=r.backup_type, "
            "size=r.raw_size, stored=r.stored_size, dest=r.destinations, "
            "seconds=r.duration.total_seconds())))"
        ).splitlines()[-1]
    )


def assert_encrypted(objects: dict[str, bytes]) -> None:
    """Every object is ciphertext: none opens with zstd's magic, none holds a table's name
    (the manifests list every relation file, the WAL every row written)."""
    assert objects
    for key, body in objects.items():
        assert not body.startswith(ZSTD_MAGIC), key
        assert b"students_student" not in body and b"pg_class" not in body, key


def backup_and_restore(p: PitrPlatform, store: str, prefix: str) -> None:
    """`pitr setup`, a full backup recorded as confirmed in the store's repository, rows
    written after it, and a restore to a moment between them into a new cluster."""
    out = p.manage("pitr", "setup").stdout
    assert "archives its WAL through pgBackRest" in out
    assert f"ready in {store}" in out
    done = p.manage("backup_now", "--physical", "full")
    assert "Physical backup #" in done.stdout and "(Full," in done.stdout, done.stdout
    run = newest_physical_run(p)
    assert run["status"] == "succeeded" and run["type"] == "full"
    assert run["size"] > run["stored"] > 0
    assert run["dest"] == [
        {"name": store, "repo": "repo1", "label": run["label"], "confirmed": True}
    ]
    status = json.loads(p.manage("pitr", "status", "--json").stdout)
    assert status["repository_error"] == ""
    assert {"label": run["label"], "type": "full", "repo": 1} in status["sets"]

    add_students(p, f"{prefix}A", 25)
    time.sleep(1.2)
    moment = add_students(p, f"{prefix}B", 15)
    time.sleep(1.2)
    add_students(p, f"{prefix}C", 5)  # after the moment: not restored

    done = restore(p, "--to-time", moment.isoformat())
    assert f"from backup {run['label']}" in done.stdout, done.stdout + done.stderr
    port = int(done.stdout.split("127.0.0.1:")[1].split(".")[0])
    assert count(p, f"{prefix}A", port) == 25
    assert count(p, f"{prefix}B", port) == 15
    assert count(p, f"{prefix}C", port) == 0
    restored = done.stdout.split("The restored cluster runs in ")[1].split(" on ")[0]
    p.ctl("-m", "fast", "stop", data=Path(restored))
    # The run's own figures (the backup run's duration; the restore as the command timed it,
    # from the repository to a promoted cluster), read with -s.
    figures = {
        "backup_seconds": run["seconds"],
        "restore_seconds": float(done.stdout.split(" s: last transaction")[0].rsplit(" in ", 1)[1]),
        "database_bytes": run["size"],
        "stored_bytes": run["stored"],
    }
    print(f"{store}: {figures}")


def test_s3_repository_archives_backs_up_and_restores_to_a_moment(
    platform: PitrPlatform, s3_front: TlsFront, moto_endpoint: str
) -> None:
    bucket = new_s3_bucket(moto_endpoint)
    platform.extra_env = {"PITR_REPOS": "s3", **pitr_s3_env(s3_front, bucket)}
    backup_and_restore(platform, "s3", "S3")
    # The keys are in the secrets file only; without a key, the instance's role is used.
    conf = (platform.root / "conf" / "pgbackrest.conf").read_text()
    assert f"repo1-storage-port={s3_front.port}" in conf and "testing-secret" not in conf
    assert (
        "repo1-s3-key-secret=testing-secret"
        in (platform.root / "conf" / "conf.d" / "secrets.conf").read_text()
    )
    assert "repo1-s3-key-type=auto" in platform.manage("pitr", "config", PITR_S3_KEY="").stdout
    objects = s3_objects(moto_endpoint, bucket)
    assert "pgbackrest/archive/schoolhouse/archive.info" in objects
    assert any(k.startswith("pgbackrest/backup/schoolhouse/") for k in objects)
    assert any("/pg_data/" in k or "/bundle/" in k for k in objects)
    assert_encrypted(objects)


def test_gcs_repository_archives_backs_up_and_restores_to_a_moment(
    platform: PitrPlatform, gcs_front: TlsFront, gcs_endpoint: str
) -> None:
    bucket = f"pitr-{uuid.uuid4().hex[:12]}"
    gcs_client(gcs_endpoint).create_bucket(bucket)
    platform.extra_env = {"PITR_REPOS": "gcs", **pitr_gcs_env(gcs_front, bucket)}
    backup_and_restore(platform, "gcs", "GC")
    objects = gcs_objects(gcs_endpoint, bucket)
    assert "pgbackrest/archive/schoolhouse/archive.info" in objects
    assert any(k.startswith("pgbackrest/backup/schoolhouse/") for k in objects)
    assert_encrypted(objects)


def test_a_local_and_an_s3_repository_each_get_the_backup_and_the_wal(
    platform: PitrPlatform, s3_front: TlsFront, moto_endpoint: str
) -> None:
    bucket = new_s3_bucket(moto_endpoint)
    platform.extra_env = {"PITR_REPOS": "local,s3", **pitr_s3_env(s3_front, bucket)}
    out = platform.manage("pitr", "setup").stdout
    assert "ready in local, s3" in out and "archives its WAL through pgBackRest" in out
    platform.manage("backup_now", "--physical", "full")
    run = newest_physical_run(platform)
    assert run["status"] == "succeeded"
    assert run["dest"] == [
        {"name": "local", "repo": "repo1", "label": run["dest"][0]["label"], "confirmed": True},
        {"name": "s3", "repo": "repo2", "label": run["dest"][1]["label"], "confirmed": True},
    ]
    status = json.loads(platform.manage("pitr", "status", "--json").stdout)
    assert {(s["label"], s["repo"]) for s in status["sets"]} >= {
        (run["dest"][0]["label"], 1),
        (run["dest"][1]["label"], 2),
    }
    # A segment closed now reaches both repositories (archive-push writes to every one).
    add_students(platform, "TWO", 3)
    segment = platform.psql("SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + 60
    while platform.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
        assert time.monotonic() < deadline, "the closed segment was not archived"
        time.sleep(0.5)
    local = {f.name.split("-")[0] for f in (platform.root / "repo").rglob(f"{segment}-*")}
    assert local == {segment}
    objects = s3_objects(moto_endpoint, bucket)
    assert any(k.rsplit("/", 1)[-1].startswith(f"{segment}-") for k in objects)
    assert_encrypted(objects)
