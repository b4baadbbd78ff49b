"""Where document bytes live: one facade over the storages configured in `STORAGES`.

`STORAGES["documents"]` is the primary store: a local `FileSystemStorage`, django-storages'
S3 (AWS or an S3-compatible endpoint such as MinIO) or Google Cloud Storage. When
`STORAGES["documents_replica"]` is also present the deployment is *hybrid*: uploads land on
the local disk first (fast, and the request does not wait for the cloud), a Celery task copies
them to the replica, and reads fall back to the replica when the local copy is gone.

Keys are content addresses (`sha256/ab/cd/<sha256>`), so identical content is stored once and
no user-supplied name ever reaches a path. Local writes go to a scratch file in the same
filesystem and are renamed into place, so a crash never leaves a half-written object under a
real key. Sensitive content on the local disk is sealed with Tink (see `files.sealing`).
"""

from __future__ import annotations

import datetime
import errno
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.urls import reverse
from django.utils import timezone

from . import sealing

CHUNK = 1024 * 1024
INCOMING_DIR = ".incoming"  # scratch files of local writes, renamed into place when complete
LINK_SIGNING_NAMESPACE = "files.download"  # the signer salt: links sign nothing else


class StorageUnavailable(Exception):
    """The document store could not be reached or refused the operation."""


class ContentMissing(Exception):
    """No copy of the content can be found in any configured store."""


def content_key(*, sha256: str, sealed: bool) -> str:
    """The content address. Sealed and plain copies differ, so they never overwrite each other."""
    prefix = "sealed" if sealed else "sha256"
    return f"{prefix}/{sha256[:2]}/{sha256[2:4]}/{sha256}"


# ---------------------------------------------------------------------------------------------
# Backends: django-storages with the knobs we need set from simple options
#
# boto3 and google-cloud-storage cost about 30 MiB of memory and a quarter of a second to
# import, and every process that sets up Django imports this module (the admin imports the
# files services). So the two backend classes are built on first use: `STORAGES` names them
# as `files.storage.DocumentS3Storage` / `...DocumentGoogleCloudStorage`, and the module's
# `__getattr__` below creates each class, with its SDK, only when something asks for it. A
# process whose documents are on the local disk (or a backup to a local directory) never
# loads either SDK.
# ---------------------------------------------------------------------------------------------
class _DocumentS3Options:
    """S3 (or an S3-compatible endpoint) with bounded timeouts and retries.

    Extra options: `connect_timeout`, `read_timeout` and `max_attempts`, so an unreachable
    endpoint fails an upload within seconds with a clear error instead of hanging a worker.
    """

    def __init__(self, **options: Any) -> None:
        from botocore.config import Config

        connect_timeout = float(options.pop("connect_timeout", 5))
        read_timeout = float(options.pop("read_timeout", 60))
        max_attempts = int(options.pop("max_attempts", 3))
        addressing_style = options.pop("addressing_style", None) or "auto"
        options.setdefault(
            "client_config",
            Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": max_attempts, "mode": "standard"},
                signature_version="s3v4",
                s3={"addressing_style": addressing_style},
            ),
        )
        super().__init__(**options)  # type: ignore[call-arg]


class _DocumentGoogleCloudOptions:
    """Google Cloud Storage with explicit credentials, endpoint, deadlines and CMEK.

    Extra options:
    - `credentials_file`: a service-account JSON key (else Application Default Credentials);
    - `api_endpoint`: another endpoint (an emulator, or a private service connect address);
      without `credentials_file` the client is then anonymous;
    - `signing_credentials_file`: the key that signs V4 download URLs when the API client
      cannot sign (an emulator), defaults to `credentials_file`;
    - `kms_key_name`: customer-managed encryption key for new objects (Google encrypts with
      its own keys otherwise);
    - `timeout` and `retry_deadline` (seconds) bound each call and its retries.
    """

    # Provided by django-storages' GoogleCloudStorage, which this is mixed into.
    _client: Any
    credentials: Any
    project_id: Any
    bucket: Any
    blob_chunk_size: Any
    _normalize_name: Any

    def __init__(self, **options: Any) -> None:
        self.credentials_file = options.pop("credentials_file", "") or ""
        self.api_endpoint = options.pop("api_endpoint", "") or ""
        self.signing_credentials_file = options.pop("signing_credentials_file", "") or ""
        self.kms_key_name = options.pop("kms_key_name", "") or ""
        self.call_timeout = float(options.pop("timeout", 60))
        self.retry_deadline = float(options.pop("retry_deadline", 30))
        super().__init__(**options)  # type: ignore[call-arg]
        self._signing_credentials: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud.storage import Client

            credentials: Any = self.credentials
            if credentials is None and self.credentials_file:
                credentials = self._load_credentials(self.credentials_file)
                self.credentials = credentials
            client_options = {"api_endpoint": self.api_endpoint} if self.api_endpoint else None
            if credentials is None and self.api_endpoint:
                credentials = AnonymousCredentials()
            self._client = Client(
                project=self.project_id, credentials=credentials, client_options=client_options
            )
        return self._client

    @staticmethod
    def _load_credentials(path: str) -> Any:
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_file(
            path, scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
        )

    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_deadline(self.retry_deadline)

    def _save(self, name: str, content: Any) -> str:
        from storages.utils import clean_name

        cleaned = clean_name(name)
        full = self._normalize_name(cleaned)
        blob = self.bucket.blob(full, chunk_size=self.blob_chunk_size)
        if self.kms_key_name:
            blob.kms_key_name = self.kms_key_name
        content.seek(0)
        # No retry on the upload itself: a retried partial upload could duplicate work, and
        # content-addressed keys make the caller's retry safe instead.
        blob.upload_from_file(
            content,
            size=getattr(content, "size", None),
            content_type=getattr(content, "content_type", None) or "application/octet-stream",
            timeout=self.call_timeout,
            retry=None,
        )
        return str(cleaned)

    def exists(self, name: str) -> bool:
        from storages.utils import clean_name

        full = self._normalize_name(clean_name(name))
        return bool(self.bucket.get_blob(full, timeout=self.call_timeout, retry=self._retry()))

    def delete(self, name: str) -> None:
        from google.api_core.exceptions import NotFound
        from storages.utils import clean_name

        full = self._normalize_name(clean_name(name))
        try:
            self.bucket.delete_blob(full, timeout=self.call_timeout, retry=self._retry())
        except NotFound:
            pass

    def signing_credentials(self) -> Any:
        if self._signing_credentials is None and self.signing_credentials_file:
            self._signing_credentials = self._load_credentials(self.signing_credentials_file)
        return self._signing_credentials


def _s3_storage_base() -> type[Storage]:
    from storages.backends.s3 import S3Storage

    return S3Storage  # type: ignore[no-any-return]


def _gcs_storage_base() -> type[Storage]:
    from storages.backends.gcloud import GoogleCloudStorage

    return GoogleCloudStorage  # type: ignore[no-any-return]


_lazy_lock = threading.Lock()
_LAZY_BACKENDS = {
    "DocumentS3Storage": (_DocumentS3Options, _s3_storage_base),
    "DocumentGoogleCloudStorage": (_DocumentGoogleCloudOptions, _gcs_storage_base),
}


def __getattr__(name: str) -> Any:
    """`files.storage.DocumentS3Storage` and `...DocumentGoogleCloudStorage`, built (and
    their SDK imported) on first access, then kept as ordinary module attributes."""
    if name not in _LAZY_BACKENDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lazy_lock:  # one class per name, even when two threads ask at once
        if name not in globals():
            options, base = _LAZY_BACKENDS[name]
            globals()[name] = type(
                name, (options, base()), {"__module__": __name__, "__doc__": options.__doc__}
            )
    return globals()[name]


def _loaded_instance(storage: Storage, module: str, name: str) -> bool:
    """isinstance against a django-storages backend without importing its SDK: when the
    module was never imported, no instance of its class can exist."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(storage, getattr(loaded, name))


def _is_s3(storage: Storage) -> bool:
    return _loaded_instance(storage, "storages.backends.s3", "S3Storage")


def _is_gcs(storage: Storage) -> bool:
    return _loaded_instance(storage, "storages.backends.gcloud", "GoogleCloudStorage")


# ---------------------------------------------------------------------------------------------
# The facade the services use
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DownloadLink:
    url: str
    expires_at: datetime.datetime
    via: str  # "local", "s3" or "gcs": which store answers the link


def _kind(storage: Storage) -> str:
    if isinstance(storage, FileSystemStorage):
        return "local"
    if _is_s3(storage):
        return "s3"
    if _is_gcs(storage):
        return "gcs"
    raise TypeError(f"Unsupported document storage {type(storage).__name__}")


def _cloud_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the store is unreachable or refused", per client library."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:  # pragma: no cover - botocore is a dependency
        pass
    try:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
        from requests.exceptions import RequestException

        errors += [GoogleAPIError, GoogleAuthError, RequestException]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


class DocumentStore:
    """Put, read, sign and list document content in the configured stores."""

    def __init__(self) -> None:
        self.primary: Storage = storages["documents"]
        self.replica: Storage | None = (
            storages["documents_replica"] if "documents_replica" in settings.STORAGES else None
        )
        self.kind = _kind(self.primary)
        if self.replica is not None and self.kind != "local":
            raise TypeError("Hybrid mode keeps the primary copy on the local disk.")
        self.replica_kind = _kind(self.replica) if self.replica is not None else None
        self.errors = _cloud_errors()

    def _local(self) -> FileSystemStorage:
        if not isinstance(self.primary, FileSystemStorage):
            raise TypeError("The primary document store is not the local disk.")
        return self.primary

    @property
    def mode(self) -> str:
        return "hybrid" if self.replica is not None else self.kind

    def seals(self, *, sensitive: bool) -> bool:
        """Sensitive content is sealed wherever it sits on our own disk."""
        return sensitive and self.kind == "local"

    # -- writing --------------------------------------------------------------------------
    def put(self, *, key: str, source: File, sealed: bool, content_type: str) -> bool:
        """Store `source` under `key`. False when an object was already there (nothing written).

        Raises StorageUnavailable with a message a user can read when the store fails; in
        that case nothing is left under `key`.
        """
        try:
            if self.exists(key):
                return False
            if self.kind == "local":
                self._put_local(key=key, source=source, sealed=sealed)
            else:
                self._put_cloud(self.primary, key=key, source=source, content_type=content_type)
            return True
        except sealing.SealingUnavailable:
            raise
        except self.errors as exc:
            raise StorageUnavailable(self._describe(exc)) from exc

    def _put_local(self, *, key: str, source: File, sealed: bool) -> None:
        local = self._local()
        final = Path(local.path(key))
        scratch_dir = Path(local.location) / INCOMING_DIR
        scratch_dir.mkdir(parents=True, exist_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        scratch = scratch_dir / uuid.uuid4().hex
        try:
            with open(scratch, "xb") as out:
                source.seek(0)
                if sealed:
                    sealing.encrypt_stream(source=source, destination=out, key=key)
                else:
                    while chunk := source.read(CHUNK):
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(scratch, 0o640)
            os.replace(scratch, final)  # atomic: the key holds all of the content or nothing
        finally:
            scratch.unlink(missing_ok=True)

    @staticmethod
    def _put_cloud(storage: Storage, *, key: str, source: IO[bytes], content_type: str) -> None:
        wrapped = File(source, name=key)
        wrapped.content_type = content_type  # type: ignore[attr-defined]
        name = storage.save(key, wrapped)
        if name != key:
            # `file_overwrite: False` picked another name because a racing writer just stored
            # the same content: keep theirs, drop ours.
            storage.delete(name)

    # -- reading --------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return bool(self.primary.exists(key))

    def local_path(self, key: str) -> Path | None:
        if self.kind != "local":
            return None
        path = Path(self._local().path(key))
        return path if path.is_file() else None

    def chunks(self, *, key: str, sealed: bool) -> Iterator[bytes]:
        """The plaintext content, chunk by chunk, from wherever a copy is found."""
        path = self.local_path(key)
        if path is not None:
            if sealed:
                yield from sealing.decrypt_chunks(source=open(path, "rb"), key=key)
            else:
                with open(path, "rb") as handle:
                    while chunk := handle.read(CHUNK):
                        yield chunk
            return
        storage = self.primary if self.kind != "local" else self.replica
        if storage is None or (self.kind == "local" and not storage.exists(key)):
            raise ContentMissing(key)
        with storage.open(key, "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    # -- replication (hybrid) -------------------------------------------------------------
    def replicate(self, *, key: str, sealed: bool, content_type: str) -> bool:
        """Copy the local content to the replica, in plaintext (the cloud encrypts it server
        side, and signed URLs must serve the real bytes). False when already there."""
        if self.replica is None:
            return False
        try:
            if self.replica.exists(key):
                return False
            path = self.local_path(key)
            if path is None:
                raise ContentMissing(key)
            if not sealed:
                with open(path, "rb") as handle:
                    self._put_cloud(self.replica, key=key, source=handle, content_type=content_type)
                return True
            # Sealed locally: decrypt through a scratch file in the same protected directory,
            # never into memory, and remove it whatever happens.
            scratch_dir = Path(self._local().path(INCOMING_DIR))
            scratch_dir.mkdir(parents=True, exist_ok=True)
            scratch = scratch_dir / f"replica-{uuid.uuid4().hex}"
            try:
                with open(scratch, "w+b") as plain:
                    os.chmod(scratch, 0o600)
                    for chunk in self.chunks(key=key, sealed=True):
                        plain.write(chunk)
                    plain.flush()
                    plain.seek(0)
                    self._put_cloud(self.replica, key=key, source=plain, content_type=content_type)
            finally:
                scratch.unlink(missing_ok=True)
            return True
        except self.errors as exc:
            raise StorageUnavailable(self._describe(exc)) from exc

    # -- deleting -------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        try:
            self.primary.delete(key)
            if self.replica is not None:
                self.replica.delete(key)
        except self.errors as exc:
            raise StorageUnavailable(self._describe(exc)) from exc

    # -- listing (orphan report) ----------------------------------------------------------
    def keys(self, storage: Storage | None = None) -> Iterator[str]:
        """Every object key under the content prefixes of one store (primary by default)."""
        storage = storage or self.primary
        for prefix in ("sha256", "sealed"):
            yield from self._walk(storage, prefix)

    def _walk(self, storage: Storage, prefix: str) -> Iterator[str]:
        if self.kind == "local" and storage is self.primary and not storage.exists(prefix):
            return
        dirs, names = storage.listdir(prefix)
        for name in names:
            yield f"{prefix}/{name}"
        for sub in dirs:
            yield from self._walk(storage, f"{prefix}/{sub}")

    # -- download links -------------------------------------------------------------------
    def link(
        self,
        *,
        key: str,
        sealed: bool,
        version_id: int,
        school_id: int,
        user_id: int,
        filename: str,
        content_type: str,
    ) -> DownloadLink:
        """A short-lived URL for the content: Django-signed for the local disk, presigned for
        S3, V4-signed for GCS. In hybrid mode the cloud copy answers once the local copy is
        gone."""
        ttl = int(settings.DOCUMENTS_URL_TTL)
        expires_at = timezone.now() + datetime.timedelta(seconds=ttl)
        try:
            if self.kind == "local" and self.local_path(key) is not None:
                token = signing.dumps(
                    {"v": version_id, "s": school_id, "u": user_id}, salt=LINK_SIGNING_NAMESPACE
                )
                url = f"{reverse('files:serve')}?{urlencode({'t': token})}"
                return DownloadLink(url=url, expires_at=expires_at, via="local")
            storage = self.primary if self.kind != "local" else self.replica
            if storage is None or (self.kind == "local" and not storage.exists(key)):
                raise ContentMissing(key)
            url = cloud_url(storage, key=key, filename=filename, content_type=content_type, ttl=ttl)
            return DownloadLink(url=url, expires_at=expires_at, via=_kind(storage))
        except self.errors as exc:
            raise StorageUnavailable(self._describe(exc)) from exc

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # Waiting will not help here: the operator must free space, so say so.
            return (
                f"The document store ({self.mode}) is full: no space left on its disk. Nothing "
                "was saved; please tell your administrator."
            )
        return (
            f"The document store ({self.mode}) could not be reached or refused the request "
            f"({type(exc).__name__}). Nothing was saved; please try again in a few minutes."
        )


def attachment_disposition(filename: str) -> str:
    from django.utils.http import content_disposition_header

    return str(content_disposition_header(as_attachment=True, filename=filename))


def cloud_url(storage: Storage, *, key: str, filename: str, content_type: str, ttl: int) -> str:
    """A presigned (S3) or V4-signed (GCS) GET URL that downloads under the original name."""
    disposition = attachment_disposition(filename)
    cloud: Any = storage  # django-storages' url() takes more arguments than Storage.url()
    if _is_s3(storage):
        return str(
            cloud.url(
                key,
                parameters={
                    "ResponseContentDisposition": disposition,
                    "ResponseContentType": content_type,
                },
                expire=ttl,
            )
        )
    if _is_gcs(storage):
        params: dict[str, Any] = {
            "expiration": datetime.timedelta(seconds=ttl),
            "response_disposition": disposition,
            "response_type": content_type,
            "version": "v4",
        }
        if isinstance(storage, _DocumentGoogleCloudOptions):
            signer = storage.signing_credentials()
            if signer is not None:
                params["credentials"] = signer
            if storage.api_endpoint:
                params["api_access_endpoint"] = storage.api_endpoint
        return str(cloud.url(key, parameters=params))
    raise TypeError(f"{type(storage).__name__} has no signed URLs")


def token_read(token: str) -> dict[str, int]:
    """The payload of a local download token; raises signing.BadSignature (or its subclass
    SignatureExpired) when tampered with or older than DOCUMENTS_URL_TTL."""
    data = signing.loads(
        token, salt=LINK_SIGNING_NAMESPACE, max_age=int(settings.DOCUMENTS_URL_TTL)
    )
    if not isinstance(data, dict) or not {"v", "s", "u"} <= set(data):
        raise signing.BadSignature("Malformed download token")
    return {k: int(data[k]) for k in ("v", "s", "u")}


def document_store() -> DocumentStore:
    """The store as configured now (tests switch STORAGES; Django resets `storages` then)."""
    return DocumentStore()
