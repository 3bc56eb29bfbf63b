"""`trainq probe`: the healthcheck a container runs against its database and broker."""

from __future__ import annotations

from click.testing import CliRunner

from service.cli import main
from service.ops.redis_server import free_port


def probe(database_url: str, broker_url: str, *args: str) -> tuple[int, str, str]:
    """Run `trainq probe ARGS` with these services; exit code, stdout, stderr."""
    env = {"TRAINQ_DATABASE_URL": database_url, "TRAINQ_BROKER_URL": broker_url}
    result = CliRunner().invoke(main, ["probe", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_probe_passes_when_database_and_broker_answer(database_url: str, broker_url: str) -> None:
    assert probe(database_url, broker_url) == (0, "ok\n", "")


def test_probe_fails_naming_the_broker_that_does_not_answer(database_url: str) -> None:
    code, _, errors = probe(database_url, f"redis://127.0.0.1:{free_port()}/0")
    assert code == 1
    assert errors.startswith("broker: ")


def test_probe_fails_naming_the_database_that_does_not_answer(broker_url: str) -> None:
    dead = f"postgresql+psycopg://trainq@127.0.0.1:{free_port()}/trainq"
    code, _, errors = probe(dead, broker_url)
    assert code == 1
    assert errors.startswith("database: ")
    assert "broker" not in errors


def test_probe_fails_when_the_named_worker_does_not_reply(
    database_url: str, broker_url: str
) -> None:
    code, _, errors = probe(database_url, broker_url, "--worker", "cpu@nowhere", "--timeout", "0.3")
    assert code == 1
    assert "worker cpu@nowhere: no reply" in errors
