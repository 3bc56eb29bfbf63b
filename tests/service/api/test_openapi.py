"""/openapi.json covers every route, and real responses validate against its schemas."""

from __future__ import annotations

import itertools
from typing import Any

import jsonschema
import pytest
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient
from pydantic import BaseModel

from service.api.openapi import openapi_path
from service.jobspec import OPTIMIZERS, STAGES, JobRequest, SpecError, validate_job
from service.sweeps.request import SweepRequest
from tests.service.api.test_api_sweeps import GRID
from tests.service.results_data import add_job, decay


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_every_route_is_documented(app: Flask, document: dict[str, Any]) -> None:
    routes = [r for r in app.url_map.iter_rules() if r.rule.startswith(("/api/v1", "/health"))]
    assert len(routes) >= 12
    for rule in routes:
        path = openapi_path(rule.rule)
        assert path in document["paths"], rule.rule
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operation = document["paths"][path].get(method.lower())
            assert operation is not None, f"{method} {rule.rule}"
            assert operation["summary"]
            assert operation["responses"]
            in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert in_path == set(rule.arguments) - set(rule.defaults or {}), rule.rule
    # And nothing else: every documented path is a route the app serves.
    assert set(document["paths"]) <= {openapi_path(rule.rule) for rule in app.url_map.iter_rules()}


@pytest.mark.parametrize(
    ("path", "model"), [("/api/v1/jobs", JobRequest), ("/api/v1/sweeps", SweepRequest)]
)
def test_request_schema_is_the_validating_model(
    document: dict[str, Any], path: str, model: type[BaseModel]
) -> None:
    body = document["paths"][path]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{model.__name__}"
    }
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        assert document["components"]["schemas"][name] == definition
    assert document["components"]["schemas"][model.__name__] == schema


def check(document: dict[str, Any], path: str, method: str, response: Any) -> None:
    """Validate a response body against the document's schema for its status."""
    answers = document["paths"][path][method]["responses"]
    assert str(response.status_code) in answers, (path, response.status_code)
    schema = answers[str(response.status_code)]["content"]["application/json"]["schema"]
    # The whole document is the root resource, so "#/components/schemas/..." refs resolve.
    jsonschema.Draft202012Validator({**document, **schema}).validate(response.get_json())


def test_real_responses_match_the_document(
    client: FlaskClient, session: so.Session, document: dict[str, Any]
) -> None:
    created = client.post("/api/v1/jobs", json={"stage": "module", "tags": ["t"]})
    check(document, "/api/v1/jobs", "post", created)
    a = add_job(client, session, decay(5.0, 0.9, 50), optimizer="adam")
    b = add_job(client, session, [*decay(5.0, 0.8, 40), float("inf")], status="diverged")
    check(document, "/api/v1/jobs/{job_id}", "get", client.get(f"/api/v1/jobs/{a}"))
    check(document, "/api/v1/jobs", "get", client.get("/api/v1/jobs?limit=1&sort=final_loss"))
    check(document, "/api/v1/jobs/{job_id}/losses", "get", client.get(f"/api/v1/jobs/{a}/losses"))
    diverged = client.get(f"/api/v1/jobs/{b}/losses")
    assert b"Infinity" not in diverged.data
    assert diverged.get_json()["losses"][-1] is None
    check(document, "/api/v1/jobs/{job_id}/losses", "get", diverged)
    check(document, "/api/v1/compare", "get", client.get(f"/api/v1/compare?jobs={a},{b}"))
    check(document, "/api/v1/jobs/{job_id}/export", "get", client.get(f"/api/v1/jobs/{b}/export"))
    check(document, "/api/v1/jobs/{job_id}/cancel", "post", client.post(f"/api/v1/jobs/{a}/cancel"))
    check(document, "/health", "get", client.get("/health"))
    # Errors.
    check(document, "/api/v1/jobs/{job_id}", "get", client.get("/api/v1/jobs/99999"))
    check(document, "/api/v1/jobs", "get", client.get("/api/v1/jobs?limit=0"))
    check(document, "/api/v1/jobs", "post", client.post("/api/v1/jobs", json={"stage": "x"}))
    check(document, "/api/v1/compare", "get", client.get(f"/api/v1/compare?jobs={a},424242"))


def check_request(document: dict[str, Any], path: str, body: Any) -> None:
    """Validate a request body against the document's schema for it."""
    request_body = document["paths"][path]["post"]["requestBody"]
    schema = request_body["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**document, **schema}).validate(body)


def test_real_sweep_requests_and_responses_match_the_document(
    client: FlaskClient, document: dict[str, Any]
) -> None:
    short_random = {"name": "r", "base": {"stage": "optim"}, "random": {"n": 2, "lr": [0.1]}}
    for body in (GRID, short_random):
        check_request(document, "/api/v1/sweeps", body)
        created = client.post("/api/v1/sweeps", json=body)
        check(document, "/api/v1/sweeps", "post", created)
    sweep = created.get_json()["id"]
    check(document, "/api/v1/sweeps", "get", client.get("/api/v1/sweeps?limit=1"))
    check(document, "/api/v1/sweeps/{sweep_id}", "get", client.get(f"/api/v1/sweeps/{sweep}"))
    for view in ("results", "factors", "best-so-far"):
        path = f"/api/v1/sweeps/{{sweep_id}}/{view}"
        check(document, path, "get", client.get(f"/api/v1/sweeps/{sweep}/{view}"))
    cancelled = client.post(f"/api/v1/sweeps/{sweep}/cancel")
    check(document, "/api/v1/sweeps/{sweep_id}/cancel", "post", cancelled)
    # Errors; and an unknown key is refused by the document as by the server.
    check(document, "/api/v1/sweeps/{sweep_id}", "get", client.get("/api/v1/sweeps/99999"))
    bad_sort = client.get(f"/api/v1/sweeps/{sweep}/results?sort=colour")
    check(document, "/api/v1/sweeps/{sweep_id}/results", "get", bad_sort)
    unknown = {**GRID, "surprise": 1}
    with pytest.raises(jsonschema.ValidationError):
        check_request(document, "/api/v1/sweeps", unknown)
    refused = client.post("/api/v1/sweeps", json=unknown)
    assert refused.get_json()["error"]["field"] == "surprise"
    check(document, "/api/v1/sweeps", "post", refused)


def test_a_drifted_body_fails_validation(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["JobPage"]
    page = {"jobs": [], "total": 0, "limit": 1, "offset": 0, "next_offset": None}
    validator = jsonschema.Draft202012Validator({**document, **schema})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(page)  # next_cursor missing
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**page, "next_cursor": None, "surprise": 1})


ABSENT = object()


def test_the_job_schema_says_which_fields_each_stage_takes(document: dict[str, Any]) -> None:
    # Every stage x optimizer x momentum x weight decay: the document accepts exactly the
    # requests validate_job accepts (found by Schemathesis: weight_decay on stage nn).
    schema = document["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]
    validator = jsonschema.Draft202012Validator(
        {**document, **schema["application/json"]["schema"]}
    )
    disagreements = []
    for stage, optimizer, momentum, decay_ in itertools.product(
        STAGES, (ABSENT, None, *OPTIMIZERS), (ABSENT, None, 0.5), (ABSENT, None, 0.1)
    ):
        given = {"optimizer": optimizer, "momentum": momentum, "weight_decay": decay_}
        body = {"stage": stage, **{k: v for k, v in given.items() if v is not ABSENT}}
        try:
            validate_job(body)
            valid = True
        except SpecError:
            valid = False
        if validator.is_valid(body) != valid:
            disagreements.append((body, valid))
    assert disagreements == []


def test_no_enum_parameter_takes_an_empty_value(document: dict[str, Any]) -> None:
    # params._given: an empty value is not an absent one, so the API answers 422 for it.
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for param in operation.get("parameters", []):
                assert "" not in param["schema"].get("enum", ["x"]), (method, path, param)


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        # Found by Schemathesis: values the document allowed and the API refused.
        ("/api/v1/jobs/{job_id}/losses", "points", 2**31 - 2),
        ("/api/v1/sweeps/{sweep_id}/results", "status", "L\x1c"),
        ("/api/v1/jobs", "stage", "nn,cnn"),
        ("/api/v1/jobs", "sort", ""),
    ],
)
def test_a_parameter_value_the_api_refuses_the_document_refuses(
    client: FlaskClient, document: dict[str, Any], path: str, name: str, value: object
) -> None:
    job = client.post("/api/v1/jobs", json={"stage": "nn", "iterations": 5}).get_json()["id"]
    sweep = client.post("/api/v1/sweeps", json=GRID).get_json()["id"]
    url = path.format(job_id=job, sweep_id=sweep)
    assert client.get(url, query_string={name: value}).status_code == 422
    (param,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    assert not jsonschema.Draft202012Validator(param["schema"]).is_valid(value)
    # And the document still takes what the API takes.
    assert client.get(url).status_code == 200
