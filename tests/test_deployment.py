"""Containerfile, podman-compose.yml and .env.example agree with each other and with Settings."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from llm_service.providers.registry import provider_ids
from llm_service.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
CONTAINERFILE = ROOT / "Containerfile"
COMPOSE_FILE = ROOT / "podman-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PYPROJECT = ROOT / "pyproject.toml"

# Every setting's variable, and the per-vendor overrides read for each registered vendor.
SETTINGS_ALIASES = frozenset(
    field.alias for field in Settings.model_fields.values() if field.alias
) | {f"LLM_{p.upper()}_{name}" for p in provider_ids() for name in ("BASE_URL", "DEFAULT_MODEL")}

# What an operator puts in .env: secrets of a valid shape, never real ones.
PLACEHOLDER_SECRETS = {
    "DB_PASSWORD": "placeholder-db-password",
    "JWT_SECRET": "placeholder-jwt-secret-that-is-long-enough",
    "ENCRYPTION_KEY": "0123456789abcdef" * 4,
}
REQUIRED_SECRETS = ("DB_PASSWORD", "JWT_SECRET", "ENCRYPTION_KEY")

# ---- Containerfile ------------------------------------------------------------------------------


@cache
def containerfile_stages() -> tuple[tuple[tuple[str, str], ...], ...]:
    """(INSTRUCTION, arguments) per build stage; comments dropped, `\\` continuations joined."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, args = (pending + line).partition(" ")
        pending = ""
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), args.strip()))
    return tuple(tuple(stage) for stage in stages)


def final_stage(instruction: str) -> list[str]:
    return [args for name, args in containerfile_stages()[-1] if name == instruction]


def all_stages(instruction: str) -> list[str]:
    return [args for stage in containerfile_stages() for name, args in stage if name == instruction]


@cache
def image_env() -> dict[str, str]:
    """The ENV of the final stage (KEY=value form)."""
    env: dict[str, str] = {}
    for args in final_stage("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def expand_image_env(text: str) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: image_env()[m.group(1) or m.group(2)], text)


def copy_sources() -> list[str]:
    """Every build-context path a COPY reads (not `COPY --from=<stage>`)."""
    sources: list[str] = []
    for args in all_stages("COPY"):
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
        if any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words if not word.startswith("--")][:-1]
    return list(dict.fromkeys(sources))


def exposed_ports() -> list[int]:
    return [int(port.split("/")[0]) for args in final_stage("EXPOSE") for port in args.split()]


def test_containerfile_exposes_the_port_the_service_listens_on() -> None:
    assert exposed_ports() == [int(image_env()["LLM_SERVICE_PORT"])]


def test_containerfile_port_is_the_container_side_of_the_compose_mapping() -> None:
    container_ports = [int(mapping.rsplit(":", 1)[1]) for mapping in service()["ports"]]
    assert container_ports == exposed_ports()


def test_containerfile_runs_as_a_non_root_user() -> None:
    users = [args.split(":")[0] for args in final_stage("USER")]
    assert users and users[-1] not in {"root", "0"}


def test_containerfile_healthcheck_gets_health_on_the_service_port() -> None:
    (healthcheck,) = final_stage("HEALTHCHECK")
    url = urlsplit(expand_image_env(re.search(r"https?://[^\s\"']+", healthcheck).group(0)))
    assert (url.port, url.path) == (int(image_env()["LLM_SERVICE_PORT"]), "/health")


def test_containerfile_installs_curl_for_the_health_checks() -> None:
    assert any("apt-get install" in args and "curl" in args.split() for args in final_stage("RUN"))


def test_containerfile_installs_dependencies_only_from_the_hashed_lock() -> None:
    installs = [args for args in all_stages("RUN") if "pip install" in args]
    assert installs[0] == "pip install --no-cache-dir --require-hashes -r requirements.lock"


def test_containerfile_installs_the_project_without_unlocked_dependencies() -> None:
    installs = [args for args in all_stages("RUN") if "pip install" in args]
    assert installs[1:] == ["pip install --no-cache-dir --no-deps ."]


def test_containerfile_base_images_are_python_311_slim() -> None:
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", CONTAINERFILE.read_text(), re.M).group(1)
    images = [args.split()[0].replace("${PYTHON_IMAGE}", default) for args in all_stages("FROM")]
    assert all(re.fullmatch(r"(docker\.io/library/)?python:3\.11-slim(-\w+)?", i) for i in images)


def test_containerfile_cmd_is_llm_service_serve() -> None:
    assert [json.loads(args) for args in final_stage("CMD")] == [["llm-service", "serve"]]


def test_llm_service_command_is_the_project_script_cli_main() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert scripts.get("llm-service") == "llm_service.cli:main"


def test_llm_service_entry_point_has_a_serve_command() -> None:
    # Runs the console-script target exactly as the installed `llm-service` wrapper does.
    target = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]["llm-service"]
    module, function = target.split(":")
    code = (
        f"import sys; from {module} import {function} as main; "
        "sys.argv[0] = 'llm-service'; sys.exit(main())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert (result.returncode, "usage" in result.stdout.lower()) == (0, True), result.stderr[-2000:]


@pytest.mark.parametrize("entry", [".env", "data/"])
def test_build_context_leaves_out_local_secrets(entry: str) -> None:
    assert entry in (ROOT / ".containerignore").read_text().splitlines()


@pytest.mark.parametrize("source", copy_sources())
def test_containerfile_copies_a_file_that_exists(source: str) -> None:
    assert (ROOT / source).exists()


# ---- podman-compose.yml -------------------------------------------------------------------------


class MissingVariable(Exception):
    pass


_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<colon>:?)(?P<op>[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: object, variables: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `$$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        found = variables.get(name)
        if match.group("colon") and found == "":
            found = None
        if found is not None:
            return found
        if op == "?":
            raise MissingVariable(f"{name}: {arg}")
        return arg or ""

    return _VARIABLE.sub(replace, str(value))


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str = "llm-service") -> dict:
    return compose()["services"][name]


def container_environment(variables: dict[str, str]) -> dict[str, str]:
    """What the llm-service container sees: the image's ENV, then compose's environment."""
    compose_env = {
        key: interpolate(value, variables) for key, value in service()["environment"].items()
    }
    return {**image_env(), **compose_env}


def test_compose_file_defines_the_service_its_database_and_redis() -> None:
    assert set(compose()["services"]) == {"llm-service", "db", "redis"}


def test_compose_builds_the_service_from_the_containerfile() -> None:
    assert service()["build"] == {"context": ".", "dockerfile": "Containerfile"}


def test_compose_publishes_host_8085_to_container_8080() -> None:
    assert service()["ports"] == ["8085:8080"]


def test_compose_healthcheck_curls_health_on_8080() -> None:
    test = service()["healthcheck"]["test"]
    url = urlsplit(test[-1])
    assert (test[:2], url.port, url.path) == (["CMD", "curl"], 8080, "/health")


def test_compose_restarts_the_service_unless_stopped() -> None:
    assert service()["restart"] == "unless-stopped"


def test_compose_starts_the_service_after_the_database_is_healthy() -> None:
    assert service()["depends_on"]["db"] == {"condition": "service_healthy"}


def test_compose_database_has_a_pg_isready_healthcheck() -> None:
    assert "pg_isready" in " ".join(service("db")["healthcheck"]["test"])


def test_compose_database_port_is_not_published() -> None:
    assert "ports" not in service("db")


def test_compose_database_credentials_are_the_service_credentials() -> None:
    db_env, env = service("db")["environment"], service()["environment"]
    assert [db_env["POSTGRES_USER"], db_env["POSTGRES_PASSWORD"], db_env["POSTGRES_DB"]] == [
        env["DB_USER"],
        env["DB_PASSWORD"],
        env["DB_NAME"],
    ]


def test_compose_redis_url_defaults_to_the_redis_service() -> None:
    assert interpolate(service()["environment"]["REDIS_URL"], {}) == "redis://redis:6379/0"


def test_compose_has_no_empty_default_that_podman_compose_1_0_3_passes_literally() -> None:
    # Debian 12's podman-compose 1.0.3 needs a non-empty default: `${NAME:-}` reaches the service
    # as that very text. Plain `${NAME}` is empty when unset in every compose.
    assert re.findall(r"\$\{\w+:?-\}", COMPOSE_FILE.read_text()) == []


def test_compose_service_waits_for_the_database_itself() -> None:
    # podman < 4.6 ignores `condition: service_healthy`: the service's own wait must be on.
    env = container_environment(PLACEHOLDER_SECRETS)
    assert (env["LLM_MIGRATE_ON_START"], float(env["DB_WAIT_S"]) >= 30) == ("true", True)


def test_compose_environment_names_are_settings() -> None:
    assert set(service()["environment"]) - SETTINGS_ALIASES == set()


@pytest.mark.parametrize("name", REQUIRED_SECRETS)
def test_compose_refuses_to_start_without_secret(name: str) -> None:
    variables = {**PLACEHOLDER_SECRETS, name: ""}
    with pytest.raises(MissingVariable, match=name):
        interpolate(service()["environment"][name], variables)


# ---- the settings the container ends up with ----------------------------------------------------


@pytest.fixture
def container_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for alias in SETTINGS_ALIASES:
        monkeypatch.delenv(alias, raising=False)
    for key, value in container_environment(PLACEHOLDER_SECRETS).items():
        if key in SETTINGS_ALIASES:
            monkeypatch.setenv(key, value)
    return load_settings()


def test_container_settings_are_production(container_settings: Settings) -> None:
    assert container_settings.is_production


def test_container_listens_on_all_interfaces_port_8080(container_settings: Settings) -> None:
    assert (container_settings.host, container_settings.port) == ("0.0.0.0", 8080)


def test_container_uses_the_compose_postgres(container_settings: Settings) -> None:
    assert container_settings.resolved_database_url == (
        "postgresql+asyncpg://postgres:placeholder-db-password@db:5432/llm_service"
    )


def test_container_migrates_on_start_under_compose(container_settings: Settings) -> None:
    assert container_settings.should_migrate_on_start is True


# ---- .env.example -------------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"^(?:#\s?)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example_lines() -> list[str]:
    return ENV_EXAMPLE.read_text().splitlines()


def env_example_entries() -> list[tuple[int, str, str]]:
    """(line index, NAME, value) for `NAME=value` and commented-out `# NAME=value` lines."""
    return [
        (i, m.group(1), m.group(2))
        for i, line in enumerate(env_example_lines())
        if (m := _ASSIGNMENT.match(line))
    ]


def test_env_example_documents_every_setting() -> None:
    assert SETTINGS_ALIASES - {name for _, name, _ in env_example_entries()} == set()


def test_env_example_names_only_settings() -> None:
    assert {name for _, name, _ in env_example_entries()} - SETTINGS_ALIASES == set()


def test_env_example_names_each_variable_once() -> None:
    names = [name for _, name, _ in env_example_entries()]
    assert sorted(name for name in set(names) if names.count(name) > 1) == []


def test_env_example_lines_are_comments_or_assignments() -> None:
    bad = [
        line
        for line in env_example_lines()
        if line.strip()
        and not line.startswith("#")
        and not re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", line)
    ]
    assert bad == []


def test_env_example_explains_each_variable_on_the_line_above() -> None:
    lines = env_example_lines()
    undocumented = [
        name
        for i, name, _ in env_example_entries()
        if i == 0 or not lines[i - 1].startswith("#") or _ASSIGNMENT.match(lines[i - 1])
    ]
    assert undocumented == []


@pytest.mark.parametrize("name", REQUIRED_SECRETS)
def test_env_example_leaves_secret_empty(name: str) -> None:
    assert [value for _, n, value in env_example_entries() if n == name] == [""]


# ---- .ci/run and bin/test-container -------------------------------------------------------------


def test_ci_installs_chromium_then_runs_the_suite_then_the_container_test() -> None:
    def step(line: str) -> str | None:
        if "apt-get install" in line and "chromium" in line.split():
            return "install chromium"
        return line if line in ("bin/test -q", "bin/test-container") else None

    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    steps = [s for s in (step(line.strip()) for line in lines) if s]
    assert steps == ["install chromium", "bin/test -q", "bin/test-container"]


def test_container_test_is_executable_and_builds_with_docker_format() -> None:
    script = ROOT / "bin" / "test-container"
    text = script.read_text()
    assert (bool(script.stat().st_mode & 0o111), "podman build --format docker" in text) == (
        True, True)


def test_container_test_names_no_mirror_host() -> None:
    # The Debian mirror is read from the machine's apt sources at run time, never written down.
    text = (ROOT / "bin" / "test-container").read_text()
    assert re.findall(r"https?://(?!127\.0\.0\.1|localhost)[\w.-]+", text) == []
