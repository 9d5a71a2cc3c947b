"""``python -m api``: the API as production runs it, ``GANTRY_API_WORKERS`` uvicorn processes.

The catalog's migrations and the bootstrap principals are applied once, here, before any worker
process starts, so the processes do not race each other to create tables or users (each still
checks at start-up, which is then a no-op). Every process runs its own event relay and webhook
delivery processor; they share the work through PostgreSQL (rows claimed with
``FOR UPDATE SKIP LOCKED``), which is why more than one process needs PostgreSQL (the settings
refuse SQLite with ``GANTRY_API_WORKERS`` > 1). ``python -m api migrate`` only prepares the
catalog: run it once before several replicas start (docker-compose.yml does).
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from api.app import bootstrap
from catalog.db import make_engine, make_sessionmaker
from catalog.migrate import upgrade
from config import Settings, get_settings

log = logging.getLogger("gantry.api")


def prepare(settings: Settings) -> None:
    """Migrate the catalog and bootstrap the admin and service principals, once."""
    url = settings.resolved_database_url
    upgrade(url)
    engine = make_engine(url)
    try:
        bootstrap(settings, make_sessionmaker(engine))
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "migrate"],
        default="serve",
        help="serve (the default) or only migrate the catalog and bootstrap its principals, once "
        "before several replicas start",
    )
    command = parser.parse_args(argv).command
    settings = get_settings()
    prepare(settings)
    if command == "migrate":
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info(
        "serving the API on %s:%s with %s process(es)",
        settings.api_host,
        settings.api_port,
        settings.api_workers,
    )
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        proxy_headers=True,
        log_level="info",
        access_log=False,
    )


if __name__ == "__main__":
    main()
