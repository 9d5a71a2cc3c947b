"""The web portal: server-rendered pages on the API's own services and permission checks."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from api.web import action_pages, auth, catalog_pages, other_pages, run_pages

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add the pages (after every API route, so ``/v1`` always wins) and ``/static``."""
    for module in (auth, catalog_pages, action_pages, run_pages, other_pages):
        app.router.routes.extend(module.ROUTES)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
