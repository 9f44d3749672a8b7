"""`python -m mpr.catalog.migrate`: bring DATABASE_URL's schema up to date."""

import asyncio

from mpr.catalog.db import apply_migrations, create_pool
from mpr.infra.entrypoint import reaching_database, run_and_exit
from mpr.infra.logging import configure_logging, get_logger
from mpr.infra.settings import Settings


async def migrate(database_url: str, what_to_do: str = "check DATABASE_URL") -> list[str]:
    """Apply the pending migrations; returns their names. A database that cannot be reached
    is one line naming it and `what_to_do` (infra.entrypoint.reaching_database)."""
    with reaching_database(database_url, what_to_do):
        pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        return await apply_migrations(pool)
    finally:
        await pool.close()


def main() -> None:
    settings = Settings.from_env()
    database_url = settings.require_database_url()
    configure_logging(settings.log_level, settings.log_format)
    applied = asyncio.run(migrate(database_url))
    get_logger(__name__).info("catalog migrated", applied=applied)


if __name__ == "__main__":
    run_and_exit(main)
