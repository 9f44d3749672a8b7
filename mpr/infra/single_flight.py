"""Concurrent callers asking for the same thing share one call.

Used where many coroutines of one event loop want the same slow read at the same moment: the
compatibility cells of a release measuring one bundle, launches resolving one channel.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """While a call for a key is in flight, later callers of that key await the same call.

    A caller that is cancelled does not cancel the call the others wait on, and an exception
    reaches every caller without being cached: the next caller after it makes a new call.
    Use it from one event loop.
    """

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(call())
            self._flights[key] = flight
            flight.add_done_callback(partial(self._landed, key))
        return await asyncio.shield(flight)

    def _landed(self, key: K, flight: "asyncio.Future[V]") -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here too: every caller may have given up
