"""The documents settings, read by real child processes: storage chosen by environment,
bad values refused at start-up."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import PYTHON, REPO, subprocess_env

pytestmark = pytest.mark.unit

PRINT = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "storages": {k: v["BACKEND"] for k, v in s.STORAGES.items()},
    "options": {k: v.get("OPTIONS", {}) for k, v in s.STORAGES.items()},
    "handlers": s.FILE_UPLOAD_HANDLERS, "memory": s.FILE_UPLOAD_MAX_MEMORY_SIZE,
}, default=str))
"""


def _run(tmp_path, **env: str) -> subprocess.CompletedProcess:
    base = {
        "SCHOOLHOUSE_ENV_FILE": "/nonexistent",
        "SCHOOLHOUSE_VAR_DIR": str(tmp_path / "var"),
        "DEBUG": "true",
        "DATABASE_URL": None,
    }
    base.update(env)
    return subprocess.run(
        [PYTHON, "-c", PRINT],
        cwd=REPO,
        env=subprocess_env(**base),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_storage_is_chosen_by_environment(tmp_path) -> None:
    local = json.loads(_run(tmp_path).stdout.strip().splitlines()[-1])
    assert local["storages"]["documents"] == "django.core.files.storage.FileSystemStorage"
    assert "documents_replica" not in local["storages"]
    assert local["handlers"] == ["files.uploads.HashingTemporaryFileUploadHandler"]
    assert local["memory"] <= 64 * 1024

    s3 = json.loads(
        _run(
            tmp_path,
            DOCUMENTS_STORAGE="s3",
            DOCUMENTS_S3_BUCKET="district-docs",
            DOCUMENTS_S3_ENDPOINT_URL="https://minio.internal:9000",
            DOCUMENTS_S3_SSE="aws:kms",
            DOCUMENTS_S3_SSE_KMS_KEY_ID="alias/documents",
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert s3["storages"]["documents"] == "files.storage.DocumentS3Storage"
    options = s3["options"]["documents"]
    assert options["endpoint_url"] == "https://minio.internal:9000"
    assert options["object_parameters"] == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/documents",
    }
    assert options["file_overwrite"] is False and options["default_acl"] is None

    hybrid = json.loads(
        _run(
            tmp_path,
            DOCUMENTS_STORAGE="hybrid",
            DOCUMENTS_HYBRID_CLOUD="gcs",
            DOCUMENTS_GCS_BUCKET="district-docs",
            DOCUMENTS_GCS_KMS_KEY_NAME="projects/p/locations/l/keyRings/r/cryptoKeys/k",
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert hybrid["storages"]["documents"] == "django.core.files.storage.FileSystemStorage"
    assert hybrid["storages"]["documents_replica"] == "files.storage.DocumentGoogleCloudStorage"
    assert hybrid["options"]["documents_replica"]["kms_key_name"].endswith("cryptoKeys/k")


@pytest.mark.parametrize(
    "env,message",
    [
        ({"DOCUMENTS_STORAGE": "ftp"}, "DOCUMENTS_STORAGE must be"),
        ({"DOCUMENTS_STORAGE": "s3"}, "DOCUMENTS_S3_BUCKET is required"),
        ({"DOCUMENTS_STORAGE": "gcs"}, "DOCUMENTS_GCS_BUCKET is required"),
        (
            {"DOCUMENTS_STORAGE": "s3", "DOCUMENTS_S3_BUCKET": "b", "DOCUMENTS_S3_SSE": "rot13"},
            "DOCUMENTS_S3_SSE must be",
        ),
        ({"DOCUMENTS_ENCRYPTION_KEYSET": '{"key": []}'}, "not a Tink streaming-AEAD keyset"),
        ({"DOCUMENTS_URL_TTL": "99999999"}, "DOCUMENTS_URL_TTL must be"),
    ],
)
def test_bad_values_are_refused_at_start(tmp_path, env, message) -> None:
    out = _run(tmp_path, **env)
    assert out.returncode != 0
    assert message in out.stderr
