"""docker-compose.yml and the images, checked by structure: Docker cannot run in the sandbox."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from service.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
TRAINQ_SERVICES = ("migrate", "api", "worker-cpu", "worker-gpu", "reconciler", "controller")
LONG_RUNNING = (
    "redis",
    "postgres",
    "api",
    "worker-cpu",
    "worker-gpu",
    "reconciler",
    "controller",
)
SECRETS = ("REDIS_PASSWORD", "POSTGRES_PASSWORD")
# What an operator exports before `docker compose up`.
OPERATOR_ENV = {
    "REDIS_PASSWORD": "r3d1s",
    "POSTGRES_PASSWORD": "p0stgr3s",
    "TRAINQ_API_TOKENS": "ops:admin:sha256:" + "0" * 64,
}
VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution (what the file uses)."""

    def substitute(match: re.Match[str]) -> str:
        name, kind, argument = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {argument}")
        return argument or ""

    return VARIABLE.sub(substitute, value)


def command_of(spec: dict[str, Any] | list[str]) -> list[str]:
    """A service's command (or a healthcheck's test) as argv, interpolated, CMD marker dropped."""
    argv = spec if isinstance(spec, list) else spec["command"]
    argv = [interpolate(str(arg), OPERATOR_ENV) for arg in argv]
    return argv[1:] if argv[0] == "CMD" else argv


def parse_trainq(argv: list[str]) -> click.Context:
    """Resolve `trainq VERB... OPTIONS` to the real click command and parse its options."""
    assert argv[0] == "trainq", argv
    command: click.Command = main
    args = argv[1:]
    while isinstance(command, click.Group):
        assert args, f"{argv}: no verb"
        sub = command.get_command(click.Context(command), args[0])
        assert sub is not None, f"{argv}: trainq has no verb {args[0]!r}"
        command, args = sub, args[1:]
    # Raises click.UsageError for an unknown option or a bad value (e.g. --queues tpu).
    return command.make_context(command.name or "", list(args))


def test_every_service_the_deployment_needs_is_there() -> None:
    assert set(SERVICES) >= {"redis", "postgres", *TRAINQ_SERVICES}


@pytest.mark.parametrize("service", TRAINQ_SERVICES)
def test_each_command_is_a_real_trainq_verb_with_real_options(service: str) -> None:
    argv = command_of(SERVICES[service])
    context = parse_trainq(argv)
    verb = argv[1 : 1 + len(context.command_path.split())]
    result = CliRunner().invoke(main, [*verb, "--help"])
    assert result.exit_code == 0, result.output


def test_commands_say_what_each_service_is() -> None:
    assert command_of(SERVICES["migrate"]) == ["trainq", "db", "upgrade"]
    assert command_of(SERVICES["reconciler"]) == ["trainq", "reconcile"]
    assert command_of(SERVICES["controller"]) == ["trainq", "controller"]
    api = parse_trainq(command_of(SERVICES["api"]))
    assert api.params["host"] == "0.0.0.0"
    assert api.params["port"] == 5000
    for queue in ("cpu", "gpu"):
        worker = parse_trainq(command_of(SERVICES[f"worker-{queue}"]))
        assert worker.params["queues"] == queue
        # A node name per container: Celery fills %h with the container's hostname.
        assert worker.params["hostname"] == f"{queue}@%h"


def test_bad_verbs_and_options_would_be_caught() -> None:
    with pytest.raises(AssertionError):
        parse_trainq(["trainq", "serve"])
    with pytest.raises(click.UsageError):
        parse_trainq(["trainq", "worker", "--queues", "tpu"])
    with pytest.raises(click.UsageError):
        parse_trainq(["trainq", "db", "upgrade", "--force"])


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck(service: str) -> None:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    assert len(test) > 1


def test_healthchecks_check_the_right_thing() -> None:
    api = " ".join(SERVICES["api"]["healthcheck"]["test"])
    assert "http://127.0.0.1:5000/health" in api
    redis = " ".join(SERVICES["redis"]["healthcheck"]["test"])
    assert "redis-cli" in redis
    assert "ping" in redis
    assert "REDIS_PASSWORD" in redis
    postgres = SERVICES["postgres"]["healthcheck"]["test"]
    assert postgres[:2] == ["CMD", "pg_isready"]
    for queue in ("cpu", "gpu"):
        probe = parse_trainq(command_of(SERVICES[f"worker-{queue}"]["healthcheck"]["test"]))
        # The worker pings its own node, the one its command names.
        assert probe.command.name == "probe"
        assert probe.params["node"] == f"{queue}@%h"
    reconciler = parse_trainq(command_of(SERVICES["reconciler"]["healthcheck"]["test"]))
    assert reconciler.command.name == "probe"
    assert reconciler.params["node"] is None


@pytest.mark.parametrize("name", SECRETS)
def test_passwords_are_required_and_never_defaulted(name: str) -> None:
    uses = re.findall(rf"\$\{{{name}([^}}]*)\}}", COMPOSE_TEXT)
    assert uses, f"{name} is never used"
    # Every use is ${NAME:?...}: compose refuses to start without it; none has a fallback.
    assert all(use.startswith(":?") for use in uses), uses
    environment = SERVICES["api"]["environment"]
    with pytest.raises(KeyError, match=name):
        interpolate(
            environment["TRAINQ_BROKER_URL"] + environment["TRAINQ_DATABASE_URL"],
            {key: value for key, value in OPERATOR_ENV.items() if key != name},
        )


def test_the_published_api_refuses_to_start_without_tokens() -> None:
    # The API is published on every interface: compose must not start it open.
    assert SERVICES["api"]["ports"]
    uses = re.findall(r"\$\{TRAINQ_API_TOKENS([^}]*)\}", COMPOSE_TEXT)
    assert uses
    assert all(use.startswith(":?") for use in uses), uses
    tokens = SERVICES["api"]["environment"]["TRAINQ_API_TOKENS"]
    with pytest.raises(KeyError, match="TRAINQ_API_TOKENS"):
        interpolate(tokens, {"REDIS_PASSWORD": "r", "POSTGRES_PASSWORD": "p"})
    assert interpolate(tokens, OPERATOR_ENV) == OPERATOR_ENV["TRAINQ_API_TOKENS"]


def test_no_password_is_written_into_the_file() -> None:
    assert "POSTGRES_HOST_AUTH_METHOD" not in COMPOSE_TEXT
    redis = SERVICES["redis"]
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert '--requirepass "$$REDIS_PASSWORD"' in " ".join(redis["command"])
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    # The URLs take their passwords from the operator's environment, nothing else.
    environment = SERVICES["api"]["environment"]
    database = make_url(interpolate(environment["TRAINQ_DATABASE_URL"], OPERATOR_ENV))
    broker = urlsplit(interpolate(environment["TRAINQ_BROKER_URL"], OPERATOR_ENV))
    assert (database.drivername, database.host, database.password) == (
        "postgresql+psycopg",
        "postgres",
        OPERATOR_ENV["POSTGRES_PASSWORD"],
    )
    assert (broker.scheme, broker.hostname, broker.password) == (
        "redis",
        "redis",
        OPERATOR_ENV["REDIS_PASSWORD"],
    )


@pytest.mark.parametrize("service", ["redis", "postgres"])
def test_redis_and_postgres_stay_inside_the_compose_network(service: str) -> None:
    spec = SERVICES[service]
    assert "ports" not in spec
    assert "network_mode" not in spec


def test_redis_keeps_accepted_jobs_and_never_evicts_them() -> None:
    command = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(volume.endswith(":/data") for volume in SERVICES["redis"]["volumes"])
    assert any(
        volume.endswith(":/var/lib/postgresql/data") for volume in SERVICES["postgres"]["volumes"]
    )


def test_gpu_worker_reserves_nvidia_gpus_and_runs_the_cuda_image() -> None:
    worker = SERVICES["worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] for device in devices)
    # One GPU per replica: a worker trains on one device, `count: all` would hand it every GPU.
    assert len(devices) == 1
    assert devices[0].get("count") == 1 or len(devices[0].get("device_ids", [])) == 1
    assert "count" not in devices[0] or "device_ids" not in devices[0]  # compose takes one
    assert worker["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert "deploy" not in SERVICES["worker-cpu"]


def test_migrations_run_once_before_everything_that_uses_the_database() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for service in TRAINQ_SERVICES[1:]:
        depends = SERVICES[service]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", service
        assert depends["redis"]["condition"] == "service_healthy", service


def test_cpu_worker_scales() -> None:
    worker = SERVICES["worker-cpu"]
    # Replicas would collide on a fixed container name, hostname (node name) or host port.
    assert not {"container_name", "hostname", "ports"} & set(worker)


def test_shared_settings_come_from_anchors() -> None:
    assert "x-trainq-env: &env" in COMPOSE_TEXT
    assert "x-service: &service" in COMPOSE_TEXT
    assert COMPOSE_TEXT.count("<<: *service") >= 4
    environments = [SERVICES[service]["environment"] for service in TRAINQ_SERVICES]
    assert all(environment == COMPOSE["x-trainq-env"] for environment in environments)


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile", "docker/Dockerfile.gpu"])
def test_images_install_the_project_with_the_pinned_torch(dockerfile: str) -> None:
    assert dockerfile in {SERVICES[s]["build"]["dockerfile"] for s in TRAINQ_SERVICES}
    text = (ROOT / dockerfile).read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert "torch==2.13.0" in text
    assert '"torch==2.13.0"' in (ROOT / "pyproject.toml").read_text()
    assert "pip install -e ." in text
    user = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user
    assert user[-1] not in ("root", "0")


def test_cpu_image_takes_the_cpu_build_of_torch() -> None:
    text = (ROOT / "docker/Dockerfile").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in text


def test_build_context_leaves_out_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var"} <= set(ignored)
