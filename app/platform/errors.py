"""RFC 9457 problem details for every error the service produces.

Each body has ``type``, ``title``, ``status``, ``detail`` and the ``request_id``; a 422 adds
the field errors. A 500 says nothing about the exception: the middleware logs it, with the
traceback, on the request's access line.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.platform.context import request_id_var

PROBLEM_JSON = "application/problem+json"
UNEXPECTED_ERROR = "an unexpected error occurred; quote the request_id"


def problem_body(status: int, detail: str, extra: dict[str, Any] | None = None) -> bytes:
    """Serialise a problem document (also used by the middleware's own 413/500/503)."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": request_id_var.get(),
    }
    if extra:
        body.update(extra)
    return orjson.dumps(body)


def problem_response(
    status: int,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        problem_body(status, detail, extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def _http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no route matches this path"
    return problem_response(exc.status_code, detail, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return problem_response(422, "the request does not match the schema", {"errors": errors})


async def unhandled(_: Request, __: Exception) -> Response:
    # No exception text here: the middleware logs the traceback with the request id.
    return problem_response(500, UNEXPECTED_ERROR)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, unhandled)
