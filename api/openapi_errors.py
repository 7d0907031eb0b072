"""The error answers every operation can give, written into the OpenAPI schema.

FastAPI documents each route's success and its 422; the other errors come from
shared code (the API key check, the body limit, the 503 handlers, 404 and 409 for an
id) and would otherwise be missing, so clients and schema-driven tests would not
expect them. The rules below are the ones that code follows, applied to every route
however it was registered.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from api.auth import OPEN_PATHS

ERROR = {
    "title": "Error",
    "type": "object",
    "properties": {"detail": {"description": "What went wrong: a message, or a list of field errors"}},
    "required": ["detail"],
}
_REASONS = {
    "400": "The body could not be read as JSON",
    "401": "No API key, or an unknown one",
    "403": "The API key has been revoked",
    "404": "No such job, page, batch or resource",
    "409": "The resource is not in a state that allows this (not completed, already finished, ...)",
    "413": "The request body is over the size limit",
    "503": "Temporal or Postgres is not answering, or (POST /v1/jobs) too many submits are waiting; try again shortly",
}


def _error(status: str) -> dict[str, Any]:
    return {
        "description": _REASONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def error_statuses(path: str, operation: dict[str, Any]) -> list[str]:
    statuses = ["503"]
    if path not in OPEN_PATHS:
        statuses += ["401", "403"]
    if "requestBody" in operation:
        statuses += ["400", "413"]
    if re.search(r"\{[^}]+\}", path):
        statuses += ["404", "409"]
    return statuses


def document_errors(app: FastAPI) -> None:
    """Make app.openapi() add the shared error answers to every operation."""

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Error"] = ERROR
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status in error_statuses(path, operation):
                    responses.setdefault(status, _error(status))
                for status, response in responses.items():  # errors a route names itself get the shape too
                    if status[0] in "45" and status != "422" and "content" not in response:
                        response["content"] = _error(status)["content"]
                # A 422 is either FastAPI's list of field errors or one message from the route itself.
                if "422" in responses:
                    content = responses["422"].setdefault("content", {}).setdefault("application/json", {})
                    given = content.get("schema")
                    if given and "anyOf" not in given:
                        content["schema"] = {"anyOf": [given, {"$ref": "#/components/schemas/Error"}]}
                    elif not given:
                        content["schema"] = {"$ref": "#/components/schemas/Error"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
