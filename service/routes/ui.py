"""The web dashboard: static files under /ui (no build step, nothing from a CDN) and its page at /;
the API's documentation pages /docs (Swagger UI) and /redoc (ReDoc), from files in ui/vendor/."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

UI_DIR = Path(__file__).resolve().parents[1] / "ui"


class _Revalidated(StaticFiles):
    """Static files that browsers check again on each load (a 304 when unchanged), so an upgraded
    service never runs with yesterday's JavaScript modules."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


router = APIRouter(include_in_schema=False)
router.mount("/ui", _Revalidated(directory=UI_DIR), name="ui")


@router.get("/")
def index() -> FileResponse:
    """The dashboard's single page; it routes by URL hash (#/jobs, #/models, ...)."""
    return FileResponse(UI_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    """Swagger UI, served with this service's copy of its files: it works without internet."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title="tagdistill API", swagger_js_url="/ui/vendor/swagger-ui-bundle.js",
        swagger_css_url="/ui/vendor/swagger-ui.css", swagger_favicon_url="/ui/vendor/favicon-32x32.png",
    )


@router.get("/redoc")
def redoc() -> HTMLResponse:
    """ReDoc, likewise, without the Google fonts FastAPI would link."""
    return get_redoc_html(
        openapi_url="/openapi.json", title="tagdistill API", redoc_js_url="/ui/vendor/redoc.standalone.js",
        redoc_favicon_url="/ui/vendor/favicon-32x32.png", with_google_fonts=False,
    )
