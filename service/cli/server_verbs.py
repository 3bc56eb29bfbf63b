"""Server verbs: up, api, worker, db upgrade, reconcile, controller."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import click

from service.addresses import is_loopback
from service.choices import QUEUES
from service.cli.client import TrainqClient
from service.config import Config

ALLOW_OPEN_ENV = "TRAINQ_ALLOW_OPEN"
ALLOW_OPEN = click.option(
    "--allow-open",
    is_flag=True,
    envvar=ALLOW_OPEN_ENV,
    help=f"serve an API without tokens on a non-loopback address (or {ALLOW_OPEN_ENV}=1)",
)


def refuse_open_api(host: str, allow_open: bool) -> None:
    """Refuse to bind an API without tokens where other machines can reach it, unless told to."""
    if allow_open or is_loopback(host) or Config.from_env().api_tokens:
        return
    raise click.UsageError(
        f"refusing to serve an open API on {host}: TRAINQ_API_TOKENS is empty, so anyone who "
        f"reaches this address could submit and cancel jobs. Set TRAINQ_API_TOKENS (see "
        f"`trainq token new`), bind 127.0.0.1, or pass --allow-open ({ALLOW_OPEN_ENV}=1)"
    )


def announce_ready(url: str, every: float = 1.0, patience: float = 120.0) -> None:
    """Print "ready" once /health says ok: the API answers and a worker serves each queue.

    Said once; if it takes longer than `patience` seconds, what is missing is said once too.
    """
    client = TrainqClient(url, timeout=5)
    started = time.monotonic()
    complained = False
    while True:
        try:
            body = client.health()
        except click.ClickException as error:
            body = {"warnings": [error.message]}
        if body.get("status") == "ok":
            workers = ", ".join(f"{q}: {len(names)}" for q, names in body["workers"].items())
            click.echo(f"ready: {url} takes jobs, live workers per queue {workers}")
            return
        if not complained and time.monotonic() - started > patience:
            missing = "; ".join(body.get("warnings") or [body.get("status", "not answering")])
            click.echo(f"not ready after {patience:.0f} s: {missing} (logs in var/logs/)")
            complained = True
        time.sleep(every)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--concurrency", type=int, help="CPU worker processes (default: one per core).")
@ALLOW_OPEN
def up(host: str, port: int, concurrency: int | None, allow_open: bool) -> None:
    """Everything on this machine: Redis, SQLite under ./var, API, workers. Ctrl-C stops it."""
    from service.ops.supervisor import up as run_up

    refuse_open_api(host, allow_open)
    if allow_open:
        # The API process `up` starts checks again: it inherits the permission.
        os.environ[ALLOW_OPEN_ENV] = "1"
    # Asked over loopback whatever address the API binds: this is its own machine.
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"
    threading.Thread(target=announce_ready, args=(url,), name="ready", daemon=True).start()
    run_up(host, port, concurrency)


def metrics_dir(port: int) -> Path:
    """Where the API's processes keep their request metrics, emptied for this start.

    PROMETHEUS_MULTIPROC_DIR when set, else var/prometheus/api-PORT: the files of a previous run
    would otherwise be added to this one's counts.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    folder = Path(given) if given else Config.from_env().var_dir / "prometheus" / f"api-{port}"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    return folder


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn processes")
@ALLOW_OPEN
def api(host: str, port: int, workers: int, allow_open: bool) -> None:
    """Serve the HTTP API under gunicorn."""
    refuse_open_api(host, allow_open)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir(port))
    argv = [
        sys.executable, "-m", "gunicorn",
        "-c", "python:service.ops.gunicorn_hooks",
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "--threads", "4",
        "--graceful-timeout", "10",
        "--access-logfile", "-",
        "service.api:create_app()",
    ]  # fmt: skip
    os.execv(sys.executable, argv)


POOLS = ("prefork", "threads", "solo")


def worker_command(
    queues: str, pool: str | None, concurrency: int | None, hostname: str | None, loglevel: str
) -> tuple[list[str], dict[str, str]]:
    """The celery worker command line and environment `trainq worker` runs."""
    # CUDA must never be initialised in a parent that forks, so the GPU worker uses threads.
    pool = pool or ("threads" if queues == "gpu" else "prefork")
    if queues == "gpu" and pool == "prefork":
        raise click.UsageError(
            "the gpu queue cannot use the prefork pool: CUDA does not survive fork "
            "(use --pool threads, the default for --queues gpu)"
        )
    count = concurrency or (1 if queues == "gpu" else max(1, os.cpu_count() or 1))
    argv = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--queues", queues, "--pool", pool, "--concurrency", str(count),
        "--hostname", hostname or f"{queues}-{os.getpid()}@%h",
        "--loglevel", loglevel, "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    env = dict(os.environ)
    if queues == "cpu":
        # On a GPU host, torch could otherwise create a CUDA context per CPU pool process
        # (a lazy check in torch.optim is enough), holding GPU memory that jobs there need.
        env["CUDA_VISIBLE_DEVICES"] = ""
    return argv, env


@click.command()
@click.option("--queues", type=click.Choice(QUEUES), default="cpu", show_default=True)
@click.option(
    "--concurrency", type=int, help="processes (cpu, default one per core) or threads (gpu)"
)
@click.option("--hostname", help="Celery node name, e.g. cpu@%h (unique per worker)")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option(
    "--pool",
    type=click.Choice(POOLS),
    help="Celery pool (default: prefork for cpu, threads for gpu)",
)
def worker(
    queues: str, concurrency: int | None, hostname: str | None, loglevel: str, pool: str | None
) -> None:
    """Run a Celery worker on the cpu or gpu queue."""
    argv, env = worker_command(queues, pool, concurrency, hostname, loglevel)
    os.execve(sys.executable, argv, env)


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to `revision`."""
    from service.migrate import upgrade

    config = Config.from_env()
    upgrade(config.database_url, revision)
    click.echo(f"database at {revision}: {config.database_url}")


@click.command()
@click.option("--once", is_flag=True, help="one pass, then exit")
def reconcile(once: bool) -> None:
    """Send jobs whose message never left and re-send those whose worker was lost."""
    import logging

    from service.broker import make_celery
    from service.db import make_engine, make_session_factory
    from service.ops.reconcile import reconcile_forever, reconcile_once

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = Config.from_env()
    factory = make_session_factory(make_engine(config.database_url), writer=True)
    app = make_celery(config)
    if once:
        click.echo(reconcile_once(factory, app, config))
    else:
        reconcile_forever(factory, app, config)


@click.command()
@click.option("--once", is_flag=True, help="one pass, then exit")
@click.option("--name", help="this controller's name in the sweeps' leases (default host:pid)")
def controller(once: bool, name: str | None) -> None:
    """Ask search sweeps' next trials as earlier ones end (safe to run in several places)."""
    import logging
    import os
    import socket

    from service.broker import make_celery
    from service.db import make_engine, make_session_factory
    from service.sweeps.controller import control_forever, control_once

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = Config.from_env()
    factory = make_session_factory(make_engine(config.database_url), writer=True)
    app = make_celery(config)
    me = name or f"{socket.gethostname()}:{os.getpid()}"
    if once:
        click.echo(control_once(factory, app, config, me))
    else:
        control_forever(factory, app, config, me)


@click.command()
@click.option("--worker", "node", help="also ping this Celery node; %h is this machine's hostname")
@click.option("--timeout", default=5.0, show_default=True, help="seconds to wait for the node")
def probe(node: str | None, timeout: float) -> None:
    """Exit 0 when the database and broker answer (and the worker NODE does): a healthcheck."""
    from service.broker import make_celery
    from service.ops.probe import broker_error, database_error, node_name, worker_answers

    config = Config.from_env()
    app = make_celery(config)
    problems = []
    if error := database_error(config.database_url):
        problems.append(f"database: {error}")
    if error := broker_error(app):
        problems.append(f"broker: {error}")
    elif node and not worker_answers(app, node_name(node), timeout):
        problems.append(f"worker {node_name(node)}: no reply in {timeout} s")
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(1)
    click.echo("ok" + (f": {node_name(node)} answered" if node else ""))


COMMANDS = [up, api, worker, db, reconcile, controller, probe]
