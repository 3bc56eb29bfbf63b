"""GET /openapi.json: built from the views' own docs and the pydantic models that validate."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from service.api.apidoc import EndpointDoc, Param, documented
from service.api.extensions import guarded
from service.api.origin import STATE_CHANGING
from service.api.schemas import ErrorBody

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: /jobs/<int:job_id> -> /jobs/{job_id}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


class Schemas:
    """components.schemas, filled as models are referenced."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode = "serialization") -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=REF, mode=mode)
        self.components.update(schema.pop("$defs", {}))
        self.components[model.__name__] = schema
        return {"$ref": REF.format(model=model.__name__)}


def _parameter(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "description": param.description,
        "schema": param.schema,
    }


def _operation(
    doc: EndpointDoc, schemas: Schemas, method: str, path: str, secured: bool
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": doc.summary, "tags": [doc.tag]}
    if guarded(path):
        scope = doc.scope or ("read" if method == "GET" else "submit")
        operation["x-trainq-scope"] = scope
        operation["description"] = f"Needs a token of scope `{scope}` when tokens are configured."
        if secured:
            operation["security"] = [{"bearer": []}]
    if doc.params:
        operation["parameters"] = [_parameter(p) for p in doc.params]
    if doc.request is not None:
        body = schemas.ref(doc.request, mode="validation")
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    responses: dict[str, Any] = {}
    for status, answer in sorted(doc.responses.items()):
        media = answer if isinstance(answer, Mapping) else {"application/json": answer}
        content = {
            kind: ({"schema": schemas.ref(model)} if model is not None else {})
            for kind, model in media.items()
        }
        responses[str(status)] = {
            "description": "OK" if status < 400 else "error",
            "content": content,
        }
    if secured and guarded(path):
        for code in ("401", "403"):
            responses.setdefault(
                code,
                {
                    "description": "no valid token" if code == "401" else "scope or owner",
                    "content": {"application/json": {"schema": schemas.ref(ErrorBody)}},
                },
            )
    error = {"application/json": {"schema": schemas.ref(ErrorBody)}}
    if doc.request is not None:
        responses.setdefault("415", {"description": "body not application/json", "content": error})
    if method in STATE_CHANGING:
        responses.setdefault(
            "403",
            {"description": "cross_site: sent by a browser from another site", "content": error},
        )
    # Before the app: gunicorn refuses a request line past its limit (4094 bytes) with 414.
    responses.setdefault(
        "414", {"description": "request line too long for the server (gunicorn's limit)"}
    )
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the app serves whose view carries a doc."""
    schemas = Schemas()
    secured = bool(app.extensions.get("trainq.tokens"))
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        doc = getattr(app.view_functions[rule.endpoint], "apidoc", None)
        if doc is None:  # an HTML page, outside the API
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = _operation(doc, schemas, method, rule.rule, secured)
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = operation
    components: dict[str, Any] = {"schemas": dict(sorted(schemas.components.items()))}
    if secured:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trainq",
            "version": "1",
            "description": "PyTorch training jobs as a service",
        },
        "paths": dict(sorted(paths.items())),
        "components": components,
    }


@bp.get("/openapi.json")
@documented("This document", tag="meta", responses={200: {"application/json": None}}, errors=())
def openapi_document() -> Response:
    """The OpenAPI document."""
    return jsonify(build_document(current_app))
