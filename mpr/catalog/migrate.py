"""`python -m mpr.catalog.migrate`: bring DATABASE_URL's schema up to date."""

import asyncio

from mpr.catalog.db import apply_migrations
from mpr.infra.logging import configure_logging, get_logger
from mpr.infra.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    applied = asyncio.run(apply_migrations(settings.require_database_url()))
    get_logger(__name__).info("catalog migrated", applied=applied)


if __name__ == "__main__":
    main()
