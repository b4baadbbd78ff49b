"""Schoolhouse settings: one module, every deployment difference read from the environment.

Each variable is documented in `.env.example`. Defaults give the embedded mode (SQLite, a
file-based cache, a filesystem Celery broker) so `make run` works on a bare machine; a
production deployment sets `DATABASE_URL`, `REDIS_URL` and `SECRET_KEY` and leaves `DEBUG` off.
Invalid values raise `ImproperlyConfigured` here, at start-up, never at first use.
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
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it to a long random value (at least 50 characters), "
            "or set DEBUG=true for a local development run."
        )
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
    "audit",
    "students",
    "files",
    "backups",
    "monitoring",
    "upgrade",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
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
    for _sub in ("queue", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
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
