"""The FastAPI app (``uvicorn service.app:app``): routers, error handlers, middleware."""

from __future__ import annotations

from fastapi import FastAPI

import tagdistill
from jobstore.logs import setup_logging
from jobstore.settings import get_settings
from service.auth import ApiKeys
from service.bodies import ERRORS, ErrorBody
from service.errors import add_error_handlers
from service.middleware import AccessLog, BodyLimit, Utf8Input
from service.routes import batches, datasets, health, jobs, models, predict, teachers, ui

MAX_JSON_BYTES = 16 << 20  # body limit of every route but the uploads (datasets, batch jobs, teachers)


def create_app() -> FastAPI:
    settings = get_settings()
    try:
        keys = settings.keys
    except ValueError as exc:
        raise SystemExit(f"TAGDISTILL_API_KEYS / TAGDISTILL_ADMIN_KEYS: {exc}") from None
    setup_logging(settings.log_level)
    app = FastAPI(
        title="tagdistill",
        version=tagdistill.__version__,
        description="Distil transformer token taggers into small, fast BiLSTM taggers.",
        # operation ids are the routes' names (create_job), not FastAPI's default (create_job_jobs_post)
        generate_unique_id_function=lambda route: route.name,
        responses={code: {"model": ErrorBody, "description": text} for code, text in ERRORS.items()},
        docs_url=None,  # /docs and /redoc come from service/routes/ui.py, with files shipped here (no CDN)
        redoc_url=None,
    )
    for module in (datasets, jobs, batches, teachers, models, predict, health, ui):
        app.include_router(module.router)
    add_error_handlers(app)
    uploads = {
        "/datasets": settings.max_upload_bytes, "/batch-jobs": settings.max_batch_upload_bytes,
        "/teachers": settings.max_teacher_upload_bytes,
    }
    app.add_middleware(Utf8Input)  # inside the body limit: what it reads is bounded
    app.add_middleware(BodyLimit, limit=lambda path: uploads.get(path, MAX_JSON_BYTES))
    app.add_middleware(ApiKeys, keys=keys)  # outside the body limit: no key, nothing is read
    app.add_middleware(AccessLog)  # outermost: logs every request, and turns any error into a JSON 500
    return app


app = create_app()
