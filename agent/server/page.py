"""The web page at `/`: a chat over the threads API with region sketching. Plain JavaScript modules and CSS shipped in
the package (`static/`): no build step, nothing fetched from elsewhere, so it works offline."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The page (it asks for an API key itself where keys are configured: the page holds no data)."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
