"""The byte-moving half of a backup or a restore, in a small child process without Django.

Why a child: a process that sets up this project's Django (every app, the admin, Celery)
weighs about 80 MiB before it moves a byte, and a backup to S3 adds boto3, its service
models and the upload parts on top. Split in two, neither process comes near 100 MB: the
Django side (`StreamChild`, used by the services) keeps the run's bookkeeping, the lock and
the dump's snapshot, and this child, which imports only `pipeline`, `crypto`,
`destinations`, zstd, Tink and the one cloud SDK in use, runs pg_dump / pg_restore and
streams through zstd, Tink and the destinations.

Protocol: `python -m backups.stream` reads one JSON request per line on stdin, answers each
with zero or more `{"progress": n}` lines and then one `{"ok": true, "result": ...}` or
`{"ok": false, "error": "<exception class>", "message": ...}` line on stdout, and exits at
the end of its input. Passwords and cloud keys travel in these requests, never on a command
line. The child dies with its parent (PR_SET_PDEATHSIG on Linux), and a SIGTERM aborts the
current writes (partial objects removed) before it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

from .crypto import BackupIntegrityError, BackupKeyError
from .destinations import Destination, DestinationError
from .pipeline import BackupFailed, Progress

PROGRESS_EVERY = 4 << 20  # bytes between two progress lines


# ---------------------------------------------------------------------------------------------
# The Django side
# ---------------------------------------------------------------------------------------------
class StreamChildError(BackupFailed):
    """An exception raised in the child that has no counterpart here; its class is named
    after the child's, so a run's error reads the same as if it had happened in process."""


_KNOWN: dict[str, type[Exception]] = {
    "BackupFailed": BackupFailed,
    "BackupIntegrityError": BackupIntegrityError,
    "BackupKeyError": BackupKeyError,
    "DestinationError": DestinationError,
}
_named: dict[str, type[Exception]] = {}


def _exception(name: str, message: str) -> Exception:
    cls = _KNOWN.get(name)
    if cls is None:
        cls = _named.setdefault(name, type(name, (StreamChildError,), {}))
    return cls(message)


class StreamChild:
    """A running `python -m backups.stream`; `call(op, **params)` runs one request there.

    Use as a context manager: leaving the block normally lets the child finish; leaving it
    with an exception (or an interrupt) stops the child with SIGTERM first, so its writers
    remove their partial objects, and waits for it, so nothing is written afterwards.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> StreamChild:
        root = str(Path(__file__).resolve().parent.parent)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        }
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "backups.stream", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=root,
        )
        return self

    def call(self, op: str, *, progress: Progress | None = None, **params: Any) -> Any:
        if self.proc is None:
            raise BackupFailed("StreamChild.call() outside its `with` block")
        stdin = cast(IO[bytes], self.proc.stdin)
        stdout = cast(IO[bytes], self.proc.stdout)
        try:
            stdin.write(json.dumps({"op": op, **params}).encode() + b"\n")
            stdin.flush()
        except BrokenPipeError:
            pass  # the child died; its exit status is reported below
        while line := stdout.readline():
            answer = json.loads(line)
            if "progress" in answer:
                if progress:
                    progress(answer["progress"])
                continue
            if answer["ok"]:
                return answer.get("result")
            raise _exception(answer["error"], answer["message"])
        code = self.proc.wait()
        raise BackupFailed(f"The backup stream process ended unexpectedly (status {code}).")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            cast(IO[bytes], self.proc.stdin).close()
        if exc_type is not None and self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        cast(IO[bytes], self.proc.stdout).close()


# ---------------------------------------------------------------------------------------------
# The child
# ---------------------------------------------------------------------------------------------
class _Reporter:
    """Progress lines, at most one per PROGRESS_EVERY bytes."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.pending = 0
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.out.write(json.dumps(message).encode() + b"\n")
            self.out.flush()

    def progress(self, n: int) -> None:
        self.pending += n
        if self.pending >= PROGRESS_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.send({"progress": self.pending})
            self.pending = 0


def _destinations(specs: list[dict[str, Any]]) -> list[Destination]:
    from .destinations import destination_from_spec

    return [destination_from_spec(spec) for spec in specs]


def _keyset(request: dict[str, Any]) -> Path:
    return Path(request["keyset"])


def op_store(request: dict[str, Any], report: _Reporter) -> dict[str, Any]:
    """Dump → zstd → Tink → every destination, then re-read each copy to confirm it."""
    from .pipeline import confirm_object, source_chunks, store_stream

    destinations = _destinations(request["destinations"])
    started = time.monotonic()
    with contextlib.closing(source_chunks(request["source"])) as chunks:  # type: ignore[type-var]
        stored = store_stream(
            chunks=chunks,
            destinations=destinations,
            key=request["key"],
            associated_data=bytes.fromhex(request["associated_data"]),
            compress=request["compress"],
            progress=report.progress,
            zstd_level=request.get("zstd_level"),
            zstd_threads=request.get("zstd_threads"),
            keyset=_keyset(request),
        )
    report.flush()
    streamed = time.monotonic()
    try:
        for destination in destinations:
            confirm_object(
                destination=destination,
                key=stored.key,
                size=stored.stored_size,
                sha256=stored.sha256,
            )
    except BaseException:
        for destination in destinations:
            with contextlib.suppress(Exception):
                destination.delete(stored.key)
        raise
    return {
        "key": stored.key,
        "raw_size": stored.raw_size,
        "stored_size": stored.stored_size,
        "sha256": stored.sha256,
        "key_id": stored.key_id,
        "destinations": stored.destinations,
        "seconds": {
            "stream": round(streamed - started, 2),
            "confirm": round(time.monotonic() - streamed, 2),
        },
    }


def op_put(request: dict[str, Any], report: _Reporter) -> None:
    """A small object (a sidecar) to every destination, whole or not at all."""
    data = request["data"].encode()
    for destination in _destinations(request["destinations"]):
        writer = destination.open_writer(request["key"])
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise


def op_cleanup(request: dict[str, Any], report: _Reporter) -> list[str]:
    """Best effort, per destination: unfinished writes of `key`, then each of `delete`."""
    errors = []
    for destination in _destinations(request["destinations"]):
        try:
            destination.remove_partials(request["key"])
            for key in request["delete"]:
                destination.delete(key)
        except Exception as exc:  # noqa: BLE001 - reported back, the caller logs it
            errors.append(f"{destination.name}: {type(exc).__name__}: {exc}")
    return errors


def op_checksum(request: dict[str, Any], report: _Reporter) -> dict[str, Any]:
    from .pipeline import object_checksum

    (destination,) = _destinations([request["destination"]])
    size, sha256 = object_checksum(destination, request["key"], report.progress)
    report.flush()
    return {"size": size, "sha256": sha256}


def op_restore(request: dict[str, Any], report: _Reporter) -> dict[str, Any]:
    """Decrypt and decompress an object into a command's stdin (pg_restore) or a file,
    checking the stored bytes' size and sha256 when the whole object was read."""
    from .pipeline import check_checksum, drain_into, open_plaintext

    (destination,) = _destinations([request["destination"]])
    sink = request["sink"]
    plaintext = open_plaintext(
        destination=destination,
        key=request["key"],
        associated_data=bytes.fromhex(request["associated_data"]),
        key_id=request.get("key_id"),
        compressed=request["compressed"],
        progress=report.progress,
        keyset=_keyset(request),
    )

    def check(hashing: Any) -> None:
        if request.get("check_whole_object", True):
            check_checksum(hashing, size=request.get("size"), sha256=request["sha256"])

    if sink["kind"] == "file":
        with plaintext as (plain, hashing), open(sink["path"], "wb") as out:
            written = drain_into(plain, out)  # type: ignore[arg-type]
            check(hashing)
            out.flush()
            os.fsync(out.fileno())
        report.flush()
        return {"written": written}
    with tempfile.TemporaryFile() as stderr, tempfile.TemporaryFile() as stdout:
        proc = subprocess.Popen(  # noqa: S603
            sink["argv"], stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, env=sink["env"]
        )
        stdin = cast(IO[bytes], proc.stdin)
        try:
            with plaintext as (plain, hashing):
                drain_into(plain, stdin)  # type: ignore[arg-type]
                with contextlib.suppress(BrokenPipeError):
                    stdin.close()
                check(hashing)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
        report.flush()
        stderr.seek(0)
        stdout.seek(0)
        return {
            "returncode": code,
            "stderr": stderr.read()[-4000:].decode(errors="replace").strip(),
            "stdout": stdout.read().decode(errors="replace"),
        }


def op_modules(request: dict[str, Any], report: _Reporter) -> list[str]:
    """Every module this process has imported (for the tests of its footprint)."""
    return sorted(sys.modules)


OPS: dict[str, Callable[[dict[str, Any], _Reporter], Any]] = {
    "store": op_store,
    "put": op_put,
    "cleanup": op_cleanup,
    "checksum": op_checksum,
    "restore": op_restore,
    "modules": op_modules,
}


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills this process when its parent dies (even by SIGKILL), so a
    backup can never carry on and commit an object after its run was given up."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if parent_pid and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the line above took effect


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds the writers, which remove their partial objects


def requests(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    while line := stream.readline():
        yield json.loads(line)


def main() -> int:
    _die_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    signal.signal(signal.SIGTERM, _on_sigterm)
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but protocol lines on the real stdout
    report = _Reporter(out)
    for request in requests(sys.stdin.buffer):
        try:
            result = OPS[request["op"]](request, report)
        except Exception as exc:
            report.pending = 0
            report.send({"ok": False, "error": type(exc).__name__, "message": str(exc)})
            continue
        report.send({"ok": True, "result": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
