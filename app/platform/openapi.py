"""Make the OpenAPI document tell the truth about errors.

FastAPI documents a 422 as ``application/json`` ``HTTPValidationError``; this service
answers every error with ``application/problem+json`` (``errors.py``), and the platform
adds answers of its own (400 for an undecodable body, 413, 500, 503 with ``Retry-After``).
This post-processes the generated document — FastAPI's documented way to extend it — so
clients, code generators and schemathesis see the responses the service really sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.platform.errors import PROBLEM_JSON

_PROBLEM = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details, with the request id to quote.",
    "required": ["type", "title", "status", "detail", "request_id"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
    },
}
_VALIDATION_PROBLEM = {
    "title": "ValidationProblem",
    "allOf": [
        {"$ref": "#/components/schemas/Problem"},
        {
            "type": "object",
            "required": ["errors"],
            "properties": {
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg", "type"],
                        "properties": {
                            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                }
            },
        },
    ],
}


def _problem(description: str, schema: str = "Problem", **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        **extra,
    }


_COMMON = {
    "500": _problem("Unexpected error (details are in the log line with this request_id)"),
    "503": _problem(
        "Overloaded: the worker's concurrency limit is reached",
        headers={"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    ),
}
_WITH_BODY = {
    "400": _problem("The body could not be decoded"),
    "413": _problem("The body is larger than APP_MAX_BODY_BYTES"),
}


def document_problem_responses(api: FastAPI) -> None:
    """Replace ``api.openapi`` with a version whose error responses match the service."""
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = _PROBLEM
        schemas["ValidationProblem"] = _VALIDATION_PROBLEM
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                if "422" in responses:
                    responses["422"] = _problem(
                        "The request does not match the schema", "ValidationProblem"
                    )
                responses.update(_COMMON)
                if "requestBody" in operation:
                    responses.update(_WITH_BODY)
        api.openapi_schema = schema
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
