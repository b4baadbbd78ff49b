"""Where backup objects go: a local directory, an S3 bucket, a GCS bucket.

Every destination writes an object so that it is either complete under its final name or not
there at all: a local file is written as `<name>.partial-<pid>` and renamed; S3 uses a
multipart upload that is completed or aborted; GCS uses a resumable upload that is finalized
only on commit. Memory stays bounded by one part buffer (S3) or one chunk (GCS) per
destination, whatever the object's size.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, Protocol

logger = logging.getLogger(__name__)

READ_CHUNK = 1 << 20


class DestinationError(Exception):
    """A destination refused a write, a read or a delete."""


class ObjectWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self) -> None:
        """Make the object visible under its final name; raises if anything failed."""

    def abort(self) -> None:
        """Remove everything written so far; never raises."""


class Destination(Protocol):
    name: str

    def open_writer(self, key: str) -> ObjectWriter: ...

    def open_reader(self, key: str) -> BinaryIO: ...

    def size(self, key: str) -> int | None: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> Iterator[tuple[str, int]]: ...

    def remove_partials(self, key: str) -> int:
        """Delete what a writer that died left behind for `key`; returns how many."""

    def remove_stale_partials(self, older_than: float) -> int:
        """Delete every unfinished write older than `older_than` seconds (the reaper calls
        it only while no backup runs)."""

    def describe(self) -> str: ...


# ---------------------------------------------------------------------------------------------
# Local directory
# ---------------------------------------------------------------------------------------------
class _LocalWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
        self._fh: BinaryIO | None = open(self.partial, "xb")  # noqa: SIM115

    def write(self, data: bytes) -> None:
        if self._fh is None:
            raise DestinationError(f"{self.path}: write after commit or abort")
        self._fh.write(data)

    def commit(self) -> None:
        if self._fh is None:
            raise DestinationError(f"{self.path}: commit after commit or abort")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        if self.path.exists():
            raise DestinationError(f"{self.path} already exists; backups never overwrite.")
        os.replace(self.partial, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.partial.unlink(missing_ok=True)


@dataclass
class LocalDestination:
    root: Path
    name: str = "local"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise DestinationError(f"Object key {key!r} leaves the backup directory.")
        return path

    def open_writer(self, key: str) -> ObjectWriter:
        return _LocalWriter(self._path(key))

    def open_reader(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise DestinationError(f"{self.name}: object {key} is missing.") from None

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        base = self._path(prefix) if prefix else self.root.resolve()
        if not base.exists():
            return
        root = self.root.resolve()
        for dirpath, _dirs, files in os.walk(base):
            for file in files:
                if ".partial-" in file:
                    continue
                full = Path(dirpath) / file
                yield str(full.relative_to(root)), full.stat().st_size

    def remove_partials(self, key: str) -> int:
        path = self._path(key)
        removed = 0
        if path.parent.exists():
            for partial in path.parent.glob(f"{path.name}.partial-*"):
                partial.unlink(missing_ok=True)
                removed += 1
        return removed

    def remove_stale_partials(self, older_than: float) -> int:
        import time

        removed = 0
        if self.root.exists():
            for partial in self.root.rglob("*.partial-*"):
                if time.time() - partial.stat().st_mtime > older_than:
                    partial.unlink(missing_ok=True)
                    removed += 1
        return removed

    def describe(self) -> str:
        return f"local directory {self.root}"


# ---------------------------------------------------------------------------------------------
# S3 (or any S3-compatible store)
# ---------------------------------------------------------------------------------------------
class _S3Writer:
    """A multipart upload. A background thread sends each part while the pipeline fills the
    next one, so the dump keeps flowing; the memory is exactly two parts: the one being
    filled (in place, never copied) and the one being sent. When the thread has not finished
    sending by the time the next part is full, the writer waits for it."""

    def __init__(self, client: Any, bucket: str, key: str, part_size: int) -> None:
        self.client, self.bucket, self.key, self.part_size = client, bucket, key, part_size
        answer = client.create_multipart_upload(Bucket=bucket, Key=key)
        if not answer.get("UploadId"):
            # An endpoint that dies while answering can hand back a reply without the id.
            raise DestinationError(
                f"S3 endpoint {client.meta.endpoint_url} did not start the multipart upload of "
                f"s3://{bucket}/{key} (no UploadId in its answer)."
            )
        self.upload_id: str | None = answer["UploadId"]
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._queue: queue.Queue[tuple[int, bytearray] | None] = queue.Queue()
        self._sending = threading.Semaphore(1)  # held while a part is queued or in flight
        self._error: BaseException | None = None
        self._sent = 0
        self._thread = threading.Thread(target=self._upload_loop, daemon=True)
        self._thread.start()

    def _upload_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            number, body = item
            try:
                if self._error is None:  # after a failure, drain without uploading
                    answer = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=self.key,
                        UploadId=self.upload_id,
                        PartNumber=number,
                        Body=body,  # a bytearray: botocore sends it as is
                    )
                    self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            except BaseException as exc:  # reported to the writer's next call
                self._error = exc
            finally:
                del body, item
                self._sending.release()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self.part_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) >= self.part_size:
                self._enqueue()

    def _enqueue(self) -> None:
        if self._error is not None:
            raise DestinationError(f"s3: uploading {self.key} failed: {self._error}")
        self._sending.acquire()  # the previous part has left: its buffer is free
        self._sent += 1
        body, self._buffer = self._buffer, bytearray()
        self._queue.put((self._sent, body))

    def commit(self) -> None:
        if self._buffer or self._sent == 0:
            self._enqueue()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise DestinationError(f"s3: uploading {self.key} failed: {self._error}")
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])},
        )
        self.upload_id = None

    def abort(self) -> None:
        self._error = self._error or DestinationError("aborted")
        self._queue.put(None)  # the thread finishes the part in flight (if any), then stops
        self._thread.join(timeout=60)
        if self.upload_id is not None:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                )
            except Exception:  # noqa: BLE001 - abort is best effort; the reaper retries
                logger.warning("s3: could not abort the upload of %s", self.key, exc_info=True)
            self.upload_id = None


class _S3Reader(io.RawIOBase):
    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return self._body.read(None if size is None or size < 0 else size)

    def close(self) -> None:
        self._body.close()
        super().close()


@dataclass
class S3Destination:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    part_size: int = 8 << 20
    name: str = "s3"

    @property
    def client(self) -> Any:
        return _s3_client(
            self.endpoint_url, self.region, self.access_key_id, self.secret_access_key
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def open_writer(self, key: str) -> ObjectWriter:
        return _S3Writer(self.client, self.bucket, self._key(key), self.part_size)

    def open_reader(self, key: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            raise DestinationError(f"s3: cannot read {self._key(key)}: {exc}") from exc
        return io.BufferedReader(_S3Reader(body), buffer_size=READ_CHUNK)  # type: ignore[return-value]

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return int(
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix) :], int(item["Size"])

    def remove_partials(self, key: str) -> int:
        answer = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self._key(key))
        removed = 0
        for upload in answer.get("Uploads", []):
            if upload["Key"] == self._key(key):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                removed += 1
        return removed

    def remove_stale_partials(self, older_than: float) -> int:
        import datetime

        limit = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(seconds=older_than)
        answer = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix)
        removed = 0
        for upload in answer.get("Uploads", []):
            if upload["Initiated"] < limit:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                removed += 1
        return removed

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3 bucket {self.bucket}/{self.prefix}{where}"


@cache
def _s3_client(
    endpoint_url: str | None, region: str | None, key_id: str | None, secret: str | None
) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        # S3 emulators and MinIO answer path-style requests; AWS accepts both.
        s3={"addressing_style": "path"} if endpoint_url else {},
        # Checksums of our own (sha256 of the object) are re-read after upload; the SDK's
        # default CRC trailers are not understood by every S3-compatible store.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        aws_access_key_id=key_id or None,
        aws_secret_access_key=secret or None,
        config=config,
    )


class BackgroundWriter:
    """Runs another writer's blocking writes in a thread, with at most `depth` chunks waiting,
    so one slow destination does not stall the dump for the others any longer than needed."""

    def __init__(self, inner: ObjectWriter, depth: int = 4) -> None:
        self.inner = inner
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.inner.write(item)
                except BaseException as exc:  # reported to the next write or commit
                    self._error = exc

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise DestinationError(str(self._error)) from self._error
        self._queue.put(data)

    def commit(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise DestinationError(str(self._error)) from self._error
        self.inner.commit()

    def abort(self) -> None:
        self._error = self._error or DestinationError("aborted")
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._queue.put(None)
        self._thread.join(timeout=60)
        self.inner.abort()


# ---------------------------------------------------------------------------------------------
# Google Cloud Storage
# ---------------------------------------------------------------------------------------------
class _GCSWriter:
    """A resumable upload (`blob.open("wb")`): the object exists only once `close()` has sent
    the last chunk, so an aborted writer leaves no object behind."""

    def __init__(self, blob: Any, chunk_size: int) -> None:
        self.blob = blob
        # if_generation_match=0: create only, never overwrite an existing object.
        self._writer = blob.open("wb", chunk_size=chunk_size, if_generation_match=0)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def commit(self) -> None:
        try:
            self._writer.close()
        except Exception as exc:
            raise DestinationError(f"gcs: finishing {self.blob.name} failed: {exc}") from exc

    def abort(self) -> None:
        # Cancel the resumable session (a DELETE on its URL) so nothing is finalized later;
        # Google expires abandoned sessions after a week in any case.
        upload = getattr(self._writer, "_upload_and_transport", None)
        if upload:
            try:
                upload[1].request("DELETE", upload[0].resumable_url, timeout=10)
            except Exception:  # noqa: BLE001 - best effort
                logger.info("gcs: could not cancel the upload session of %s", self.blob.name)
        try:
            self.blob.delete()
        except Exception:  # noqa: BLE001, S110 - usually "not found": nothing was finalized
            pass


@dataclass
class GCSDestination:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    project: str | None = None
    chunk_size: int = 8 << 20
    name: str = "gcs"

    @property
    def _bucket(self) -> Any:
        return _gcs_client(self.endpoint_url, self.project).bucket(self.bucket)

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def open_writer(self, key: str) -> ObjectWriter:
        # The GCS client uploads each chunk synchronously; a thread keeps the dump flowing.
        return BackgroundWriter(_GCSWriter(self._bucket.blob(self._key(key)), self.chunk_size))

    def open_reader(self, key: str) -> BinaryIO:
        blob = self._bucket.blob(self._key(key))
        try:
            return blob.open("rb", chunk_size=READ_CHUNK * 8)  # type: ignore[no-any-return]
        except Exception as exc:
            raise DestinationError(f"gcs: cannot read {self._key(key)}: {exc}") from exc

    def size(self, key: str) -> int | None:
        blob = self._bucket.get_blob(self._key(key))
        return None if blob is None else int(blob.size)

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self._bucket.blob(self._key(key)).delete()
        except NotFound:
            pass

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        for blob in self._bucket.list_blobs(prefix=self._key(prefix)):
            yield blob.name[len(self.prefix) :], int(blob.size)

    def remove_partials(self, key: str) -> int:
        # An unfinished resumable upload is not an object: there is nothing to list or delete.
        return 0

    def remove_stale_partials(self, older_than: float) -> int:
        return 0  # Google expires unfinished resumable sessions after a week

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"GCS bucket {self.bucket}/{self.prefix}{where}"


@cache
def _gcs_client(endpoint_url: str | None, project: str | None) -> Any:
    from google.cloud import storage

    if endpoint_url:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project or "schoolhouse",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint_url},
        )
    return storage.Client(project=project or None)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
def destination_spec(name: str) -> dict[str, Any]:
    """The configuration of destination `name` from settings, as plain JSON-able values: what
    the streaming child process (backups.stream, which does not set up Django) is given."""
    # Imported here, not at the top: this module is used by that child without Django.
    from django.conf import settings

    if name == "local":
        return {"name": "local", "root": str(settings.BACKUP_LOCAL_DIR)}
    if name == "s3":
        return {
            "name": "s3",
            "bucket": settings.BACKUP_S3_BUCKET,
            "prefix": settings.BACKUP_S3_PREFIX,
            "endpoint_url": settings.BACKUP_S3_ENDPOINT_URL or None,
            "region": settings.BACKUP_S3_REGION or None,
            "access_key_id": settings.BACKUP_S3_ACCESS_KEY_ID or None,
            "secret_access_key": settings.BACKUP_S3_SECRET_ACCESS_KEY or None,
            "part_size": settings.BACKUP_S3_PART_SIZE,
        }
    if name == "gcs":
        return {
            "name": "gcs",
            "bucket": settings.BACKUP_GCS_BUCKET,
            "prefix": settings.BACKUP_GCS_PREFIX,
            "endpoint_url": settings.BACKUP_GCS_ENDPOINT_URL or None,
            "project": settings.BACKUP_GCS_PROJECT or None,
            "chunk_size": settings.BACKUP_GCS_CHUNK_SIZE,
        }
    raise DestinationError(f"Unknown backup destination {name!r}; use local, s3 or gcs.")


def destination_from_spec(spec: dict[str, Any]) -> Destination:
    """The destination a `destination_spec` describes. Building one imports no cloud SDK:
    boto3 or google-cloud-storage is imported on the first request to that destination."""
    options = {k: v for k, v in spec.items() if k != "name"}
    if spec["name"] == "local":
        return LocalDestination(root=Path(options["root"]))
    if spec["name"] == "s3":
        return S3Destination(**options)
    if spec["name"] == "gcs":
        return GCSDestination(**options)
    raise DestinationError(f"Unknown backup destination {spec['name']!r}; use local, s3 or gcs.")


def destination_get(name: str) -> Destination:
    """The destination called `name`, configured from settings."""
    return destination_from_spec(destination_spec(name))


def configured_destinations() -> list[Destination]:
    from django.conf import settings

    return [destination_get(name) for name in settings.BACKUP_DESTINATIONS]
