"""The streaming child (`backups.stream`) and the footprint of the backup processes: the
Django side never imports a cloud SDK for a local destination, the child never sets up
Django and imports boto3 only for an S3 destination, the child dies with its parent, and
errors come back as the exceptions the services already know."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from backups.crypto import AD_DATABASE, keyset_path
from backups.destinations import DestinationError, destination_spec
from backups.stream import StreamChild
from tests.helpers import REPO, child_database_url, subprocess_env

pytestmark = [pytest.mark.integration]

PY = str(REPO / ".venv" / "bin" / "python")
SDKS = {"boto3", "botocore", "s3transfer"}


def store(child: StreamChild, *, source: str, key: str, names: list[str]) -> dict:
    return child.call(
        "store",
        source={"kind": "file", "path": source},
        destinations=[destination_spec(name) for name in names],
        key=key,
        associated_data=AD_DATABASE.hex(),
        compress=True,
        zstd_level=1,
        zstd_threads=1,
        keyset=str(keyset_path()),
    )


def test_the_child_stores_without_django_and_imports_boto3_only_for_s3(
    clouds, settings, tmp_path
) -> None:
    source = tmp_path / "dump.bin"
    source.write_bytes(os.urandom(300_000) * 4)
    seen: list[int] = []
    with StreamChild() as child:
        stored = store(child, source=str(source), key="a/one.tink", names=["local"])
        modules = {name.split(".")[0] for name in child.call("modules")}
        assert "django" not in modules
        assert not modules & SDKS, "a local destination must not load a cloud SDK"
        assert not [m for m in child.call("modules") if m.startswith("google.cloud")]
        stored_s3 = child.call(
            "store",
            progress=seen.append,
            source={"kind": "file", "path": str(source)},
            destinations=[destination_spec("s3")],
            key="a/two.tink",
            associated_data=AD_DATABASE.hex(),
            compress=True,
            keyset=str(keyset_path()),
        )
        assert "boto3" in child.call("modules")
    assert stored["raw_size"] == stored_s3["raw_size"] == source.stat().st_size == sum(seen)
    assert (settings.BACKUP_LOCAL_DIR / "a" / "one.tink").stat().st_size == stored["stored_size"]
    assert "backups/a/two.tink" in clouds.s3_keys()


def test_child_errors_come_back_as_the_services_exceptions(local_backups) -> None:
    with StreamChild() as child:
        with pytest.raises(DestinationError, match="missing"):
            child.call("checksum", destination=destination_spec("local"), key="no/such")
        # An exception the parent has no class for keeps its name, as a BackupFailed.
        from backups.pipeline import BackupFailed

        with pytest.raises(BackupFailed) as raised:
            child.call(
                "store",
                source={"kind": "file", "path": "/nonexistent/dump"},
                destinations=[destination_spec("local")],
                key="x.tink",
                associated_data=AD_DATABASE.hex(),
                compress=False,
                keyset=str(keyset_path()),
            )
        assert type(raised.value).__name__ == "FileNotFoundError"
        # The child is still there for the next request, and left no partial file.
        assert child.call("modules")
    assert list(local_backups.rglob("*")) == []


def test_the_child_dies_with_its_parent(local_backups) -> None:
    script = (
        "import sys, time; from backups.stream import StreamChild; "
        "c = StreamChild().__enter__(); print(c.proc.pid, flush=True); time.sleep(120)"
    )
    parent = subprocess.Popen(
        [PY, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True, env=subprocess_env()
    )
    try:
        child_pid = int(parent.stdout.readline())
        assert psutil.pid_exists(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the streaming child outlived its parent")
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.django_db(transaction=True)
def test_backup_process_loads_no_cloud_sdk_for_a_local_destination(local_backups, settings):
    """The whole backup in a fresh process, as `backup_now` runs it: afterwards neither that
    process nor (see above) its streaming child has imported boto3 or google-cloud."""
    script = """
import json, sys, django
django.setup()
from backups.services import backup_database_run
run = backup_database_run()
print(json.dumps({"status": run.status, "error": run.error, "modules": sorted(sys.modules)}))
"""
    env = subprocess_env(
        DATABASE_URL=child_database_url(),
        DB_POOL="false",
        SCHOOLHOUSE_TESTING="true",
        BACKUP_KEYSET_PATH=str(settings.BACKUP_KEYSET_PATH),
        BACKUP_DESTINATIONS="local",
        BACKUP_LOCAL_DIR=str(local_backups),
    )
    out = subprocess.run(
        [PY, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["status"] == "succeeded", answer["error"]
    modules = set(answer["modules"])
    assert not {m.split(".")[0] for m in modules} & SDKS
    assert not [m for m in modules if m.startswith(("google.cloud", "storages.backends"))]


def test_files_storage_builds_the_cloud_backends_on_first_use() -> None:
    script = """
import json, sys, django
django.setup()
import files.services, files.storage as s
before = "boto3" in sys.modules or "google.cloud.storage" in sys.modules
cls = s.DocumentS3Storage
same = cls is s.DocumentS3Storage and cls.__module__ == "files.storage"
from storages.backends.s3 import S3Storage
print(json.dumps({"before": before, "same": same, "s3": issubclass(cls, S3Storage),
                  "gcs": "google.cloud.storage" in sys.modules}))
"""
    out = subprocess.run(
        [PY, "-c", script],
        cwd=REPO,
        env=subprocess_env(SCHOOLHOUSE_TESTING="true"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "before": False,
        "same": True,
        "s3": True,
        "gcs": False,
    }
