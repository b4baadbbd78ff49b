"""Gunicorn configuration for the production image (`gunicorn -c docker/gunicorn.conf.py`).

Each value can be overridden with a GUNICORN_* environment variable; the defaults suit the
container in docker/compose.yaml, which sits behind nginx (docker/nginx.conf).
"""

from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def _default_workers() -> int:
    # sched_getaffinity honours a cpuset (`docker run --cpuset-cpus`), where cpu_count() would
    # report every core of the host. A CPU *quota* (`--cpus`) is invisible to both: set
    # GUNICORN_WORKERS explicitly in that case.
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 2 * cores + 1


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")

# The usual 2 x cores + 1: while one worker waits on PostgreSQL another uses the CPU.
# Each worker is a process with its own database connection pool, so workers x DB_POOL_MAX_SIZE
# (plus Celery) must stay below PostgreSQL's max_connections (100 by default).
workers = _env_int("GUNICORN_WORKERS", _default_workers())
threads = _env_int("GUNICORN_THREADS", 1)

# gthread even with one thread, because of uploads: nginx streams request bodies to us
# (proxy_request_buffering off), so a 1 GB upload occupies a worker for as long as the client
# takes to send it. The sync worker stops heart-beating while it handles a request, so
# `timeout` would kill every upload slower than 60 s; the gthread worker's main loop keeps
# heart-beating while its thread reads the body.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")

# With gthread, `timeout` catches a worker process that is frozen as a whole (stuck in C code,
# deadlocked), not a slow request. 60 s leaves room for a long report query before that.
timeout = _env_int("GUNICORN_TIMEOUT", 60)
# On SIGTERM, in-flight requests get 30 s to finish. compose.yaml's stop_grace_period for web
# is longer, so Docker does not SIGKILL them first.
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Idle keep-alive connections are held 5 s (gthread only; sync closes after each response).
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)

# Recycle each worker after ~2000 requests to bound slow memory growth (caches, fragmentation).
# The jitter spreads the restarts so the workers never all restart at the same moment.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 200)

# Both logs to the container's stdout/stderr, where Docker collects them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# One JSON-like object a line, to sit next to Django's JSON logs. "JSON-ish" because gunicorn
# does not escape quotes inside values (a user agent containing `"` breaks the line for a
# strict parser). REMOTE_ADDR is nginx; the client's address is in X-Forwarded-For, where
# only the entries appended by your own proxies can be trusted.
access_log_format = (
    '{"time":"%(t)s","logger":"gunicorn.access","remote_addr":"%(h)s",'
    '"forwarded_for":"%({x-forwarded-for}i)s","method":"%(m)s","path":"%(U)s",'
    '"query":"%(q)s","status":%(s)s,"bytes":"%(b)s","duration_ms":%(M)s,'
    '"referer":"%(f)s","user_agent":"%(a)s"}'
)

# Addresses whose X-Forwarded-Proto gunicorn believes when it sets wsgi.url_scheme. Django
# does not depend on it (it reads the header itself when TRUST_X_FORWARDED_PROTO is on), so
# the conservative loopback default is kept; behind a proxy on another host, list its address.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")

# The worker heartbeat is an fchmod() on a temporary file every second; on a disk-backed
# filesystem (the container's overlay layer) that call can block long enough for the arbiter
# to kill healthy workers. /dev/shm is memory-backed.
if os.path.isdir("/dev/shm"):  # noqa: S108 - only gunicorn's heartbeat file goes there
    worker_tmp_dir = "/dev/shm"  # noqa: S108


# Prometheus multiprocess mode (monitoring/metrics.py): every worker writes its counters to
# files in PROMETHEUS_MULTIPROC_DIR and /metrics adds them up. Files left by an earlier run
# would be added in too, so the master empties the directory before any worker starts, and
# forgets a worker's live gauges when it exits.
def on_starting(server: object) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


def child_exit(server: object, worker: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
