"""Search sweeps: the space checked up front, and the controller's asks against the tables."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient

from service.active_cap import active_jobs
from service.broker import make_celery
from service.config import Config, Limits
from service.db import session_scope
from service.jobspec import SpecError
from service.models import Job, JobStatus, Sweep
from service.ops.queued_messages import job_ids_in_broker
from service.sweeps.controller import ask_trials, control_once, fixed_capacity
from service.sweeps.request import validate_sweep
from service.sweeps.search import check_space
from service.sweeps.store import status_counts, sweep_to_dict
from tests.support.scoped_tokens import bearer, make_scoped_app
from tests.support.waiting import wait_until
from worker.attempts.claims import claim_job
from worker.attempts.record import finish_job, record_chunks

BASE = {"stage": "optim", "iterations": 4, "N": 4, "D_in": 4, "H": 4, "D_out": 2}
SPACE = {"lr": {"log_uniform": [1e-4, 1.0]}, "optimizer": ["sgd", "adam", "rmsprop"]}


def search_body(method: str = "tpe", n: int = 6, parallel: int | None = 2, **extra: Any) -> dict:
    return {
        "name": "search",
        "base": BASE,
        "search": {"method": method, "n": n, "parallel": parallel, "space": SPACE},
        "seed": 7,
        **extra,
    }


@pytest.mark.parametrize(
    ("base", "space", "field"),
    [
        ({"stage": "tensors"}, {"optimizer": ["sgd", "adam"]}, "search.space.optimizer"),
        ({"optimizer": "adam"}, {"stage": ["optim", "tensors"]}, "base.optimizer"),
        ({"stage": "optim"}, {"lr": {"uniform": [0.1, 20.0]}}, "search.space.lr"),
        ({"stage": "optim"}, {"momentum": [0.5], "optimizer": ["sgd"]}, "search.space.momentum"),
    ],
)
def test_an_impossible_space_is_refused_naming_the_field(
    base: dict, space: dict, field: str
) -> None:
    request = validate_sweep(
        {"name": "s", "base": base, "search": {"method": "tpe", "n": 3, "space": space}}
    )
    with pytest.raises(SpecError) as caught:
        check_space(request, Limits())
    assert caught.value.field == field


def test_skip_invalid_refuses_only_a_space_with_no_valid_trial() -> None:
    some = {"method": "random", "n": 3, "space": {"optimizer": ["sgd", "adam"]}}
    none = {"method": "random", "n": 3, "space": {"optimizer": ["adam", "rmsprop"]}}
    base = {"stage": "tensors"}
    check_space(validate_sweep({"name": "s", "base": base, "search": some, "skip_invalid": True}),
                Limits())  # fmt: skip
    with pytest.raises(SpecError) as caught:
        check_space(
            validate_sweep({"name": "s", "base": base, "search": none, "skip_invalid": True}),
            Limits(),
        )
    assert caught.value.field == "search.space.optimizer"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"grid": {"lr": [0.1]}}, "grid"),
        ({"seeds": [1, 2]}, "seeds"),
        ({"search": {"method": "cmaes", "n": 2, "space": SPACE}}, "search.method"),
        ({"search": {"method": "tpe", "n": 0, "space": SPACE}}, "search.n"),
        ({"search": {"method": "tpe", "n": 2, "space": {}}}, "search.space"),
        ({"search": {"method": "tpe", "n": 2, "space": {"tags": [["a"]]}}}, "search.space.tags"),
        ({"search": {"method": "tpe", "n": 2, "parallel": 0, "space": SPACE}}, "search.parallel"),
    ],
)
def test_bad_search_requests_name_the_key(extra: dict, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_sweep({**search_body(), **extra})
    assert caught.value.field == field


def test_a_search_sweep_is_stored_without_trials_until_the_controller_asks(
    client: FlaskClient,
) -> None:
    response = client.post("/api/v1/sweeps", json=search_body())
    assert response.status_code == 201, response.get_json()
    sweep = response.get_json()
    assert (sweep["job_count"], sweep["done"], sweep["varied"]) == (0, False, ["lr", "optimizer"])
    assert sweep["request"]["seed"] == 7
    bad = search_body()
    bad["base"] = {**BASE, "stage": "tensors"}
    response = client.post("/api/v1/sweeps", json=bad)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "search.space.optimizer"


@pytest.fixture
def celery_app(broker_url: str) -> Celery:
    return make_celery(Config(database_url="", broker_url=broker_url))


def add_sweep(factory: so.sessionmaker[so.Session], body: dict) -> int:
    """A search sweep as the API stores it."""
    with session_scope(factory) as session:
        sweep = Sweep(
            name=body["name"],
            seed=body["seed"],
            request=body,
            varied=sorted(SPACE),
            job_count=0,
            trials_wanted=body["search"]["n"],
        )
        session.add(sweep)
    return sweep.id


def objective(job: Job) -> float:
    """A made-up final loss with its best at lr = 1e-2 and adam."""
    return (math.log10(job.lr) + 2) ** 2 + (0.0 if job.optimizer == "adam" else 1.0)


def end_in_flight(factory: so.sessionmaker[so.Session], sweep_id: int) -> int:
    """Train every queued trial of the sweep to its objective, as a worker would record it."""
    with factory() as session:
        ids = session.scalars(
            sa.select(Job.id).where(Job.sweep_id == sweep_id, Job.status == JobStatus.QUEUED)
        ).all()
    for job_id in ids:
        with session_scope(factory) as session:
            claim, _ = claim_job(session, job_id, "w", lease_seconds=60, max_attempts=1)
            assert claim is not None
            loss = objective(session.get_one(Job, job_id))
            record_chunks(session, [(claim, 0, [9.0, 8.0, 7.0, loss])], 60)
            assert finish_job(session, claim, JobStatus.SUCCEEDED)
    return len(ids)


def trials(factory: so.sessionmaker[so.Session], sweep_id: int) -> list[tuple[float, str]]:
    with factory() as session:
        query = sa.select(Job.lr, Job.optimizer).where(Job.sweep_id == sweep_id).order_by(Job.id)
        return [(lr, optimizer) for lr, optimizer in session.execute(query)]


def drive(
    factory: so.sessionmaker[so.Session],
    celery_app: Celery,
    config: Config,
    sweep_id: int,
    controller: str = "c",
    rounds: int = 1000,
) -> None:
    """Ask and end trials in turn until the sweep wants no more (or `rounds` asks)."""
    for _ in range(rounds):
        asked = control_once(factory, celery_app, config, controller)
        with factory() as session:
            in_flight = session.scalar(
                sa.select(sa.func.count()).where(
                    Job.sweep_id == sweep_id, Job.status == JobStatus.QUEUED
                )
            )
            sweep = session.get_one(Sweep, sweep_id)
            parallel = sweep.request["search"]["parallel"]
            assert in_flight is not None
            assert in_flight <= parallel
            done = sweep.trials_wanted == sweep.job_count
        if asked == 0 and done:
            return
        end_in_flight(factory, sweep_id)


@pytest.mark.parametrize("method", ["tpe", "gp", "random"])
def test_the_controller_asks_n_trials_parallel_at_a_time_reproducibly(
    factory: so.sessionmaker[so.Session], celery_app: Celery, database_url: str, method: str
) -> None:
    config = Config(database_url=database_url, broker_url="")
    first = add_sweep(factory, search_body(method, n=12, parallel=2))
    drive(factory, celery_app, config, first)
    again = add_sweep(factory, search_body(method, n=12, parallel=2))
    drive(factory, celery_app, config, again)
    with factory() as session:
        sweep = session.get_one(Sweep, first)
        assert (sweep.job_count, sweep.trials_asked, sweep.trials_wanted) == (12, 12, 12)
    assert len(trials(factory, first)) == 12
    # The same seed and the same outcomes: the same trials.
    assert trials(factory, first) == trials(factory, again)
    assert len(set(trials(factory, first))) >= 10


def test_a_replaced_controller_continues_the_sweep_it_took_over(
    factory: so.sessionmaker[so.Session], celery_app: Celery, database_url: str
) -> None:
    # Given one sweep driven by one controller throughout, and its twin whose controller dies
    config = Config(database_url=database_url, broker_url="", controller_lease_seconds=2.0)
    whole = add_sweep(factory, search_body("tpe", n=14, parallel=1))
    drive(factory, celery_app, config, whole)
    broken = add_sweep(factory, search_body("tpe", n=14, parallel=1))
    drive(factory, celery_app, config, broken, controller="a", rounds=11)
    end_in_flight(factory, broken)
    # When another controller comes: nothing while the first one's lease runs, then it takes over
    assert control_once(factory, celery_app, config, "b") == 0
    wait_until(lambda: control_once(factory, celery_app, config, "b"), 10, "b takes the sweep over")
    drive(factory, celery_app, config, broken, controller="b")
    # Then the sweep has exactly its 14 trials, the same ones as the sweep never interrupted
    assert trials(factory, broken) == trials(factory, whole)
    with factory() as session:
        sweep = session.get_one(Sweep, broken)
        assert (sweep.job_count, sweep.controller) == (14, "b")


def test_trials_a_killed_holder_stored_but_never_sent_are_sent_by_its_successor(
    factory: so.sessionmaker[so.Session], celery_app: Celery, database_url: str, broker_url: str
) -> None:
    # Given a holder killed between storing two trials and sending them
    config = Config(database_url=database_url, broker_url="", controller_lease_seconds=1.0)
    sweep_id = add_sweep(factory, search_body("random", n=6, parallel=2))
    stored = ask_trials(factory, sweep_id, "a", config, fixed_capacity(2))
    assert len(stored) == 2
    # When another controller takes the sweep over once the lease has run out
    wait_until(lambda: control_once(factory, celery_app, config, "b"), 10, "b takes the sweep over")
    # Then it sent those two, and asked none beside them while they are in flight
    with factory() as session:
        jobs = session.scalars(sa.select(Job).where(Job.sweep_id == sweep_id)).all()
        assert session.get_one(Sweep, sweep_id).controller == "b"
    assert sorted((job.id, job.queue) for job in jobs) == sorted(stored)
    assert all(job.enqueued_at is not None for job in jobs)
    assert {job_id for job_id, _ in stored} <= job_ids_in_broker(broker_url, 60)
    # And once sent, they are not sent again
    assert control_once(factory, celery_app, config, "b") == 0


def test_a_cancelled_search_sweep_asks_no_more_and_is_done_when_its_trials_end(
    factory: so.sessionmaker[so.Session], celery_app: Celery, database_url: str
) -> None:
    config = Config(database_url=database_url, broker_url="")
    sweep_id = add_sweep(factory, search_body("random", n=6, parallel=2))
    assert control_once(factory, celery_app, config, "c") == 2
    with session_scope(factory) as session:
        session.get_one(Sweep, sweep_id).cancel_requested = True
    end_in_flight(factory, sweep_id)
    assert control_once(factory, celery_app, config, "c") == 0
    with factory() as session:
        sweep = session.get_one(Sweep, sweep_id)
        shown = sweep_to_dict(sweep, status_counts(session, [sweep_id])[sweep_id])
    assert (shown["job_count"], shown["done"], shown["trials"]["wanted"]) == (2, True, 6)


@pytest.fixture
def scoped(database_url: str, broker_url: str) -> Iterator[Flask]:
    """The API with named tokens (alice and bob submit, ops is admin), on this test's database."""
    app = make_scoped_app(database_url, broker_url, max_sweep_jobs=50)
    yield app
    app.extensions["trainq.engine"].dispose()


def test_a_search_sweep_and_its_trials_belong_to_their_submitter(
    scoped: Flask, factory: so.sessionmaker[so.Session], celery_app: Celery, database_url: str
) -> None:
    # Given alice's search sweep, its first trials asked
    client = scoped.test_client()
    response = client.post("/api/v1/sweeps", json=search_body("random"), headers=bearer("alice"))
    assert response.status_code == 201, response.get_json()
    sweep = response.get_json()
    assert sweep["owner"] == "alice"
    config = Config(database_url=database_url, broker_url="")
    assert control_once(factory, celery_app, config, "c") == 2
    # Then ?owner= finds them, bob may not cancel the sweep, and alice may
    page = client.get("/api/v1/jobs?owner=alice", headers=bearer("bob")).get_json()
    assert (page["total"], {job["sweep_id"] for job in page["jobs"]}) == (2, {sweep["id"]})
    cancel = f"/api/v1/sweeps/{sweep['id']}/cancel"
    assert client.post(cancel, headers=bearer("bob")).status_code == 403
    assert client.post(cancel, headers=bearer("alice")).status_code == 200
    assert {job["status"] for job in client.get(
        "/api/v1/jobs?owner=alice", headers=bearer("alice")
    ).get_json()["jobs"]} == {"cancelled"}  # fmt: skip


def test_a_search_of_more_trials_than_the_sweep_cap_is_refused(scoped: Flask) -> None:
    body = search_body("random", n=51)
    response = scoped.test_client().post("/api/v1/sweeps", json=body, headers=bearer("alice"))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("too_many_jobs", "search.n")
    assert "50" in error["message"]


def test_the_controller_holds_trials_back_at_the_owners_active_cap(
    scoped: Flask, factory: so.sessionmaker[so.Session], celery_app: Celery, database_url: str
) -> None:
    # Given alice with one job queued, a cap of 3 active jobs, and her search of 6, 4 at a time
    client = scoped.test_client()
    headers = bearer("alice")
    assert client.post("/api/v1/jobs", json={"stage": "nn"}, headers=headers).status_code == 201
    body = search_body("random", n=6, parallel=4)
    sweep_id = client.post("/api/v1/sweeps", json=body, headers=headers).get_json()["id"]
    config = Config(database_url=database_url, broker_url="", max_active_jobs_per_owner=3)

    def active() -> int:
        with factory() as session:
            return active_jobs(session, "alice", lock=False)

    # When the controller asks and trials end, in turn: 2 at first (3 less the one job), then
    # the rest as room frees up
    asked = [control_once(factory, celery_app, config, "c")]
    assert (asked[0], active()) == (2, 3)
    while sum(asked) < 6:
        end_in_flight(factory, sweep_id)
        asked.append(control_once(factory, celery_app, config, "c"))
        # Then the owner is never past the cap, and the sweep gets all its trials
        assert active() <= 3
        assert len(asked) < 10, asked
    assert asked == [2, 2, 2]
    with factory() as session:
        assert session.get_one(Sweep, sweep_id).job_count == 6


def test_a_cancel_during_the_ask_stores_no_trial(
    client: FlaskClient, factory: so.sessionmaker[so.Session], celery_app: Celery, database_url: str
) -> None:
    # Given a search sweep whose controller is asking (the live capacity is asked mid-plan)
    body = search_body("random", n=6, parallel=None)
    sweep_id = client.post("/api/v1/sweeps", json=body).get_json()["id"]

    def capacity(queue: str) -> int:
        # When the sweep is cancelled then, before the plan is written
        assert client.post(f"/api/v1/sweeps/{sweep_id}/cancel").status_code == 200
        return 3

    config = Config(database_url=database_url, broker_url="")
    # Then no trial is stored, and none sent
    assert control_once(factory, celery_app, config, "c", capacity) == 0
    with factory() as session:
        assert session.get_one(Sweep, sweep_id).job_count == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0
