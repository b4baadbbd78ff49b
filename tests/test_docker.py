"""Static checks of the Docker deployment files in docker/.

No Docker engine runs where the tests run, so these read the files instead of starting them:
compose.yaml parses, names only environment variables that settings.py reads (a typo there
would be silently ignored by django-environ and the default used instead), refers only to
files that exist, and the image drops root.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
SETTINGS_FILE = REPO_ROOT / "school_site" / "settings.py"
GUNICORN_CONF = DOCKER_DIR / "gunicorn.conf.py"

APP_SERVICES = ("web", "worker", "beat", "migrate")
REQUIRED_SERVICES = ("web", "worker", "beat", "nginx", "postgres", "redis")
# Read by Django/Celery themselves rather than through `env` in settings.py.
SPECIAL_ENV_NAMES = frozenset({"DJANGO_SETTINGS_MODULE"})

# env("NAME", ...), env.str("NAME", ...), env.bool('NAME', ...), env.db_url("NAME"), ...
# Names built at run time (f-strings) are not seen: spell such a name out in settings.py
# before compose.yaml may use it.
_SETTINGS_ENV_CALL = re.compile(r"""\benv(?:\.\w+)?\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")
# os.environ.get("GUNICORN_X", ...) in docker/gunicorn.conf.py, and its _env_int("GUNICORN_X", ...)
_GUNICORN_ENV_READ = re.compile(r"""(?:environ\.get|_env_int)\(\s*["'](GUNICORN_[A-Z0-9_]+)["']""")


def _compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict), f"{COMPOSE_FILE} is not a YAML mapping"
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose().get("services")
    assert isinstance(services, dict) and services, f"{COMPOSE_FILE} defines no services"
    return services


def _settings_env_names() -> set[str]:
    return set(_SETTINGS_ENV_CALL.findall(SETTINGS_FILE.read_text(encoding="utf-8")))


def _gunicorn_env_names() -> set[str]:
    return set(_GUNICORN_ENV_READ.findall(GUNICORN_CONF.read_text(encoding="utf-8")))


def _env_file_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line.removeprefix("export ").split("=", 1)[0].strip())
    return names


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _service_env_names(service: dict[str, Any]) -> set[str]:
    """Names set by `environment:` (mapping or list form) and by any `env_file:`."""
    environment = service.get("environment") or {}
    if isinstance(environment, dict):
        names = {str(key) for key in environment}
    else:
        names = {str(item).split("=", 1)[0] for item in environment}
    for entry in _as_list(service.get("env_file")):
        path = entry["path"] if isinstance(entry, dict) else entry
        env_file = (DOCKER_DIR / path).resolve()
        if env_file.is_file():  # a missing one is reported by the file-reference test
            names |= _env_file_names(env_file)
    return names


def _dockerfile_stages() -> list[list[str]]:
    """Instruction lines of each build stage, comments and blank lines dropped."""
    stages: list[list[str]] = []
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"(?i)^FROM\s", line):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def _referenced_paths(services: dict[str, dict[str, Any]]) -> list[tuple[str, Path]]:
    """(description, path) for each local file or folder compose.yaml points at.

    Relative host paths in compose resolve against the compose file's folder (docker/); paths
    inside a container's command that start with `docker/` resolve against /app, the repo root.
    """
    refs: list[tuple[str, Path]] = []
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            if isinstance(build, str):
                build = {"context": build}
            context = (DOCKER_DIR / build.get("context", ".")).resolve()
            refs.append((f"{name}: build context", context))
            refs.append((f"{name}: dockerfile", context / build.get("dockerfile", "Dockerfile")))
        for volume in _as_list(service.get("volumes")):
            if isinstance(volume, dict):
                source = volume.get("source", "") if volume.get("type") == "bind" else ""
            else:
                source = str(volume).split(":", 1)[0]
            if source.startswith("."):  # not a named volume, nor a host-specific absolute path
                refs.append((f"{name}: mounts {source}", (DOCKER_DIR / source).resolve()))
        for entry in _as_list(service.get("env_file")):
            path = entry["path"] if isinstance(entry, dict) else entry
            refs.append((f"{name}: env_file {path}", (DOCKER_DIR / path).resolve()))
        command = service.get("command") or []
        words = command.split() if isinstance(command, str) else [str(w) for w in command]
        for word in words:
            for token in re.findall(r"(?<![\w/.-])docker/[\w./-]+", word):
                refs.append((f"{name}: command refers to {token}", REPO_ROOT / token))
    for section in ("configs", "secrets"):
        for key, spec in (_compose().get(section) or {}).items():
            if isinstance(spec, dict) and "file" in spec:
                refs.append((f"{section}.{key}", (DOCKER_DIR / spec["file"]).resolve()))
    return refs


def test_compose_parses_and_defines_the_services() -> None:
    services = _services()

    missing = [name for name in REQUIRED_SERVICES if name not in services]

    assert not missing, f"{COMPOSE_FILE.name} lacks services: {', '.join(missing)}"


def test_settings_scan_finds_the_core_names() -> None:
    # Guards the regex itself: if it stopped matching, the next test would pass vacuously.
    names = _settings_env_names()

    assert {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"} <= names


def test_app_services_only_set_environment_variables_settings_reads() -> None:
    services = _services()
    known = _settings_env_names() | SPECIAL_ENV_NAMES
    unknown: dict[str, list[str]] = {}
    for name in APP_SERVICES:
        assert name in services, f"{COMPOSE_FILE.name} lacks the {name} service"
        allowed = known | (_gunicorn_env_names() if name == "web" else set())
        names = _service_env_names(services[name])
        assert names or name == "migrate", f"{name} sets no environment variables at all"
        stray = sorted(names - allowed)
        if stray:
            unknown[name] = stray

    assert not unknown, (
        "compose.yaml sets environment variables that school_site/settings.py does not read "
        "(a typo, or a setting not written yet): "
        + "; ".join(f"{service}: {', '.join(names)}" for service, names in unknown.items())
    )


def test_app_services_wait_for_migrations() -> None:
    services = _services()

    for name in ("web", "worker", "beat"):
        depends_on = services[name].get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        assert depends_on.get("migrate", {}).get("condition") == (
            "service_completed_successfully"
        ), f"{name} may start before migrations have run"
        for backing in ("postgres", "redis"):
            assert depends_on.get(backing, {}).get("condition") == "service_healthy", (
                f"{name} may start before {backing} is healthy"
            )


def test_dockerfile_is_multi_stage_and_drops_root() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2, "docker/Dockerfile should be multi-stage (two FROM lines or more)"

    users = [
        line.split(None, 1)[1].strip() for line in stages[-1] if re.match(r"(?i)^USER\s", line)
    ]

    assert users, "the final stage of docker/Dockerfile has no USER: it would run as root"
    user = users[-1].split(":", 1)[0]
    assert user not in {"root", "0"}, f"the final stage runs as {users[-1]!r}"


def test_files_compose_refers_to_exist() -> None:
    refs = _referenced_paths(_services())
    assert any(path == GUNICORN_CONF for _, path in refs), "web does not use gunicorn.conf.py"

    missing = [f"{what} -> {path}" for what, path in refs if not path.exists()]

    assert not missing, "compose.yaml refers to missing files:\n" + "\n".join(missing)


# --- point-in-time recovery: docker/compose.pitr.yaml ------------------------------------------
PITR_COMPOSE = DOCKER_DIR / "compose.pitr.yaml"


def _pitr_services() -> dict[str, dict[str, Any]]:
    with PITR_COMPOSE.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return data["services"]


def test_pitr_override_sets_only_names_settings_read() -> None:
    known = _settings_env_names() | SPECIAL_ENV_NAMES
    for name in APP_SERVICES:
        service = _pitr_services()[name]
        unknown = _service_env_names(service) - known
        assert not unknown, f"compose.pitr.yaml {name}: settings.py never reads {sorted(unknown)}"
        assert service["environment"]["PITR_PG_DATA"], name  # switches it on everywhere


def test_pitr_override_archives_at_least_every_minute_over_tls() -> None:
    services = _pitr_services()
    postgres = services["postgres"]["environment"]
    assert int(postgres["PITR_ARCHIVE_TIMEOUT"]) <= 60
    assert postgres["PGBACKREST_REPO1_CIPHER_TYPE"] == "aes-256-cbc"
    assert "PGBACKREST_REPO1_CIPHER_PASS" not in postgres  # a secret, never in the file
    assert postgres["PGBACKREST_TLS_SERVER_AUTH"].startswith("worker=")
    worker = services["worker"]["environment"]
    assert worker["PITR_PG_HOST"] == "postgres" and worker["PITR_TLS_CERT_FILE"]
    entrypoint = (DOCKER_DIR / "postgres" / "pitr-entrypoint.sh").read_text()
    assert "archive_mode=on" in entrypoint and "pgbackrest server" in entrypoint


def test_pitr_override_refers_to_files_that_exist() -> None:
    for name, service in _pitr_services().items():
        build = service.get("build")
        if build:
            context = (DOCKER_DIR / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
    dockerfile = (DOCKER_DIR / "postgres" / "Dockerfile").read_text()
    for script in re.findall(r"docker/postgres/[\w.-]+\.sh", dockerfile):
        assert (REPO_ROOT / script).is_file(), script
    assert "pgbackrest" in DOCKERFILE.read_text()  # the worker drives pgBackRest too
