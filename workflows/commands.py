"""Operator commands arrive as a signal (tctl) or an update (temporal CLI, services) of the same
name; both run the same code. Arguments are taken raw: the SDK drops a signal whose payload it
cannot decode into a handler's type, so decoding happens in the domain, where a bad payload
becomes a recorded refusal."""

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from mpr.domain.core.models import LastRejection

COMMAND_REJECTED = "CommandRejected"


def register_commands(
    names: Iterable[str],
    execute: Callable[[str, tuple[Any, ...]], Awaitable[LastRejection | None]],
    accepted_view: Callable[[], Any],
    refusal_details: Callable[[str], dict[str, Any]],
) -> None:
    """For each name, a signal and an update handler running `execute(name, args)`.

    The update answers with `accepted_view()` or fails with the refusal's reason (type
    CommandRejected, details from `refusal_details(name)`), so callers learn synchronously.
    """
    for name in names:
        workflow.set_signal_handler(name, _signal_handler(name, execute))
        workflow.set_update_handler(
            name, _update_handler(name, execute, accepted_view, refusal_details)
        )


def _signal_handler(
    name: str, execute: Callable[[str, tuple[Any, ...]], Awaitable[LastRejection | None]]
) -> Callable[..., Awaitable[None]]:
    async def on_signal(*args: Any) -> None:
        await execute(name, args)

    return on_signal


def _update_handler(
    name: str,
    execute: Callable[[str, tuple[Any, ...]], Awaitable[LastRejection | None]],
    accepted_view: Callable[[], Any],
    refusal_details: Callable[[str], dict[str, Any]],
) -> Callable[..., Awaitable[Any]]:
    async def on_update(*args: Any) -> Any:
        refusal = await execute(name, args)
        if refusal is not None:
            raise ApplicationError(refusal.reason, refusal_details(name),
                                   type=COMMAND_REJECTED, non_retryable=True)
        return accepted_view()

    return on_update
