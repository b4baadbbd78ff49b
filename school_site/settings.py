"""Schoolhouse settings: one module, every deployment difference read from the environment.

Each variable is documented in `.env.example`. Defaults give the embedded mode (SQLite, a
file-based cache, a filesystem Celery broker) so `make run` works on a bare machine; a
production deployment sets `DATABASE_URL`, `REDIS_URL` and `SECRET_KEY` and leaves `DEBUG` off.
Invalid values raise `ImproperlyConfigured` here, at start-up, never at first use; a missing
SECRET_KEY is refused by the processes that serve (school_site.startup).
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local `.env` is a convenience for developers; real deployments pass the environment.
ENV_FILE = env.str("SCHOOLHOUSE_ENV_FILE", default=str(BASE_DIR / ".env"))
if Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
TESTING = env.bool("SCHOOLHOUSE_TESTING", default=False)

# Runtime data of the embedded mode (SQLite file, media, broker folders, cache).
VAR_DIR = Path(env.str("SCHOOLHOUSE_VAR_DIR", default=str(BASE_DIR / "var")))

_INSECURE_DEV_KEY = "django-insecure-dev-only-key-never-use-in-production-0123456789abcdef"
# Left empty in production when unset: the servers refuse to start without it
# (school_site.startup, called by wsgi.py, asgi.py and the Celery worker and beat), and
# Django refuses anything that signs at first use; commands that sign nothing
# (`makemigrations --check`, `showmigrations`) still run on a fresh checkout.
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY and (DEBUG or TESTING):
    SECRET_KEY = _INSECURE_DEV_KEY

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# ---------------------------------------------------------------------------------------------
# Applications
# ---------------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_celery_beat",
    # Not "health_check": monitoring imports django-health-check's checks where it uses them,
    # and the app entry would load them (dns, redis.asyncio: 9 MiB) into every process.
    "audit",
    "students",
    "files",
    "backups",
    "monitoring",
    "upgrade",
    "reportcards",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise, so static files are not timed; before sessions/auth, so their queries count.
    "monitoring.middleware.RequestMonitoringMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "audit.context.AuditContextMiddleware",
    "school_site.middleware.CurrentSchoolMiddleware",
]

# The toolbar is a development aid only: never loaded unless DEBUG, and never under tests.
DEBUG_TOOLBAR = env.bool("DEBUG_TOOLBAR", default=DEBUG) and DEBUG and not TESTING
if DEBUG_TOOLBAR:
    INSTALLED_APPS.append("debug_toolbar")
    MIDDLEWARE.insert(0, "debug_toolbar.middleware.DebugToolbarMiddleware")
    INTERNAL_IPS = ["127.0.0.1", "::1"]

ROOT_URLCONF = "school_site.urls"
WSGI_APPLICATION = "school_site.wsgi.application"
ASGI_APPLICATION = "school_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "school_site.context_processors.current_school",
            ],
        },
    },
]

# ---------------------------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------------------------
# An empty DATABASE_URL means "not set": the embedded SQLite database.
DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
    ),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.postgresql":
    # Django's native psycopg 3 pool. The defaults mirror the old SQLAlchemy settings
    # (pool_size 20 + max_overflow 30 = at most 50 connections, 30 s wait); psycopg opens
    # `min_size` connections eagerly, so that stays small and the pool grows on demand.
    _db.setdefault("OPTIONS", {})
    _db["OPTIONS"]["sslmode"] = env.str("DB_SSLMODE", default="prefer")
    if env.bool("DB_POOL", default=True):
        _db["OPTIONS"]["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=50),
            "timeout": env.float("DB_POOL_TIMEOUT", default=30.0),
        }
        _db["CONN_MAX_AGE"] = 0  # the pool replaces persistent connections
    else:
        _db["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    for _cert in ("sslrootcert", "sslcert", "sslkey"):
        if env.str(f"DB_{_cert.upper()}", default=""):
            _db["OPTIONS"][_cert] = env.str(f"DB_{_cert.upper()}")
    _db["TEST"] = {"NAME": env.str("DB_TEST_NAME", default=f"test_{_db['NAME']}")}
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL lets the web process read while the worker writes; IMMEDIATE avoids the
    # "database is locked" upgrade deadlock between two writers.
    _db.setdefault("OPTIONS", {})
    _db["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    _db["OPTIONS"].setdefault(
        "init_command",
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
    )
else:
    raise ImproperlyConfigured(
        f"DATABASE_URL selects {_db['ENGINE']}; Schoolhouse supports PostgreSQL and SQLite."
    )
_db["CONN_HEALTH_CHECKS"] = True
_db["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USING_POSTGRES = _db["ENGINE"] == "django.db.backends.postgresql"
if USING_POSTGRES:
    # Django's backend, keeping the row-level security setting current (students.row_security).
    _db["ENGINE"] = "school_site.postgres"

# Two PostgreSQL roles (README, "Two database roles"): DATABASE_URL is the application's role,
# subject to row-level security; DATABASE_MAINTENANCE_URL is the tables' owner, which the
# policies do not bind, for migrations, backups, restores, drills and the SQLite upgrade.
# Unset, it is DATABASE_URL: a one-role install, where the owner's sessions see every row and
# the health page says the second wall is down.
DATABASE_MAINTENANCE = env.db_url_config(
    env.str("DATABASE_MAINTENANCE_URL", default="")
    or env.str("DATABASE_URL", default="")
    or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
)
# The application's role, to which migrations grant what it needs (students.row_security).
DATABASE_APP_USER = _db.get("USER", "") if USING_POSTGRES else ""
# `manage.py` sets this for the commands that run as the maintenance role (school_site.db).
if env.str("SCHOOLHOUSE_DB_ROLE", default="") == "maintenance" and USING_POSTGRES:
    for _key in ("USER", "PASSWORD", "HOST", "PORT"):
        _db[_key] = DATABASE_MAINTENANCE[_key]

# ---------------------------------------------------------------------------------------------
# Cache and sessions
# ---------------------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="schoolhouse"),
            "TIMEOUT": env.int("CACHE_TIMEOUT", default=300),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # A Redis outage must read as a cache miss, never as a 500; short timeouts
                # keep a dead Redis from stalling every request.
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": env.float("REDIS_CONNECT_TIMEOUT", default=0.5),
                "SOCKET_TIMEOUT": env.float("REDIS_SOCKET_TIMEOUT", default=0.5),
                "CONNECTION_POOL_KWARGS": {"max_connections": 100, "retry_on_timeout": False},
            },
        }
    }
    if REDIS_URL.startswith("rediss://"):
        CACHES["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]["ssl_cert_reqs"] = env.str(
            "REDIS_SSL_CERT_REQS", default="required"
        )
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    # Shared between web, worker and beat processes of the embedded mode, so a write in one
    # process invalidates figures the others cache.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "TIMEOUT": env.int("CACHE_TIMEOUT", default=300),
        }
    }
# CACHE_BACKEND=dummy turns caching off (every read a miss; sessions still live in the
# database): the load benchmark runs a second server this way to measure what the cache saves.
CACHE_BACKEND = env.str("CACHE_BACKEND", default="").lower()
if CACHE_BACKEND not in {"", "dummy"}:
    raise ImproperlyConfigured("CACHE_BACKEND must be empty (the default) or dummy.")
if CACHE_BACKEND == "dummy":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
# Report card and roster PDFs are cached per school version (students.reports): a write to
# the school's records replaces them at once; the timeout only bounds memory.
REPORTS_CACHE_TIMEOUT = env.int("REPORTS_CACHE_TIMEOUT", default=300)
# A student's profile page (students.selectors): per student, moved on by any write to the
# school's records or to that child's attendance or grades; the timeout only bounds memory.
PROFILE_CACHE_TIMEOUT = env.int("PROFILE_CACHE_TIMEOUT", default=300)
# A signed-in user's schools, roles and permissions (students.identity): every change moves
# them on at once; the timeout only bounds what a bump lost to a Redis outage leaves behind.
IDENTITY_CACHE_TIMEOUT = env.int("IDENTITY_CACHE_TIMEOUT", default=600)
# Sessions survive a cache outage: the database holds them, the cache only speeds reads.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 60 * 60)  # one school day

# ---------------------------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "students:dashboard"
LOGOUT_REDIRECT_URL = "login"

# ---------------------------------------------------------------------------------------------
# Internationalisation
# ---------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# ---------------------------------------------------------------------------------------------
# Static files and media
# ---------------------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"
# Hashed, compressed names in production (needs collectstatic); plain files otherwise.
STATIC_MANIFEST = env.bool("STATIC_MANIFEST", default=not DEBUG and not TESTING)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST

# ---------------------------------------------------------------------------------------------
# Security (production values are the defaults whenever DEBUG is off)
# ---------------------------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env.bool("TRUST_X_FORWARDED_PROTO", default=False)
    else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG and not TESTING)
# Probes speak plain HTTP to the container; everything else is redirected to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^health/"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG and not TESTING)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG and not TESTING)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# ---------------------------------------------------------------------------------------------
# Email and alerts
# ---------------------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Schoolhouse <noreply@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
ADMINS = [tuple(a.split(":", 1)) for a in env.list("ADMINS", default=[])]  # "Name:addr,..."

# ---------------------------------------------------------------------------------------------
# Celery
# ---------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Embedded mode: messages are files in var/broker, so no broker server is needed.
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcast commands (a health check's ping) go here too, not into the working folder.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 60 * 60}
CELERY_RESULT_BACKEND = (
    env.str("CELERY_RESULT_BACKEND", default="")
    or REDIS_URL
    or f"file://{VAR_DIR / 'celery-results'}"
)
if CELERY_RESULT_BACKEND.startswith("file://"):
    Path(CELERY_RESULT_BACKEND.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
CELERY_RESULT_EXPIRES = 24 * 60 * 60
# A Redis outage must not hold a web request for 20 s while `.delay()` retries the result
# store (Celery's default: 20 tries, 1 s apart): give up within ~2 s, like the broker publish.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
}
CELERY_TASK_IGNORE_RESULT = False
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A task may never run forever: the soft limit raises inside the task so it can clean up,
# the hard limit kills the child process.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=10 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=12 * 60)
CELERY_TASK_ACKS_LATE = True  # a task whose worker died is redelivered, not lost
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_DEFAULT_QUEUE", default="default")
# Long jobs (backups, report cards) go to their own queue so they never hold up e-mails and
# heartbeats; one worker can consume both (`-Q default,maintenance`).
CELERY_TASK_ROUTES = {
    "backups.tasks.*": {"queue": env.str("CELERY_MAINTENANCE_QUEUE", default="maintenance")},
    "reportcards.tasks.*": {"queue": env.str("CELERY_MAINTENANCE_QUEUE", default="maintenance")},
    "monitoring.tasks.*": {"queue": CELERY_TASK_DEFAULT_QUEUE},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# ---------------------------------------------------------------------------------------------
# Logging: one JSON object a line on stdout (or readable lines with LOG_FORMAT=console).
# ---------------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="console" if DEBUG else "json")
if LOG_FORMAT not in {"json", "console"}:
    raise ImproperlyConfigured("LOG_FORMAT must be 'json' or 'console'.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "console": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django_redis": {"level": "WARNING"},
    },
}

# ---------------------------------------------------------------------------------------------
# Schoolhouse
# ---------------------------------------------------------------------------------------------
DASHBOARD_CACHE_TIMEOUT = env.int("DASHBOARD_CACHE_TIMEOUT", default=300)
STUDENTS_PER_PAGE = env.int("STUDENTS_PER_PAGE", default=50)
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=10 * 1024 * 1024)
# Password of the demo accounts `make run` creates; generated into var/ when unset.
DEMO_PASSWORD = env.str("DEMO_PASSWORD", default="")

# ---------------------------------------------------------------------------------------------
# --- Monitoring: health checks, slow queries, request and system metrics, alerts (monitoring/)
# ---------------------------------------------------------------------------------------------
# A second alias on the same database with a connection of its own. Slow-query records and the
# per-minute request figures are written through it in autocommit, so they never run inside
# (nor roll back with) the transaction of the request that produced them. No pool: it is used
# a few times a minute. Its short connect timeout lets the database health check answer
# quickly when PostgreSQL is down. Tests mirror it onto "default", so they see one database.
MONITORING_DB_ALIAS = "monitoring"
_monitoring_db = {
    **_db,
    "OPTIONS": {k: v for k, v in _db.get("OPTIONS", {}).items() if k != "pool"},
    "TEST": {"MIRROR": "default"},
}
if USING_POSTGRES:
    _monitoring_db["OPTIONS"]["connect_timeout"] = env.int(
        "MONITORING_DB_CONNECT_TIMEOUT", default=3
    )
    _monitoring_db["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES[MONITORING_DB_ALIAS] = _monitoring_db

# Slow queries: slower than this many milliseconds are recorded (0 turns recording off), a
# fraction of them (sampling, 0..1) is kept, for so many days and at most so many rows.
MONITORING_SLOW_QUERY_MS = env.float("MONITORING_SLOW_QUERY_MS", default=500.0)
MONITORING_SLOW_QUERY_SAMPLE_RATE = env.float("MONITORING_SLOW_QUERY_SAMPLE_RATE", default=1.0)
MONITORING_SLOW_QUERY_RETENTION_DAYS = env.int("MONITORING_SLOW_QUERY_RETENTION_DAYS", default=7)
MONITORING_SLOW_QUERY_MAX_ROWS = env.int("MONITORING_SLOW_QUERY_MAX_ROWS", default=50_000)
if not 0.0 <= MONITORING_SLOW_QUERY_SAMPLE_RATE <= 1.0:
    raise ImproperlyConfigured("MONITORING_SLOW_QUERY_SAMPLE_RATE must be between 0 and 1.")
# Per-minute request figures are summed in each process and written every so many seconds or
# requests, whichever comes first; kept for so many days. System samples: kept so many days.
MONITORING_REQUEST_FLUSH_SECONDS = env.float("MONITORING_REQUEST_FLUSH_SECONDS", default=10.0)
MONITORING_REQUEST_FLUSH_REQUESTS = env.int("MONITORING_REQUEST_FLUSH_REQUESTS", default=500)
MONITORING_REQUEST_RETENTION_DAYS = env.int("MONITORING_REQUEST_RETENTION_DAYS", default=7)
MONITORING_SAMPLE_RETENTION_DAYS = env.int("MONITORING_SAMPLE_RETENTION_DAYS", default=14)
MONITORING_CPU_SAMPLE_SECONDS = env.float("MONITORING_CPU_SAMPLE_SECONDS", default=0.5)

# /metrics (Prometheus) and the JSON of /health/ answer these client addresses or networks,
# or a request carrying `Authorization: Bearer <MONITORING_METRICS_TOKEN>`. A request that came
# through a proxy (X-Forwarded-For, X-Real-IP, Forwarded) is never trusted by address.
MONITORING_METRICS_ALLOWED_IPS = env.list(
    "MONITORING_METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"]
)
MONITORING_METRICS_TOKEN = env.str("MONITORING_METRICS_TOKEN", default="")
try:
    import ipaddress as _ipaddress

    for _net in MONITORING_METRICS_ALLOWED_IPS:
        _ipaddress.ip_network(_net, strict=False)
except ValueError as _exc:
    raise ImproperlyConfigured(f"MONITORING_METRICS_ALLOWED_IPS: {_exc}") from None
# Set it (for every gunicorn worker) to aggregate metrics across processes; it must exist.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured("PROMETHEUS_MULTIPROC_DIR must name an existing directory.")

# Health checks. Readiness (/health/ready/) fails only on these; the others show on the
# dashboard, in `monitor_system` and in alerts. Names as in monitoring/checks.py.
MONITORING_CRITICAL_CHECKS = env.list(
    "MONITORING_CRITICAL_CHECKS", default=["database", "migrations"]
)
_MONITORING_CHECK_NAMES = {
    "database", "migrations", "cache", "storage", "celery", "celery_beat",
    "disk", "memory", "backup", "db_pool", "row_security", "pitr",
}  # fmt: skip
if _unknown_checks := set(MONITORING_CRITICAL_CHECKS) - _MONITORING_CHECK_NAMES:
    raise ImproperlyConfigured(f"MONITORING_CRITICAL_CHECKS: unknown {sorted(_unknown_checks)}")
MONITORING_STORAGE_SKIP = env.list("MONITORING_STORAGE_SKIP", default=["staticfiles"])
MONITORING_CELERY_PING_TIMEOUT = env.float("MONITORING_CELERY_PING_TIMEOUT", default=1.0)
MONITORING_BEAT_MAX_AGE_SECONDS = env.int("MONITORING_BEAT_MAX_AGE_SECONDS", default=180)
MONITORING_BACKUP_MAX_AGE_HOURS = env.float("MONITORING_BACKUP_MAX_AGE_HOURS", default=26.0)
MONITORING_DISK_PATHS = env.list("MONITORING_DISK_PATHS", default=[str(MEDIA_ROOT), str(VAR_DIR)])
MONITORING_DISK_WARN_PERCENT = env.float("MONITORING_DISK_WARN_PERCENT", default=80.0)
MONITORING_MEMORY_WARN_PERCENT = env.float("MONITORING_MEMORY_WARN_PERCENT", default=90.0)
MONITORING_DB_POOL_WARN_PERCENT = env.float("MONITORING_DB_POOL_WARN_PERCENT", default=80.0)

# Alerts: e-mail to ADMINS, and a JSON POST to the webhook when set. One message when an
# incident opens and one when it recovers.
MONITORING_ALERT_DISK_PERCENT = env.float("MONITORING_ALERT_DISK_PERCENT", default=90.0)
MONITORING_ALERT_ERROR_RATE_PERCENT = env.float("MONITORING_ALERT_ERROR_RATE_PERCENT", default=5.0)
MONITORING_ALERT_ERROR_RATE_WINDOW_MINUTES = env.int(
    "MONITORING_ALERT_ERROR_RATE_WINDOW_MINUTES", default=5
)
MONITORING_ALERT_ERROR_RATE_MIN_REQUESTS = env.int(
    "MONITORING_ALERT_ERROR_RATE_MIN_REQUESTS", default=20
)
# Seconds a rule must keep failing before its alert opens. A worker that is starting (make run,
# a deploy) does not answer the first ping; a worker really gone stays gone.
MONITORING_ALERT_GRACE_SECONDS = {
    "worker_missing": env.int("MONITORING_ALERT_WORKER_GRACE_SECONDS", default=120),
}
if any(seconds < 0 for seconds in MONITORING_ALERT_GRACE_SECONDS.values()):
    raise ImproperlyConfigured("MONITORING_ALERT_WORKER_GRACE_SECONDS must not be negative.")
MONITORING_ALERT_WEBHOOK_URL = env.str("MONITORING_ALERT_WEBHOOK_URL", default="")
MONITORING_ALERT_WEBHOOK_TIMEOUT = env.float("MONITORING_ALERT_WEBHOOK_TIMEOUT", default=5.0)
if MONITORING_ALERT_WEBHOOK_URL and not MONITORING_ALERT_WEBHOOK_URL.startswith(
    ("http://", "https://")
):
    raise ImproperlyConfigured("MONITORING_ALERT_WEBHOOK_URL must be an http(s):// URL.")
# Alert and error e-mails start with this, so a mail filter can route them.
EMAIL_SUBJECT_PREFIX = env.str("EMAIL_SUBJECT_PREFIX", default="[Schoolhouse] ")

# ---------------------------------------------------------------------------------------------
# --- Documents (files app): storage backend, uploads, encryption at rest, scanner, links
# ---------------------------------------------------------------------------------------------
# Where document content lives: local | s3 | gcs | hybrid (local disk first, a Celery task
# copies each object to DOCUMENTS_HYBRID_CLOUD, reads fall back to the cloud copy).
DOCUMENTS_STORAGE = env.str("DOCUMENTS_STORAGE", default="local").lower()
if DOCUMENTS_STORAGE not in {"local", "s3", "gcs", "hybrid"}:
    raise ImproperlyConfigured("DOCUMENTS_STORAGE must be local, s3, gcs or hybrid.")
DOCUMENTS_HYBRID_CLOUD = env.str("DOCUMENTS_HYBRID_CLOUD", default="s3").lower()
if DOCUMENTS_STORAGE == "hybrid" and DOCUMENTS_HYBRID_CLOUD not in {"s3", "gcs"}:
    raise ImproperlyConfigured("DOCUMENTS_HYBRID_CLOUD must be s3 or gcs.")
# Under MEDIA_ROOT so nginx's internal /protected-media/ location can send the files.
DOCUMENTS_LOCAL_ROOT = Path(env.str("DOCUMENTS_LOCAL_ROOT", default=str(MEDIA_ROOT / "documents")))
# Seconds a download link works. Short: the link is a bearer credential once it leaves us.
DOCUMENTS_URL_TTL = env.int("DOCUMENTS_URL_TTL", default=300)
if not 10 <= DOCUMENTS_URL_TTL <= 7 * 24 * 3600:  # S3 and GCS V4 allow at most 7 days
    raise ImproperlyConfigured("DOCUMENTS_URL_TTL must be between 10 seconds and 7 days.")
# Bounded calls to object storage, so an outage fails an upload in seconds, not minutes.
DOCUMENTS_CLOUD_CONNECT_TIMEOUT = env.float("DOCUMENTS_CLOUD_CONNECT_TIMEOUT", default=5.0)
DOCUMENTS_CLOUD_READ_TIMEOUT = env.float("DOCUMENTS_CLOUD_READ_TIMEOUT", default=120.0)
DOCUMENTS_CLOUD_MAX_ATTEMPTS = env.int("DOCUMENTS_CLOUD_MAX_ATTEMPTS", default=3)
# A hybrid copy that fails (cloud down) is retried after this many seconds, doubling per
# attempt up to 15 minutes; the 10-minute sweep (replicate_pending) catches what retries miss.
DOCUMENTS_REPLICATION_RETRY_SECONDS = env.int("DOCUMENTS_REPLICATION_RETRY_SECONDS", default=60)
if DOCUMENTS_REPLICATION_RETRY_SECONDS < 1:
    raise ImproperlyConfigured("DOCUMENTS_REPLICATION_RETRY_SECONDS must be at least 1.")


def _documents_s3_options() -> dict:
    bucket = env.str("DOCUMENTS_S3_BUCKET", default="")
    if not bucket:
        raise ImproperlyConfigured("DOCUMENTS_S3_BUCKET is required for S3 document storage.")
    sse = env.str("DOCUMENTS_S3_SSE", default="AES256")
    if sse not in {"AES256", "aws:kms", "none"}:
        raise ImproperlyConfigured("DOCUMENTS_S3_SSE must be AES256, aws:kms or none.")
    params = {} if sse == "none" else {"ServerSideEncryption": sse}
    if sse == "aws:kms" and env.str("DOCUMENTS_S3_SSE_KMS_KEY_ID", default=""):
        params["SSEKMSKeyId"] = env.str("DOCUMENTS_S3_SSE_KMS_KEY_ID")
    return {
        "bucket_name": bucket,
        "region_name": env.str("DOCUMENTS_S3_REGION", default="") or None,
        # MinIO, Ceph, Wasabi...: any S3-compatible endpoint.
        "endpoint_url": env.str("DOCUMENTS_S3_ENDPOINT_URL", default="") or None,
        # Empty: boto3's own chain (instance role, AWS_* variables, shared config).
        "access_key": env.str("DOCUMENTS_S3_ACCESS_KEY_ID", default="") or None,
        "secret_key": env.str("DOCUMENTS_S3_SECRET_ACCESS_KEY", default="") or None,
        "location": env.str("DOCUMENTS_S3_PREFIX", default="documents"),
        "addressing_style": env.str("DOCUMENTS_S3_ADDRESSING_STYLE", default="auto"),
        "object_parameters": params,
        "default_acl": None,  # private objects: bucket policy decides, never public-read
        "file_overwrite": False,
        "querystring_auth": True,
        "querystring_expire": DOCUMENTS_URL_TTL,
        "connect_timeout": DOCUMENTS_CLOUD_CONNECT_TIMEOUT,
        "read_timeout": DOCUMENTS_CLOUD_READ_TIMEOUT,
        "max_attempts": DOCUMENTS_CLOUD_MAX_ATTEMPTS,
    }


def _documents_gcs_options() -> dict:
    import datetime as _dt

    bucket = env.str("DOCUMENTS_GCS_BUCKET", default="")
    if not bucket:
        raise ImproperlyConfigured("DOCUMENTS_GCS_BUCKET is required for GCS document storage.")
    return {
        "bucket_name": bucket,
        "project_id": env.str("DOCUMENTS_GCS_PROJECT", default="") or None,
        # Empty: Application Default Credentials (workload identity on GKE, metadata server).
        "credentials_file": env.str("DOCUMENTS_GCS_CREDENTIALS_FILE", default=""),
        # Without a key file, sign download URLs through the IAM signBlob API.
        "iam_sign_blob": env.bool("DOCUMENTS_GCS_IAM_SIGN_BLOB", default=False),
        "sa_email": env.str("DOCUMENTS_GCS_SERVICE_ACCOUNT", default="") or None,
        "api_endpoint": env.str("DOCUMENTS_GCS_ENDPOINT", default=""),
        "location": env.str("DOCUMENTS_GCS_PREFIX", default="documents"),
        # Customer-managed key (CMEK); empty: Google-managed encryption, always on.
        "kms_key_name": env.str("DOCUMENTS_GCS_KMS_KEY_NAME", default=""),
        "default_acl": None,
        "file_overwrite": False,
        "querystring_auth": True,
        "expiration": _dt.timedelta(seconds=DOCUMENTS_URL_TTL),
        "timeout": DOCUMENTS_CLOUD_READ_TIMEOUT,
        "retry_deadline": env.float("DOCUMENTS_GCS_RETRY_DEADLINE", default=30.0),
    }


_DOCUMENTS_LOCAL = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {
        "location": str(DOCUMENTS_LOCAL_ROOT),
        "base_url": None,
        "file_permissions_mode": 0o640,
        "directory_permissions_mode": 0o750,
    },
}
_DOCUMENTS_CLOUD = {
    "s3": lambda: {
        "BACKEND": "files.storage.DocumentS3Storage",
        "OPTIONS": _documents_s3_options(),
    },
    "gcs": lambda: {
        "BACKEND": "files.storage.DocumentGoogleCloudStorage",
        "OPTIONS": _documents_gcs_options(),
    },
}
_storages: dict = STORAGES  # the same dict, typed loosely: its entries carry options of any type
if DOCUMENTS_STORAGE == "local":
    _storages["documents"] = _DOCUMENTS_LOCAL
elif DOCUMENTS_STORAGE == "hybrid":
    _storages["documents"] = _DOCUMENTS_LOCAL
    _storages["documents_replica"] = _DOCUMENTS_CLOUD[DOCUMENTS_HYBRID_CLOUD]()
else:
    _storages["documents"] = _DOCUMENTS_CLOUD[DOCUMENTS_STORAGE]()

# Uploads: only the streaming handler, which writes to disk in chunks while hashing, so no
# upload is ever held in memory whole (a 1 GB upload keeps a worker's memory flat).
FILE_UPLOAD_HANDLERS = ["files.uploads.HashingTemporaryFileUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("FILE_UPLOAD_MAX_MEMORY_SIZE", default=64 * 1024)
FILE_UPLOAD_TEMP_DIR = env.str("FILE_UPLOAD_TEMP_DIR", default=str(VAR_DIR / "uploads"))
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
FILE_UPLOAD_PERMISSIONS = 0o640
# Largest document accepted, in bytes (nginx's client_max_body_size allows 1100 MB).
DOCUMENTS_MAX_UPLOAD_BYTES = env.int("DOCUMENTS_MAX_UPLOAD_BYTES", default=1024 * 1024 * 1024)
# Temporary uploads older than this are a killed worker's leftovers; the hourly job removes them.
DOCUMENTS_TEMP_MAX_AGE_HOURS = env.int("DOCUMENTS_TEMP_MAX_AGE_HOURS", default=6)
# Days a document stays in the trash before the nightly purge deletes it and its content.
DOCUMENTS_RETENTION_DAYS = env.int("DOCUMENTS_RETENTION_DAYS", default=30)
DOCUMENTS_METADATA_CACHE_TIMEOUT = env.int("DOCUMENTS_METADATA_CACHE_TIMEOUT", default=300)

# Sensitive documents on the local disk are sealed with Tink streaming AEAD (AES-256-GCM).
# A JSON keyset (`python -c "from files.sealing import keyset_generate as k; print(k())"`),
# or a file holding one. Unset: DEBUG/tests generate one into var/; production refuses to
# store sensitive documents on the local disk until a keyset is given.
DOCUMENTS_ENCRYPTION_KEYSET = env.str("DOCUMENTS_ENCRYPTION_KEYSET", default="")
if not DOCUMENTS_ENCRYPTION_KEYSET and env.str("DOCUMENTS_ENCRYPTION_KEYSET_FILE", default=""):
    DOCUMENTS_ENCRYPTION_KEYSET = Path(env.str("DOCUMENTS_ENCRYPTION_KEYSET_FILE")).read_text()
if DOCUMENTS_ENCRYPTION_KEYSET:
    import tink as _tink
    from tink import secret_key_access as _ska
    from tink import streaming_aead as _sa

    _sa.register()
    try:
        _tink.json_proto_keyset_format.parse(DOCUMENTS_ENCRYPTION_KEYSET, _ska.TOKEN).primitive(
            _sa.StreamingAead
        )
    except Exception as _exc:  # any parse failure means an unusable keyset
        raise ImproperlyConfigured(
            f"DOCUMENTS_ENCRYPTION_KEYSET is not a Tink streaming-AEAD keyset: {_exc}"
        ) from _exc

# Download of local files: empty streams through Django; under nginx set it to
# /protected-media/documents/ and nginx sends the (non-sealed) file itself.
DOCUMENTS_X_ACCEL_REDIRECT_PREFIX = env.str("DOCUMENTS_X_ACCEL_REDIRECT_PREFIX", default="")
# Virus scanner: empty (off) or a dotted path such as files.scanning.ClamdScanner.
DOCUMENTS_SCANNER = env.str("DOCUMENTS_SCANNER", default="")
DOCUMENTS_CLAMD_ADDRESS = env.str("DOCUMENTS_CLAMD_ADDRESS", default="tcp://127.0.0.1:3310")
DOCUMENTS_CLAMD_TIMEOUT = env.float("DOCUMENTS_CLAMD_TIMEOUT", default=120.0)

# ---------------------------------------------------------------------------------------------
# --- Backups (backups app): destinations, encryption key, compression, limits, alerts
# ---------------------------------------------------------------------------------------------
# Tink keyset (JSON, mode 0600) that encrypts every backup. Keep it OUT of the backup
# destinations and in your secret store too: without it no backup can be restored.
# `manage.py backup_keys create|rotate|show` manages it (README: "Backups and restore").
BACKUP_KEYSET_PATH = Path(
    env.str("BACKUP_KEYSET_PATH", default=str(VAR_DIR / "keys" / "backup-keyset.json"))
)
# Where each backup is written, all at once: any of local, s3, gcs (comma-separated).
BACKUP_DESTINATIONS = env.list("BACKUP_DESTINATIONS", default=["local"])
if not BACKUP_DESTINATIONS or set(BACKUP_DESTINATIONS) - {"local", "s3", "gcs"}:
    raise ImproperlyConfigured("BACKUP_DESTINATIONS must list one or more of local, s3, gcs.")
if len(set(BACKUP_DESTINATIONS)) != len(BACKUP_DESTINATIONS):
    raise ImproperlyConfigured("BACKUP_DESTINATIONS names a destination twice.")
BACKUP_LOCAL_DIR = Path(env.str("BACKUP_LOCAL_DIR", default=str(VAR_DIR / "backups")))
BACKUP_S3_BUCKET = env.str("BACKUP_S3_BUCKET", default="")
BACKUP_S3_PREFIX = env.str("BACKUP_S3_PREFIX", default="schoolhouse-backups/")
BACKUP_S3_ENDPOINT_URL = env.str("BACKUP_S3_ENDPOINT_URL", default="")  # MinIO etc.; empty: AWS
BACKUP_S3_REGION = env.str("BACKUP_S3_REGION", default="")
# Empty: boto3's own credential chain (instance role, AWS_* variables, shared config).
BACKUP_S3_ACCESS_KEY_ID = env.str("BACKUP_S3_ACCESS_KEY_ID", default="")
BACKUP_S3_SECRET_ACCESS_KEY = env.str("BACKUP_S3_SECRET_ACCESS_KEY", default="")
# Multipart part size: memory per S3 upload is about three parts. S3 needs at least 5 MiB.
BACKUP_S3_PART_SIZE = env.int("BACKUP_S3_PART_SIZE", default=8 * 1024 * 1024)
if BACKUP_S3_PART_SIZE < 5 * 1024 * 1024:
    raise ImproperlyConfigured("BACKUP_S3_PART_SIZE must be at least 5 MiB (5242880).")
BACKUP_GCS_BUCKET = env.str("BACKUP_GCS_BUCKET", default="")
BACKUP_GCS_PREFIX = env.str("BACKUP_GCS_PREFIX", default="schoolhouse-backups/")
BACKUP_GCS_PROJECT = env.str("BACKUP_GCS_PROJECT", default="")
BACKUP_GCS_ENDPOINT_URL = env.str("BACKUP_GCS_ENDPOINT_URL", default="")  # emulator; empty: Google
# Resumable-upload chunk: a multiple of 256 KiB.
BACKUP_GCS_CHUNK_SIZE = env.int("BACKUP_GCS_CHUNK_SIZE", default=8 * 1024 * 1024)
if BACKUP_GCS_CHUNK_SIZE % (256 * 1024):
    raise ImproperlyConfigured("BACKUP_GCS_CHUNK_SIZE must be a multiple of 262144 (256 KiB).")
for _dest, _bucket in (("s3", BACKUP_S3_BUCKET), ("gcs", BACKUP_GCS_BUCKET)):
    if _dest in BACKUP_DESTINATIONS and not _bucket:
        raise ImproperlyConfigured(
            f"BACKUP_DESTINATIONS includes {_dest}: set BACKUP_{_dest.upper()}_BUCKET."
        )
# zstd level and worker threads (0: one per core). Level 1 measured smaller *and* faster
# than level 3 on our dumps (BENCHMARKS.md, "Backups").
BACKUP_ZSTD_LEVEL = env.int("BACKUP_ZSTD_LEVEL", default=1)
BACKUP_ZSTD_THREADS = env.int("BACKUP_ZSTD_THREADS", default=0)
if not 1 <= BACKUP_ZSTD_LEVEL <= 19:
    raise ImproperlyConfigured("BACKUP_ZSTD_LEVEL must be between 1 and 19.")
if BACKUP_ZSTD_THREADS == 0:
    import os as _os

    BACKUP_ZSTD_THREADS = _os.cpu_count() or 1
BACKUP_PG_DUMP = env.str("BACKUP_PG_DUMP", default="pg_dump")
BACKUP_PG_RESTORE = env.str("BACKUP_PG_RESTORE", default="pg_restore")
# Where document objects are read for the media backup: a STORAGES alias and the
# content-addressed prefixes under it (files.storage.content_key).
BACKUP_MEDIA_STORAGE = env.str(
    "BACKUP_MEDIA_STORAGE", default="documents" if "documents" in STORAGES else "default"
)
BACKUP_MEDIA_PREFIXES = env.list("BACKUP_MEDIA_PREFIXES", default=["sha256", "sealed"])
# A backup task may run this long (seconds) before Celery stops it; the reaper fails a
# `running` run older than this, or one whose heartbeat (stamped every
# BACKUP_HEARTBEAT_SECONDS) is older than BACKUP_HEARTBEAT_TIMEOUT.
BACKUP_TIME_LIMIT = env.int("BACKUP_TIME_LIMIT", default=6 * 60 * 60)
BACKUP_HEARTBEAT_SECONDS = env.float("BACKUP_HEARTBEAT_SECONDS", default=15.0)
BACKUP_HEARTBEAT_TIMEOUT = env.int("BACKUP_HEARTBEAT_TIMEOUT", default=5 * 60)
if BACKUP_HEARTBEAT_TIMEOUT < 2 * BACKUP_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("BACKUP_HEARTBEAT_TIMEOUT must be at least twice the heartbeat.")
# Failure alerts go by e-mail to ADMINS, and as a JSON POST here when set.
BACKUP_ALERT_WEBHOOK_URL = env.str("BACKUP_ALERT_WEBHOOK_URL", default="")
if BACKUP_ALERT_WEBHOOK_URL and not BACKUP_ALERT_WEBHOOK_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured("BACKUP_ALERT_WEBHOOK_URL must be an http(s):// URL.")
# Seconds an administrator's signed download link for a backup object stays valid.
BACKUP_DOWNLOAD_LINK_MAX_AGE = env.int("BACKUP_DOWNLOAD_LINK_MAX_AGE", default=10 * 60)

# ---------------------------------------------------------------------------------------------
# --- Point-in-time recovery (backups app, pgBackRest; README "Point-in-time recovery")
# ---------------------------------------------------------------------------------------------
# PostgreSQL's data directory as pgBackRest sees it (its pg1-path). Empty: point-in-time
# recovery is off and only the logical backups above run (always so in embedded mode).
PITR_PG_DATA = env.str("PITR_PG_DATA", default="")
PITR_ENABLED = bool(PITR_PG_DATA)
PITR_STANZA = env.str("PITR_STANZA", default="schoolhouse")
# How pgBackRest reaches PostgreSQL: on this host through its socket (the default), or, with
# PITR_PG_HOST, through pgBackRest's TLS server on the database host (docker/, README).
PITR_PG_HOST = env.str("PITR_PG_HOST", default="")
PITR_PG_HOST_PORT = env.int("PITR_PG_HOST_PORT", default=8432)
# The TLS client certificate this side shows pgBackRest's server (its CN must be authorised
# there: tls-server-auth=<CN>=<stanza>), and the CA that signed the server's certificate.
PITR_TLS_CA_FILE = env.str("PITR_TLS_CA_FILE", default="")
PITR_TLS_CERT_FILE = env.str("PITR_TLS_CERT_FILE", default="")
PITR_TLS_KEY_FILE = env.str("PITR_TLS_KEY_FILE", default="")
PITR_PG_PORT = env.int("PITR_PG_PORT", default=int(DATABASES["default"].get("PORT") or 5432))
PITR_PG_SOCKET = env.str("PITR_PG_SOCKET", default="/var/run/postgresql")
PITR_PG_USER = env.str("PITR_PG_USER", default="postgres")
# The operating-system user that owns the data directory: pgBackRest must run as it. Empty:
# whoever runs the worker (and the commands) already is that user.
PITR_OS_USER = env.str("PITR_OS_USER", default="")
PITR_BIN = env.str("PITR_BIN", default="pgbackrest")
# Where the generated pgbackrest.conf goes (conf.d/ beside it holds the secrets, mode 0600).
PITR_CONFIG_DIR = Path(env.str("PITR_CONFIG_DIR", default=str(VAR_DIR / "pgbackrest")))
# The repository passphrase (one line; `manage.py pitr keys create` writes a random one).
# Like the backup keyset: keep it out of the repositories and in your secret store too.
PITR_CIPHER_PASS_FILE = Path(
    env.str("PITR_CIPHER_PASS_FILE", default=str(VAR_DIR / "keys" / "pitr-passphrase"))
)
# The repositories, repo1, repo2... in this order: any of local, s3, gcs.
PITR_REPOS = env.list("PITR_REPOS", default=["local"])
if not PITR_REPOS or set(PITR_REPOS) - {"local", "s3", "gcs"}:
    raise ImproperlyConfigured("PITR_REPOS must list one or more of local, s3, gcs.")
if len(set(PITR_REPOS)) != len(PITR_REPOS):
    raise ImproperlyConfigured("PITR_REPOS names a repository twice.")
PITR_LOCAL_DIR = Path(env.str("PITR_LOCAL_DIR", default=str(VAR_DIR / "pgbackrest-repo")))
PITR_S3_BUCKET = env.str("PITR_S3_BUCKET", default=BACKUP_S3_BUCKET)
PITR_S3_PATH = env.str("PITR_S3_PATH", default="/pgbackrest")
# host[:port] of the S3 API, no scheme: pgBackRest speaks only TLS to it. Empty: AWS for
# the region. An S3 clone without bucket subdomains (MinIO, moto) needs URI style "path".
PITR_S3_ENDPOINT = env.str("PITR_S3_ENDPOINT", default="")
PITR_S3_REGION = env.str("PITR_S3_REGION", default=BACKUP_S3_REGION or "us-east-1")
# Empty key: pgBackRest takes temporary credentials from the instance's role (key type auto).
PITR_S3_KEY = env.str("PITR_S3_KEY", default=BACKUP_S3_ACCESS_KEY_ID)
PITR_S3_KEY_SECRET = env.str("PITR_S3_KEY_SECRET", default=BACKUP_S3_SECRET_ACCESS_KEY)
PITR_S3_URI_STYLE = env.str("PITR_S3_URI_STYLE", default="host")
PITR_S3_VERIFY_TLS = env.bool("PITR_S3_VERIFY_TLS", default=True)
PITR_GCS_BUCKET = env.str("PITR_GCS_BUCKET", default=BACKUP_GCS_BUCKET)
PITR_GCS_PATH = env.str("PITR_GCS_PATH", default="/pgbackrest")
PITR_GCS_ENDPOINT = env.str("PITR_GCS_ENDPOINT", default="")  # host:port; empty: Google
# service: PITR_GCS_KEY is a service-account key file; token: PITR_GCS_KEY is a token
# (the emulator's); auto: the instance's metadata server.
PITR_GCS_KEY_TYPE = env.str("PITR_GCS_KEY_TYPE", default="service")
PITR_GCS_KEY = env.str("PITR_GCS_KEY", default="")
PITR_GCS_VERIFY_TLS = env.bool("PITR_GCS_VERIFY_TLS", default=True)
# Bytes a file is uploaded in (each chunk one request of a resumable upload; a smaller file
# is one request). gcp-storage-emulator needs 1073741824: its resumable uploads answer no
# upload id.
PITR_GCS_CHUNK_SIZE = env.int("PITR_GCS_CHUNK_SIZE", default=4 * 1024 * 1024)
for _name, _endpoint in (("S3", PITR_S3_ENDPOINT), ("GCS", PITR_GCS_ENDPOINT)):
    if "/" in _endpoint:
        raise ImproperlyConfigured(f"PITR_{_name}_ENDPOINT is host[:port], without a scheme.")
if PITR_ENABLED and "gcs" in PITR_REPOS and PITR_GCS_KEY_TYPE != "auto" and not PITR_GCS_KEY:
    raise ImproperlyConfigured(
        f"PITR_GCS_KEY_TYPE is {PITR_GCS_KEY_TYPE}: set PITR_GCS_KEY (or use the type auto)."
    )
for _repo, _bucket in (("s3", PITR_S3_BUCKET), ("gcs", PITR_GCS_BUCKET)):
    if PITR_ENABLED and _repo in PITR_REPOS and not _bucket:
        raise ImproperlyConfigured(f"PITR_REPOS includes {_repo}: set PITR_{_repo.upper()}_BUCKET.")
if PITR_S3_URI_STYLE not in {"host", "path"}:
    raise ImproperlyConfigured("PITR_S3_URI_STYLE must be host or path.")
if (
    PITR_ENABLED
    and PITR_PG_HOST
    and not (PITR_TLS_CA_FILE and PITR_TLS_CERT_FILE and PITR_TLS_KEY_FILE)
):
    raise ImproperlyConfigured(
        "PITR_PG_HOST needs PITR_TLS_CA_FILE, PITR_TLS_CERT_FILE and PITR_TLS_KEY_FILE."
    )
if PITR_GCS_KEY_TYPE not in {"service", "token", "auto"}:
    raise ImproperlyConfigured("PITR_GCS_KEY_TYPE must be service, token or auto.")
# PostgreSQL's archive_timeout (README): a quiet database still ships its WAL this often, so a
# lost server loses at most this many seconds of committed work.
PITR_ARCHIVE_TIMEOUT = env.int("PITR_ARCHIVE_TIMEOUT", default=60)
if not 1 <= PITR_ARCHIVE_TIMEOUT <= 60:
    raise ImproperlyConfigured("PITR_ARCHIVE_TIMEOUT must be between 1 and 60 seconds.")
# Parallel compression and transfer processes of a backup or restore; zstd level.
PITR_PROCESS_MAX = env.int("PITR_PROCESS_MAX", default=2)
PITR_COMPRESS_LEVEL = env.int("PITR_COMPRESS_LEVEL", default=3)
# Seconds pgBackRest waits on a repository that does not answer before an attempt fails
# (it retries at several layers, so a dead store takes a few multiples of this per WAL).
PITR_IO_TIMEOUT = env.int("PITR_IO_TIMEOUT", default=60)
if not 5 <= PITR_IO_TIMEOUT <= 600:
    raise ImproperlyConfigured("PITR_IO_TIMEOUT must be between 5 and 600 seconds.")
# Restores to a moment build their cluster here (a directory per restore) on a free port;
# `--switch` then starts it as the live one with these commands ({data} is replaced).
PITR_RESTORE_DIR = Path(env.str("PITR_RESTORE_DIR", default=str(VAR_DIR / "pitr-restores")))
PITR_PG_BIN = Path(env.str("PITR_PG_BIN", default="/usr/lib/postgresql/15/bin"))
PITR_STOP_COMMAND = env.str("PITR_STOP_COMMAND", default="")
PITR_START_COMMAND = env.str("PITR_START_COMMAND", default="")
# Health: the newest archived WAL and the newest physical backup may be this old.
PITR_MAX_ARCHIVE_AGE_SECONDS = env.int("PITR_MAX_ARCHIVE_AGE_SECONDS", default=5 * 60)
PITR_MAX_BACKUP_AGE_HOURS = env.float("PITR_MAX_BACKUP_AGE_HOURS", default=26.0)
# Restore drills (README): beat writes a fingerprinted restore point (a drill mark) at a random
# minute of every PITR_DRILL_MARK_HOURS (at most 6: a queued mark must stay within the broker's
# 6 h visibility timeout); the weekly drill restores to a random mark of the last
# PITR_DRILL_WINDOW_HOURS. A mark makes writes to school tables wait a few milliseconds; it
# waits at most PITR_DRILL_LOCK_TIMEOUT_MS for writes in flight (keep it below PostgreSQL's
# deadlock_timeout, 1 s by default, so that a writer is never aborted for it), then retries.
PITR_DRILL_MARK_HOURS = env.int("PITR_DRILL_MARK_HOURS", default=4)
if not 1 <= PITR_DRILL_MARK_HOURS <= 6:
    raise ImproperlyConfigured("PITR_DRILL_MARK_HOURS must be between 1 and 6.")
PITR_DRILL_WINDOW_HOURS = env.float("PITR_DRILL_WINDOW_HOURS", default=24.0)
PITR_DRILL_LOCK_TIMEOUT_MS = env.int("PITR_DRILL_LOCK_TIMEOUT_MS", default=200)
if not 10 <= PITR_DRILL_LOCK_TIMEOUT_MS <= 5000:
    raise ImproperlyConfigured("PITR_DRILL_LOCK_TIMEOUT_MS must be between 10 and 5000.")
# Health: the newest drill must have passed and be at most this old.
PITR_DRILL_MAX_AGE_DAYS = env.float("PITR_DRILL_MAX_AGE_DAYS", default=8.0)

# ---------------------------------------------------------------------------------------------
# --- Accounts and security: lockout, two-factor, security headers (accounts/, issue 7)
# ---------------------------------------------------------------------------------------------
# Brute-force protection (django-axes, attempts in the database): after AXES_FAILURE_LIMIT
# wrong passwords for one username from one address, that pair is locked out for
# AXES_COOLOFF_MINUTES (0: until an administrator unlocks it). Keyed on the pair, so an
# attacker cannot lock a teacher out of school by guessing from elsewhere.
INSTALLED_APPS += [
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "accounts",
]
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out pair before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend with its permission lookups cached (students.identity).
    "accounts.backends.CachedModelBackend",
    # Kept for sessions signed in through it before the cached backend existed (a session
    # names its backend, and one not listed here signs it out). Never reached for a password
    # check (the cached backend refuses wrong ones itself), and its permission lookups read
    # the cache the backend above fills.
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
if AXES_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured("AXES_FAILURE_LIMIT must be at least 1.")
_axes_cooloff = env.float("AXES_COOLOFF_MINUTES", default=30.0)
if _axes_cooloff < 0:
    raise ImproperlyConfigured("AXES_COOLOFF_MINUTES must be 0 (no expiry) or more.")
if _axes_cooloff:
    import datetime as _datetime

    AXES_COOLOFF_TIME = _datetime.timedelta(minutes=_axes_cooloff)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a good password clears the earlier typos
AXES_LOCKOUT_TEMPLATE = "accounts/lockout.html"
# The client's address, as the audit trail records it (school_site.proxies).
AXES_CLIENT_IP_CALLABLE = "school_site.proxies.client_address"
AXES_USERNAME_CALLABLE = "accounts.lockout.username_of"
AXES_VERBOSE = False

# Reverse proxies (addresses or networks, comma separated) whose X-Forwarded-For is believed:
# the client is the rightmost address in it that is not one of them. Empty (the default):
# the header is ignored and the peer is the client. docker/compose.yaml names its nginx.
import ipaddress as _ipaddress  # noqa: E402

TRUSTED_PROXIES = [p.strip() for p in env.list("TRUSTED_PROXIES", default=[]) if p.strip()]
for _proxy in TRUSTED_PROXIES:
    try:
        _ipaddress.ip_network(_proxy, strict=False)
    except ValueError as _exc:
        _message = f"TRUSTED_PROXIES: {_proxy!r} is not an address or a network (CIDR)."
        raise ImproperlyConfigured(_message) from _exc
# First: every later middleware (the audit context, django-axes) sees the client's address.
MIDDLEWARE.insert(0, "school_site.proxies.ClientAddressMiddleware")
# Cache-Control: no-store on signed-in pages; right after authentication, so it also covers
# the redirects of the idle timeout and the two-factor gate (accounts.middleware).
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "accounts.middleware.PrivatePagesMiddleware",
)

# Two-factor (django-otp: TOTP apps plus single-use backup codes) for district and school
# administrators. OTP_TOTP_ISSUER names the account in the authenticator app.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Schoolhouse")
# A backup download asks for a fresh code when the last one is older than this (minutes).
ACCOUNTS_OTP_RECHECK_MINUTES = env.int("ACCOUNTS_OTP_RECHECK_MINUTES", default=10)
# After a wrong code the device refuses codes for this many seconds, doubled at each further
# wrong code: a guessing script gets a few dozen tries an hour at most.
OTP_TOTP_THROTTLE_FACTOR = 1

# Sessions: a tab left open in the staff room ends after this many idle seconds (0: never),
# and (by default) when the browser closes. SESSION_COOKIE_AGE still caps the whole day.
SESSION_IDLE_TIMEOUT = env.int("SESSION_IDLE_TIMEOUT", default=30 * 60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = env.bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", default=True)

_security_mw = MIDDLEWARE.index("django.middleware.security.SecurityMiddleware")
MIDDLEWARE.insert(_security_mw + 1, "csp.middleware.CSPMiddleware")
_auth_mw = MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware")
MIDDLEWARE.insert(_auth_mw + 1, "django_otp.middleware.OTPMiddleware")
_messages_mw = MIDDLEWARE.index("django.contrib.messages.middleware.MessageMiddleware")
MIDDLEWARE[_messages_mw + 1 : _messages_mw + 1] = [
    # Idle timeout, and the two-factor gate: an administrator sees nothing but the log-in,
    # two-factor and log-out pages until a code is verified.
    "accounts.middleware.SessionIdleTimeoutMiddleware",
    "accounts.middleware.TwoFactorRequiredMiddleware",
]
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last, as django-axes asks

# Content-Security-Policy (django-csp): only our own scripts, and an inline one only with
# the per-response nonce ({{ request.csp_nonce }}). Inline style attributes stay allowed:
# the progress bars and the admin set widths inline, and CSS cannot run code.
from csp.constants import NONCE as _NONCE  # noqa: E402
from csp.constants import NONE as _NONE  # noqa: E402
from csp.constants import SELF as _SELF  # noqa: E402
from csp.constants import UNSAFE_INLINE as _UNSAFE_INLINE  # noqa: E402

_csp_directives: dict[str, list] = {
    "default-src": [_SELF],
    "script-src": [_SELF, _NONCE],
    "style-src": [_SELF, _UNSAFE_INLINE],
    "img-src": [_SELF, "data:"],
    "font-src": [_SELF],
    "connect-src": [_SELF],
    "form-action": [_SELF],
    "frame-ancestors": [_NONE],
    "base-uri": [_SELF],
    "object-src": [_NONE],
}
if env.str("CSP_REPORT_URI", default=""):
    _csp_directives["report-uri"] = [env.str("CSP_REPORT_URI")]
# CSP_REPORT_ONLY=true sends the same policy as Report-Only: a way to try a change safely.
_csp_setting = {"DIRECTIVES": _csp_directives}
if env.bool("CSP_REPORT_ONLY", default=False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _csp_setting
else:
    CONTENT_SECURITY_POLICY = _csp_setting

# Encrypted connections. PostgreSQL: DB_SSLMODE (+ DB_SSLROOTCERT, DB_SSLCERT, DB_SSLKEY above).
_PG_SSLMODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
if USING_POSTGRES and _db["OPTIONS"]["sslmode"] not in _PG_SSLMODES:
    raise ImproperlyConfigured(f"DB_SSLMODE must be one of {', '.join(sorted(_PG_SSLMODES))}.")
# Redis over TLS: a rediss:// URL for the cache, the Celery broker and the result backend,
# checked against REDIS_SSL_CERT_REQS (required | optional | none) and, for a private CA,
# REDIS_SSL_CA_CERTS (+ REDIS_SSL_CERTFILE / REDIS_SSL_KEYFILE for client certificates).
import ssl as _ssl  # noqa: E402

_REDIS_CERT_REQS = {
    "required": _ssl.CERT_REQUIRED,
    "optional": _ssl.CERT_OPTIONAL,
    "none": _ssl.CERT_NONE,
}
REDIS_SSL_CERT_REQS = env.str("REDIS_SSL_CERT_REQS", default="required").lower()
if REDIS_SSL_CERT_REQS not in _REDIS_CERT_REQS:
    raise ImproperlyConfigured("REDIS_SSL_CERT_REQS must be required, optional or none.")
_redis_tls_files = {
    "ssl_ca_certs": env.str("REDIS_SSL_CA_CERTS", default=""),
    "ssl_certfile": env.str("REDIS_SSL_CERTFILE", default=""),
    "ssl_keyfile": env.str("REDIS_SSL_KEYFILE", default=""),
}
for _name, _path in _redis_tls_files.items():
    if _path and not Path(_path).is_file():
        raise ImproperlyConfigured(f"REDIS_{_name.upper()} names no file: {_path}")
_redis_tls = {"ssl_cert_reqs": _REDIS_CERT_REQS[REDIS_SSL_CERT_REQS]} | {
    k: v for k, v in _redis_tls_files.items() if v
}
if REDIS_URL.startswith("rediss://"):
    CACHES["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"].update(_redis_tls)
if CELERY_BROKER_URL.startswith("rediss://"):
    CELERY_BROKER_USE_SSL = _redis_tls
if CELERY_RESULT_BACKEND.startswith("rediss://"):
    CELERY_REDIS_BACKEND_USE_SSL = _redis_tls

# ---------------------------------------------------------------------------------------------
# --- Audit trail: model history and disclosures (audit/, issue 7)
# ---------------------------------------------------------------------------------------------
# Model history (django-auditlog): every create, update and delete of school data is kept
# as an `audit.ModelChange` row (auditlog's log entry plus indexed school and student ids),
# next to the `AuditEvent` rows for logins, exports, downloads and reads. The models are
# registered in audit/apps.py. Works on PostgreSQL and on the embedded SQLite mode alike.
INSTALLED_APPS += ["auditlog"]
AUDITLOG_LOGENTRY_MODEL = "audit.ModelChange"
# auditlog's own migrations create its stock table even when the entry model is swapped; that
# table is never written, and its foreign key to content types breaks the test runner's
# flush, so auditlog's migrations are not run at all.
MIGRATION_MODULES = {"auditlog": None}
# Masked fields (passwords, medical notes) keep "changed", never the value.
AUDITLOG_MASK_CALLABLE = "audit.history.mask_value"
# Fixture loads and restores (raw saves) are not school activity.
AUDITLOG_DISABLE_ON_RAW_SAVE = True
# Auditors' pages: rows per page of the trail and of a student's disclosures.
AUDIT_EVENTS_PER_PAGE = env.int("AUDIT_EVENTS_PER_PAGE", default=50)
if AUDIT_EVENTS_PER_PAGE < 1:
    raise ImproperlyConfigured("AUDIT_EVENTS_PER_PAGE must be at least 1.")

# ---------------------------------------------------------------------------------------------
# --- REST API (api/, issue 10)
# ---------------------------------------------------------------------------------------------
INSTALLED_APPS += [
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets, served as our own static files
    "api",
]
# Requests per token (per user for the browsable API's sessions), e.g. 300/minute,
# 10000/hour; empty turns rate limiting off. Counted in the cache (Redis in production).
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="300/minute")
if API_THROTTLE_RATE:
    _count, _, _period = API_THROTTLE_RATE.partition("/")
    if not _count.isdigit() or _period[:1] not in {"s", "m", "h", "d"}:
        raise ImproperlyConfigured("API_THROTTLE_RATE must look like 300/minute or 10000/hour.")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # the browsable API
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.SchoolRolePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.ApiTokenRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.StableCursorPagination",
    "DEFAULT_SCHEMA_CLASS": "api.schema.SchoolhouseAutoSchema",
    "EXCEPTION_HANDLER": "api.exceptions.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Schoolhouse API",
    "DESCRIPTION": (
        "Students, guardians, sections, enrollments, attendance, assessments, grades and "
        "documents of one school. Authenticate with `Authorization: Bearer <token>`; a "
        "token works in the school it was issued for, with its user's role there."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,  # multipart uploads get their own request schema
    # Enum names that would otherwise clash (several models have a `status`).
    "ENUM_NAME_OVERRIDES": {
        "StudentStatusEnum": "students.models.Student.Status",
        "AttendanceStatusEnum": "students.models.AttendanceRecord.Status",
    },
}
