"""One JSON body for every error: ``{"error": {"type", "code", "message", "param"}}``.

- ``type``: the kind of error, from the status (``TYPES``): "invalid_request", "not_found", ...
- ``code``: what exactly, for programs: "job_not_found", "field_invalid", "quota_exceeded", ...
- ``message``: what is wrong, for people.
- ``param``: the field or header at fault, dotted ("teacher.base_model", "texts.3",
  "header.Idempotency-Key", "query.after"; a body field has no prefix), or null.

A 422 also lists every invalid field in ``errors`` (each with code, message and param, and for a
dataset's file also file, line and filename); ``error`` is the first of them. Route errors, request
validation, Starlette's own (an unknown route) and the middlewares' answers (401, 413, the 422 of
``Utf8Input``, 500) all use this shape, so a client reads one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from jobstore.store import Conflict, IdempotencyMismatch, NotFound, QuotaExceeded

log = logging.getLogger("tagdistill.api")

TYPES = {
    400: "invalid_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "too_large", 422: "invalid_request", 429: "rate_limited", 500: "internal",
    503: "unavailable",
}
# pydantic's error types that say more than "field_invalid"; the others (int_parsing, ...) are that
_VALIDATION_CODES = {
    "missing": "field_missing", "extra_forbidden": "field_unknown", "json_invalid": "json_invalid",
}


class ApiError(Exception):
    """An error answer of a route (``invalid`` makes the 422s); the handler below sends it."""

    def __init__(
        self, status: int, code: str, message: str, param: str | None = None,
        headers: Mapping[str, str] | None = None, errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param
        self.headers, self.errors = headers, errors


def error_body(
    status: int, code: str, message: str, param: str | None = None, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The JSON body of an error answer (``errors``: a 422's invalid fields)."""
    kind = TYPES.get(status, "invalid_request" if status < 500 else "internal")
    body: dict[str, Any] = {"error": {"type": kind, "code": code, "message": message, "param": param}}
    if errors is not None:
        body["errors"] = errors
    return body


def respond(exc: ApiError) -> JSONResponse:
    body = error_body(exc.status, exc.code, exc.message, exc.param, exc.errors)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def param_of(loc: Sequence[str | int]) -> str | None:
    """A FastAPI location as a dotted param: ("body", "teacher", "base_model") -> "teacher.base_model",
    ("header", "Idempotency-Key") -> "header.Idempotency-Key"; the body itself -> None."""
    parts = loc[1:] if loc and loc[0] == "body" else loc
    return ".".join(str(p) for p in parts) or None


def field_errors(errors: list[dict[str, Any]]) -> ApiError:
    """A 422 for ``errors`` ({code, message, param, ...}, at least one), the first named in ``error``."""
    first = errors[0]
    return ApiError(422, first["code"], first["message"], first["param"], errors=errors)


def invalid(loc: Sequence[str | int], msg: str, code: str = "field_invalid", **extra: Any) -> ApiError:
    """A 422 naming one field (``loc`` as FastAPI gives it: ["body", "teacher", "base_model"])."""
    return field_errors([{"code": code, "message": msg, "param": param_of(loc), **extra}])


def _validation_error(error: dict[str, Any]) -> dict[str, Any]:
    """One of pydantic's errors ({type, loc, msg, input, ctx}) in this API's shape; the input is not
    repeated (it can be a whole body)."""
    loc, msg = error["loc"], error["msg"]
    if error["type"] == "json_invalid":  # loc is ("body", the character where parsing failed)
        reason = (error.get("ctx") or {}).get("error")
        msg = f"the body is not valid JSON: {reason} (character {loc[-1]})" if reason else msg
        loc = ("body",)
    code = _VALIDATION_CODES.get(error["type"], "field_invalid")
    return {"code": code, "message": msg, "param": param_of(loc)}


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(RequestValidationError)
    def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return respond(field_errors([_validation_error(e) for e in exc.errors()]))

    @app.exception_handler(HTTPException)  # Starlette's own (an unknown route, a wrong method) and any other
    def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "route_not_found"}.get(exc.status_code, TYPES.get(exc.status_code, "http_error"))
        return respond(ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers))

    @app.exception_handler(NotFound)
    def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return respond(ApiError(404, exc.code, str(exc)))

    @app.exception_handler(QuotaExceeded)
    def _quota(_: Request, exc: QuotaExceeded) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)}
        return respond(ApiError(429, "quota_exceeded", f"quota: {exc}", headers=headers))

    @app.exception_handler(Conflict)
    def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return respond(ApiError(409, exc.code, str(exc)))

    @app.exception_handler(IdempotencyMismatch)
    def _idempotency(_: Request, exc: IdempotencyMismatch) -> JSONResponse:
        return respond(invalid(["header", "Idempotency-Key"], str(exc), "idempotency_key_reused"))

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    def _redis_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.error("redis unreachable", extra={"path": request.url.path, "error": str(exc)})
        msg = "the service's Redis is unreachable; try again shortly"
        return respond(ApiError(503, "redis_unreachable", msg, headers={"Retry-After": "5"}))
