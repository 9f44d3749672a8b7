"""SingleFlight: concurrent callers of a key share one call; cancellation and failures."""

import asyncio

import pytest

from mpr.infra.single_flight import SingleFlight


class Calls:
    def __init__(self) -> None:
        self.made = 0
        self.release = asyncio.Event()

    async def slow(self) -> int:
        self.made += 1
        await self.release.wait()
        return self.made


async def test_callers_of_one_key_share_the_call_in_flight() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    calls = Calls()
    waiting = [asyncio.create_task(flights.run("a", calls.slow)) for _ in range(5)]
    other = asyncio.create_task(flights.run("b", calls.slow))
    await asyncio.sleep(0)
    calls.release.set()

    assert await asyncio.gather(*waiting) == [1] * 5
    assert await other == 2 and calls.made == 2
    assert len(flights) == 0, "landed calls are forgotten"
    assert await flights.run("a", calls.slow) == 3, "a later caller makes a new call"


async def test_a_cancelled_caller_leaves_the_call_to_the_others() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    calls = Calls()
    quitter = asyncio.create_task(flights.run("a", calls.slow))
    stayer = asyncio.create_task(flights.run("a", calls.slow))
    await asyncio.sleep(0)
    quitter.cancel()
    await asyncio.sleep(0)
    calls.release.set()

    assert await stayer == 1
    with pytest.raises(asyncio.CancelledError):
        await quitter


async def test_a_failure_reaches_every_caller_and_is_not_kept() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    attempts = 0

    async def failing() -> int:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        raise OSError("disk gone")

    results = await asyncio.gather(*(flights.run("a", failing) for _ in range(3)),
                                   return_exceptions=True)

    assert [str(r) for r in results] == ["disk gone"] * 3 and attempts == 1
    with pytest.raises(OSError):
        await flights.run("a", failing)
    assert attempts == 2
