"""The web dashboard: static files under /ui (no build step, nothing from a CDN) and its page at /."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
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
