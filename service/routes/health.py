"""Liveness: Redis, workers, version."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

import tagdistill
from service.bodies import Health
from service.deps import SettingsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get(
    "/health", response_model=Health, responses={503: {"model": Health, "description": "Redis unreachable"}}
)
def health(store: StoreDep, settings: SettingsDep) -> Health | JSONResponse:
    """200 when Redis answers ("degraded" while no worker reports in), 503 when it does not."""
    redis_ok = store.ping()
    workers = store.live_workers(settings.heartbeat_timeout_s) if redis_ok else []
    body = Health(
        status="ok" if redis_ok and workers else "degraded",
        redis=redis_ok, workers=workers, queue=settings.queue, version=tagdistill.__version__,
    )
    if not redis_ok:
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    return body
