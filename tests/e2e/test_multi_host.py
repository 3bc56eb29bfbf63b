"""Workers on two "machines" share one Redis and one PostgreSQL over TCP and drain one batch.

Each machine is a network namespace with its own hostname: its only way to the services is a
veth link to this namespace, so what works here works across real hosts on a private network.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from service.db import make_engine, make_session_factory
from service.migrate import upgrade
from service.models import Job
from service.ops.redis_server import RedisServer, free_port
from tests.conftest import Stack, make_test_app
from tests.e2e.test_sweeps import wait_for_sweep
from tests.support.netns import Host, netns_unavailable, private_hosts
from tests.support.postgres import PostgresServer
from tests.support.processes import ROOT, WorkerProcess
from tests.support.rung_decisions import asha_rung_decisions

pytestmark = pytest.mark.postgres

HOSTNAMES = ("trainq-host-a", "trainq-host-b")
JOB = {"stage": "module", "iterations": 400, "N": 32, "D_in": 400, "H": 64, "D_out": 10}


@dataclass
class Cluster:
    """The shared services, two worker machines, and the API in front of them."""

    stack: Stack
    hosts: list[Host]
    redis: RedisServer
    postgres: PostgresServer
    database_url: str

    def env_for(self, host: Host) -> dict[str, str]:
        """The TRAINQ_* settings a worker on `host` is given: the services at their LAN address."""
        database = make_url(self.database_url).set(host=host.server_address)
        broker = self.redis.url.replace(f"@{self.redis.host}:", f"@{host.server_address}:")
        return {
            "TRAINQ_DATABASE_URL": database.render_as_string(hide_password=False),
            "TRAINQ_BROKER_URL": broker,
        }

    def run_on(self, host: Host, hostname: str, argv: list[str]) -> subprocess.CompletedProcess:
        """Run a command on `host` under `hostname`, with that host's settings."""
        env = {**os.environ, **self.env_for(host)}
        return subprocess.run(
            [*host.command(hostname), *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _can_connect(cluster: Cluster, host: Host, address: str, port: int) -> bool:
    """Whether a TCP connection from inside `host` to address:port succeeds."""
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, {port}), timeout=2).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    return cluster.run_on(host, HOSTNAMES[0], [sys.executable, "-c", probe]).returncode == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Redis (password, AOF) and PostgreSQL on the LAN ends, a worker per host, the API here."""
    reason = netns_unavailable()
    if reason:
        pytest.fail(f"multi-host test needs network namespaces: {reason}")
    with private_hosts(2) as hosts:
        lan = [host.server_address for host in hosts]
        redis_server = RedisServer(
            free_port(),
            tmp_path_factory.mktemp("redis-lan"),
            password=secrets.token_hex(16),
            appendonly=True,
            bind=" ".join(["127.0.0.1", *lan]),
        )
        postgres = PostgresServer(settings={"listen_addresses": ",".join(["127.0.0.1", *lan])})
        workers: list[WorkerProcess] = []
        engine = None
        app = None
        try:
            redis_server.start()
            postgres.start()
            # Like a real pg_hba.conf: the worker machines' networks may log in.
            with open(postgres.data_dir / "pg_hba.conf", "a") as hba:
                for host in hosts:
                    hba.write(f"host all all {host.network} trust\n")
            with postgres.connect() as connection:
                connection.execute("SELECT pg_reload_conf()")
            database_url = postgres.create_database("trainq_lan")
            upgrade(database_url)
            app = make_test_app(database_url, redis_server.url)
            engine = make_engine(database_url)
            stack = Stack(
                "postgresql",
                database_url,
                redis_server.url,
                app,
                app.test_client(),
                make_session_factory(engine),
                workers,
            )
            cluster = Cluster(stack, hosts, redis_server, postgres, database_url)
            logs = tmp_path_factory.mktemp("host-logs")
            for host, hostname in zip(hosts, HOSTNAMES, strict=True):
                env = cluster.env_for(host)
                worker = WorkerProcess(
                    env["TRAINQ_DATABASE_URL"],
                    env["TRAINQ_BROKER_URL"],
                    logs / hostname,
                    concurrency=1,
                    prefix=host.command(hostname),
                )
                workers.append(worker)
                worker.start()
            yield cluster
        finally:
            for worker in workers:
                worker.stop()
            if engine is not None:
                engine.dispose()
            if app is not None:
                app.extensions["trainq.engine"].dispose()
            postgres.cleanup()
            redis_server.stop()


def test_a_host_reaches_the_services_only_over_its_link(cluster: Cluster) -> None:
    host = cluster.hosts[0]
    # Its own loopback has no Redis: the worker there cannot be using this machine's 127.0.0.1.
    assert not _can_connect(cluster, host, "127.0.0.1", cluster.redis.port)
    assert _can_connect(cluster, host, host.server_address, cluster.redis.port)
    assert _can_connect(cluster, host, host.server_address, cluster.postgres.port)
    # Each host reaches only its own link's end, not the other host's network.
    assert not _can_connect(cluster, host, cluster.hosts[1].address, cluster.redis.port)


def test_two_hosts_drain_one_sweep_and_each_job_names_its_worker(cluster: Cluster) -> None:
    stack = cluster.stack
    # Given a twelve-job sweep submitted over the API
    response = stack.client.post(
        "/api/v1/sweeps",
        # One message per job, so the two hosts share the twelve however they are timed.
        json={
            "name": "lan",
            "base": JOB,
            "grid": {"lr": [1e-4, 1e-3, 1e-2]},
            "repeats": 4,
            "fused": False,
        },
    )
    assert response.status_code == 201, response.get_json()
    sweep_id = response.get_json()["id"]
    # When both hosts' workers drain the queue
    page = stack.client.get(f"/api/v1/jobs?sweep={sweep_id}&limit=100&sort=id").get_json()
    ids = [job["id"] for job in page["jobs"]]
    assert len(ids) == 12
    jobs = [stack.wait(job_id, timeout=180) for job_id in ids]
    # Then every job succeeded, on one of the two hosts, and both hosts took part
    assert [job["status"] for job in jobs] == ["succeeded"] * 12, jobs
    nodes = {f"cpu@{hostname}" for hostname in HOSTNAMES}
    ran_on = [job["worker"] for job in jobs]
    assert set(ran_on) <= nodes, ran_on
    assert set(ran_on) == nodes, f"one host ran everything: {ran_on}"
    assert all(job["steps_done"] == JOB["iterations"] for job in jobs)
    # And the services saw each host connect from its own address, over TCP
    with cluster.postgres.connect("trainq_lan") as connection:
        rows = connection.execute(
            "SELECT DISTINCT host(client_addr) FROM pg_stat_activity WHERE client_addr IS NOT NULL"
        ).fetchall()
    database_clients = {row[0] for row in rows}
    broker = redis.Redis.from_url(cluster.redis.url)
    broker_clients = {client["addr"].rsplit(":", 1)[0] for client in broker.client_list()}
    broker.close()
    for host in cluster.hosts:
        assert host.address in database_clients, database_clients
        assert host.address in broker_clients, broker_clients


def test_probe_on_a_host_pings_its_own_worker(cluster: Cluster) -> None:
    # The healthcheck the compose file gives a worker: `trainq probe --worker cpu@%h`.
    probe = [sys.executable, "-m", "service.cli", "probe", "--worker", "cpu@%h"]
    for host, hostname in zip(cluster.hosts, HOSTNAMES, strict=True):
        result = cluster.run_on(host, hostname, [*probe, "--timeout", "5"])
        assert result.returncode == 0, result.stderr
        assert f"cpu@{hostname} answered" in result.stdout
    absent = cluster.run_on(cluster.hosts[0], "trainq-host-gone", [*probe, "--timeout", "1"])
    assert absent.returncode == 1
    assert "worker cpu@trainq-host-gone: no reply" in absent.stderr


def test_two_hosts_prune_an_asha_grid_as_the_rule_decides_from_the_stored_rows(
    cluster: Cluster,
) -> None:
    stack = cluster.stack
    # Given an asha grid whose fast learners (the larger lr) should outlast the slow ones,
    # one message per job so that both hosts train it, each deciding its own jobs' rungs
    response = stack.client.post(
        "/api/v1/sweeps",
        json={
            "name": "lan-asha",
            "base": {**JOB, "optimizer": "adam"},
            "grid": {"lr": [3e-3, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7]},
            "seeds": [1, 2],
            "early_stop": {"rule": "asha", "grace": 8, "reduction": 2},
            "fused": False,
        },
    )
    assert response.status_code == 201, response.get_json()
    sweep_id = response.get_json()["id"]
    # When both hosts' workers drain it
    sweep = wait_for_sweep(stack, sweep_id, timeout=240)
    # Then some were pruned and the others succeeded
    counts = sweep["counts"]
    assert counts["pruned"] >= 2, sweep
    assert counts["pruned"] + counts["succeeded"] == 12, sweep
    with stack.sessions() as session:
        jobs = session.scalars(sa.select(Job).where(Job.sweep_id == sweep_id)).all()
        host_of = {job.id: job.worker for job in jobs}
        # And every job's decision at every rung is the rule's on the histories stored then
        decisions = asha_rung_decisions(session, sweep_id)
    nodes = {f"cpu@{hostname}" for hostname in HOSTNAMES}
    assert set(host_of.values()) == nodes, host_of
    assert {host_of[decision.job_id] for decision in decisions} == nodes, decisions
    wrong = [decision for decision in decisions if not decision.agrees]
    assert not wrong, wrong
    stopped = [decision for decision in decisions if not decision.went_on]
    assert len(stopped) == counts["pruned"], stopped
    certain = sum(decision.certain for decision in decisions)
    print(f"\n{len(decisions)} rung decisions, {certain} certain, {len(stopped)} stops")
    # Some stops were the rule's whichever jobs running alongside had been seen
    assert any(decision.certain for decision in stopped), decisions
