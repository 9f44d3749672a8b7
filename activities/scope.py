"""What every catalog activity does around its work: log with the activity's ids, and turn
catalog refusals into non-retryable ApplicationErrors (database outages propagate as they are,
so Temporal retries them)."""

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from mpr.catalog import CatalogError
from mpr.infra.logging import get_logger

log = get_logger(__name__)

# Constraint violations mean the write itself is wrong; unique violations are left out on
# purpose, since a concurrent writer can cause one and a retry then succeeds.
REFUSED_WRITES = (
    asyncpg.ForeignKeyViolationError,
    asyncpg.CheckViolationError,
    asyncpg.NotNullViolationError,
)


@contextmanager
def activity_scope(name: str, **ids: str) -> Iterator[None]:
    """Log with the activity's ids; make catalog refusals non-retryable ApplicationErrors.
"""
    workflow_id = activity.info().workflow_id if activity.in_activity() else None
    with structlog.contextvars.bound_contextvars(activity=name, workflow_id=workflow_id, **ids):
        try:
            yield
        except CatalogError as error:
            log.warning("catalog refused the request", error=str(error))
            raise ApplicationError(
                str(error), type=type(error).__name__, non_retryable=True
            ) from None
        except REFUSED_WRITES as error:
            log.error("catalog constraint violated", error=str(error))
            raise ApplicationError(
                f"the catalog refused the write: {error}",
                type="CatalogRejected",
                non_retryable=True,
            ) from error
