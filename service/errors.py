"""JSON errors that say what is wrong: ``{"detail": "..."}``, or for 422 a list like FastAPI's own.

A 422 from a route looks like one from request validation: ``{"detail": [{"loc": [...],
"msg": "...", "type": "..."}]}``, so clients read one shape for every invalid input.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from jobstore.store import Conflict, IdempotencyMismatch, NotFound, QuotaExceeded

log = logging.getLogger("tagdistill.api")


def invalid(loc: list[str | int], msg: str, kind: str = "value_error", **extra: Any) -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": msg, "type": kind, **extra}])


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(QuotaExceeded)
    def _quota(_: Request, exc: QuotaExceeded) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse({"detail": f"quota: {exc}"}, status_code=429, headers=headers)

    @app.exception_handler(Conflict)
    def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(IdempotencyMismatch)
    def _idempotency(_: Request, exc: IdempotencyMismatch) -> JSONResponse:
        detail = [{"loc": ["header", "Idempotency-Key"], "msg": str(exc), "type": "idempotency_mismatch"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    def _redis_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.error("redis unreachable", extra={"path": request.url.path, "error": str(exc)})
        detail = "the service's Redis is unreachable; try again shortly"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})
