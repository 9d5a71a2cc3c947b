"""The FastAPI application factory: ``uvicorn api.app:create_app --factory``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api import docs, errors, etag, openapi
from api.limits import BodyLimits, RequestLimits
from api.mcp import http as mcp_http
from api.relay import EventRelay
from api.routes import (
    actions,
    audit,
    automations,
    blueprints,
    config,
    data_sources,
    entities,
    exemptions,
    identity,
    initiatives,
    runs,
    scorecards,
    slack,
    timers,
    ui,
    webhooks,
)
from api.routes.webhooks import DeliveryProcessor
from api.schemas import Health, Ready
from api.temporal import TemporalGateway
from api.web import install as install_web
from catalog.db import make_engine, make_sessionmaker, transaction
from catalog.identity.permissions import ADMIN, SERVICE
from catalog.identity.service import (
    ADMIN_TOKEN_ID,
    ADMIN_USER,
    SERVICE_TOKEN_ID,
    SERVICE_USER,
    ensure_bootstrap_user,
    revoke_bootstrap_token,
)
from catalog.migrate import upgrade
from config import Settings, get_settings

# Seconds the relay may take to finish its batch at shutdown before it is cancelled (its
# transaction then rolls back and the events go out from the next API process to run).
RELAY_STOP_PATIENCE = 2.0


def bootstrap(settings: Settings, factory: Any) -> None:
    """Idempotently create the admin and the worker's service principal from their tokens;
    the token of a setting that is unset stops working."""
    with transaction(factory) as session:
        if settings.admin_token is not None:
            ensure_bootstrap_user(
                session,
                identifier=ADMIN_USER,
                email="admin@gantry.local",
                name="Admin",
                role=ADMIN,
                secret=settings.admin_token.get_secret_value(),
                token_id=ADMIN_TOKEN_ID,
            )
        else:
            revoke_bootstrap_token(session, ADMIN_TOKEN_ID)
        if settings.service_token is not None:
            ensure_bootstrap_user(
                session,
                identifier=SERVICE_USER,
                email="worker@gantry.local",
                name="Gantry worker",
                role=SERVICE,
                secret=settings.service_token.get_secret_value(),
                token_id=SERVICE_TOKEN_ID,
            )
        else:
            revoke_bootstrap_token(session, SERVICE_TOKEN_ID)


def create_app(
    settings: Settings | None = None, *, migrate: bool = True, temporal: TemporalGateway | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.resolved_database_url)
        if migrate:
            upgrade(settings.resolved_database_url)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        bootstrap(settings, app.state.sessionmaker)
        app.state.relay = EventRelay(
            app.state.sessionmaker, app.state.temporal, max_depth=settings.automation_max_depth
        )
        relay = asyncio.create_task(app.state.relay.run(), name="gantry-event-relay")
        app.state.deliveries = DeliveryProcessor(app.state.sessionmaker)
        deliveries = asyncio.create_task(app.state.deliveries.run(), name="gantry-webhook-deliveries")
        yield
        app.state.deliveries.stop()
        app.state.relay.stop()
        try:
            await asyncio.wait_for(asyncio.shield(relay), RELAY_STOP_PATIENCE)
        except TimeoutError:  # a delivery hangs on an unreachable Temporal: roll the batch back
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        try:
            await asyncio.wait_for(asyncio.shield(deliveries), RELAY_STOP_PATIENCE)
        except TimeoutError:  # its transaction rolls back: the delivery stays pending
            deliveries.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliveries
        engine.dispose()

    app = FastAPI(
        title="Gantry",
        version="0.1.0",
        summary="An internal developer portal whose actions, approvals, timers and automations are durable Temporal workflows.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=openapi.operation_id,
        openapi_tags=openapi.TAGS,
    )
    app.state.settings = settings
    app.state.temporal = temporal or TemporalGateway(settings)
    errors.install(app)
    etag.install(app)
    # Outermost: bodies are measured and JSON checked before any route or parser reads them.
    app.add_middleware(RequestLimits, limits=BodyLimits.of(settings))
    docs.install(app)
    openapi.install(app)
    # Starlette tries the routes in order, each against its pattern: the vendors' endpoints,
    # answered at volume and under a deadline (Slack's 3 s; webhook bursts), come first. A
    # webhook delivery last in the list spent more of its time finding its route than storing it.
    for module in (
        webhooks,
        slack,
        blueprints,
        entities,
        identity,
        audit,
        config,
        actions,
        runs,
        timers,
        scorecards,
        exemptions,
        initiatives,
        automations,
        data_sources,
        ui,
    ):
        app.include_router(module.router)

    @app.get("/healthz", tags=["health"], response_model=Health)
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=Ready, responses=openapi.errors(503))
    def readyz() -> JSONResponse:
        """The catalog database answers."""
        try:
            with app.state.engine.connect() as conn:
                conn.execute(text("select 1"))
        except Exception as exc:
            return JSONResponse(
                errors.error_body("unavailable", f"database: {exc.__class__.__name__}"),
                status_code=503,
                headers={"Retry-After": str(errors.DATABASE_RETRY_AFTER)},
            )
        return JSONResponse({"status": "ready"})

    mcp_http.mount(app)  # /mcp: the MCP server for agents, with the API's own tokens
    install_web(app)  # the portal's pages, after every API route
    return app
