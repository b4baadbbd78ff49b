"""Real endpoints for the document stores: moto's S3 server and gcp-storage-emulator, each
started once per test process on a free loopback port, a fresh bucket per test; the local
disk in a per-test temporary folder. `backend` parametrizes a test over every mode."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from files.storage import DocumentStore, document_store
from tests.emulators import REGION, S3_KEY, S3_SECRET  # noqa: F401  (used below)


@pytest.fixture(scope="session")
def gcs_signing_key(tmp_path_factory) -> tuple[Path, Any]:
    """A service-account key made here, so V4 URLs are signed exactly as in production (the
    emulator cannot sign); returns the key file and its public key for verification."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "schoolhouse-test",
        "private_key_id": "test-key",
        "private_key": pem,
        "client_email": "documents@schoolhouse-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path_factory.mktemp("gcs") / "signer.json"
    path.write_text(json.dumps(info))
    return path, key.public_key()


@pytest.fixture(scope="session")
def encryption_keyset() -> str:
    from files.sealing import keyset_generate

    return keyset_generate()


@pytest.fixture(autouse=True)
def _documents_settings(settings, tmp_path, encryption_keyset) -> None:
    """Every test gets its own upload scratch folder and local store, and a known keyset."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads)
    settings.DOCUMENTS_ENCRYPTION_KEYSET = encryption_keyset
    settings.DOCUMENTS_SCANNER = ""
    settings.DOCUMENTS_X_ACCEL_REDIRECT_PREFIX = ""
    settings.STORAGES = {
        **{k: v for k, v in settings.STORAGES.items() if k != "documents_replica"},
        "documents": local_storage_config(tmp_path / "documents"),
    }


def local_storage_config(root: Path) -> dict[str, Any]:
    return {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(root), "base_url": None},
    }


def s3_storage_config(endpoint: str, bucket: str) -> dict[str, Any]:
    return {
        "BACKEND": "files.storage.DocumentS3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            "access_key": S3_KEY,
            "secret_key": S3_SECRET,
            "region_name": REGION,
            "location": "documents",
            "object_parameters": {"ServerSideEncryption": "AES256"},
            "default_acl": None,
            "file_overwrite": False,
            "querystring_expire": 300,
            "connect_timeout": 1,
            "read_timeout": 5,
            "max_attempts": 1,
            "addressing_style": "path",
        },
    }


def gcs_storage_config(endpoint: str, bucket: str, signer: Path) -> dict[str, Any]:
    return {
        "BACKEND": "files.storage.DocumentGoogleCloudStorage",
        "OPTIONS": {
            "bucket_name": bucket,
            "project_id": "schoolhouse-test",
            "api_endpoint": endpoint,
            "signing_credentials_file": str(signer),
            "location": "documents",
            "default_acl": None,
            "file_overwrite": False,
            "timeout": 5,
            "retry_deadline": 1,
        },
    }


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name=REGION,
    )


def gcs_client(endpoint: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="schoolhouse-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )


def unique_bucket(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@dataclass
class Backend:
    name: str
    tmp: Path
    bucket: str = ""
    endpoint: str = ""

    @property
    def store(self) -> DocumentStore:
        return document_store()

    def cloud_keys(self) -> set[str]:
        """Object keys in the cloud bucket (the replica in hybrid mode), via the raw client."""
        if self.name in ("s3", "hybrid"):
            page = s3_client(self.endpoint).list_objects_v2(Bucket=self.bucket)
            return {o["Key"].removeprefix("documents/") for o in page.get("Contents", [])}
        if self.name == "gcs":
            blobs = gcs_client(self.endpoint).list_blobs(self.bucket)
            return {b.name.removeprefix("documents/") for b in blobs}
        return set()

    def local_keys(self) -> set[str]:
        root = self.tmp / "documents"
        if not root.exists():
            return set()
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and ".incoming" not in p.parts
        }

    def stored_keys(self) -> set[str]:
        """Keys of every object this backend holds anywhere."""
        return self.cloud_keys() | self.local_keys()


def configure_backend(name: str, settings, tmp_path: Path, request) -> Backend:
    stores = dict(settings.STORAGES)
    stores.pop("documents_replica", None)
    backend = Backend(name=name, tmp=tmp_path)
    if name in ("s3", "hybrid"):
        backend.endpoint = request.getfixturevalue("moto_endpoint")
        backend.bucket = unique_bucket("docs")
        s3_client(backend.endpoint).create_bucket(Bucket=backend.bucket)
        cloud = s3_storage_config(backend.endpoint, backend.bucket)
    elif name == "gcs":
        backend.endpoint = request.getfixturevalue("gcs_endpoint")
        backend.bucket = unique_bucket("docs")
        gcs_client(backend.endpoint).create_bucket(backend.bucket)
        signer, _public = request.getfixturevalue("gcs_signing_key")
        cloud = gcs_storage_config(backend.endpoint, backend.bucket, signer)
    if name == "local":
        stores["documents"] = local_storage_config(tmp_path / "documents")
    elif name == "hybrid":
        stores["documents"] = local_storage_config(tmp_path / "documents")
        stores["documents_replica"] = cloud
    else:
        stores["documents"] = cloud
    settings.STORAGES = stores  # Django's setting_changed handler resets `storages`
    return backend


BACKENDS = [
    pytest.param("local", marks=pytest.mark.unit),
    pytest.param("s3", marks=pytest.mark.integration),
    pytest.param("gcs", marks=pytest.mark.integration),
    pytest.param("hybrid", marks=pytest.mark.integration),
]


@pytest.fixture(params=BACKENDS)
def backend(request, settings, tmp_path) -> Backend:
    return configure_backend(request.param, settings, tmp_path, request)
