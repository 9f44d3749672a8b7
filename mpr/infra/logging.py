"""The one place logging is configured: structlog, JSON lines on stderr.

Inside workflows and activities, `workflow_context` / `activity_context` bind the ids a log
search needs (workflow_id, run_id, activity, release_id) to every line.
"""

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog


def _lift_temporal_ids(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The SDK puts workflow and activity ids in a nested `extra`; log searches want them flat."""
    for key in ("temporal_workflow", "temporal_activity"):
        details = event.pop(key, None)
        if isinstance(details, dict):
            for name in ("workflow_id", "run_id", "workflow_type", "activity_id", "activity_type",
                         "attempt"):
                if name in details:
                    event.setdefault(name, details[name])
            if "workflow_id" in details:
                event.setdefault("release_id", details["workflow_id"])
    return event


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Our lines and the SDK's (standard library logging, written from workflow threads) go
    # through one handler: two writers on stderr interleave and split each other's JSON lines.
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                _lift_temporal_ids,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
