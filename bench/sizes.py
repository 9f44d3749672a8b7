"""The sizes the suite runs at: `make bench` (default), `make bench-full` (full) and `--quick`.

The default sizes are chosen so that the whole suite finishes in under ten minutes on two
cores; the full ones are the large sizes (300 releases at once, 5,000 parked). Every target is
the same at both: what depends on size is stated per 1,000 parked releases, with the sticky
cache at the same fraction of them (CACHE_PER_1000).
"""

from dataclasses import asdict, dataclass
from typing import Any

CACHE_PER_1000 = 100
"""The sticky cache (WORKER_MAX_CACHED_WORKFLOWS) per 1,000 parked releases, at every size but
--quick: a tenth of them, so the releases a round trip reaches are replayed from history."""
MIN_SAMPLES = 500
"""Round trips of each kind: the command round trip asks for 500 at least, and the slowest few
percent decide a p99 (with 200 update-to-status round trips of each kind, the p99 ratio moved by
half from one full run to the next, so the full sizes take 500 of those too)."""


@dataclass(frozen=True)
class Sizes:
    name: str
    lifecycle_at_once: int
    """Releases driven at once in each of the lifecycle's phases (two per kind)."""
    parked: int
    """Releases parked in UNDER_REVIEW on one worker."""
    cache: int
    """The parked worker's sticky cache."""
    parked_at_once: int
    """Workflows parked at once: at most half the cache, so that workflows on their way to
    UNDER_REVIEW stay cached (with as many in flight as the cache holds, the worker evicts and
    replays them all the time: measured, 5.3 parked per second against 6.9 at half)."""
    status_samples: int
    """Update-to-status round trips of each kind (releases, baselines)."""
    command_samples: int
    """Command round trips of each kind (releases, floors)."""
    build_rounds: int
    matrix_rounds: int
    resolution_seconds: float
    rollbacks: int
    """Channels rolled back, one after the other, each once (one delay each)."""
    rollback_clients: int
    """Lookup loops watching them, each with a ChannelCache and a pool of its own."""

    def __post_init__(self) -> None:
        if self.parked < self.status_samples + self.command_samples:
            raise ValueError("each round trip goes to a release of its own: parked >= "
                             "status_samples + command_samples")

    @property
    def baselines(self) -> int:
        """Baselines parked beside the releases: one update-to-status round trip each."""
        return self.status_samples

    @property
    def floors(self) -> int:
        """Command floors parked beside the releases: one command round trip each."""
        return self.command_samples

    def describe(self) -> dict[str, str]:
        """The size each figure is measured at, in words (the details carry it)."""
        life = (f"{self.lifecycle_at_once} releases at once, twice ({2 * self.lifecycle_at_once}"
                f" in all), against as many baselines and as many floors")
        parked = f"{self.parked:,} parked releases, sticky cache {self.cache}"
        to_status = (f"{parked}; {self.status_samples} round trips to as many of them and "
                     f"{self.status_samples} to as many baselines, 4 at a time")
        command = (f"{parked}; {self.command_samples} commands to as many of them and "
                   f"{self.command_samples} to as many floors, 4 at a time")
        rollback = (f"{self.rollbacks} rollbacks of as many channels, one at a time, "
                    f"{self.rollback_clients} lookup clients")
        return {
            "build_seconds_vs_zip": f"5,000 files, 50 MiB, medians of {self.build_rounds}",
            "build_byte_identical_runs": f"{self.build_rounds} builds",
            "resolve_version_lookups_per_second": f"{self.resolution_seconds:g} s per phase",
            "resolve_version_staleness_max_seconds": f"{self.resolution_seconds:g} s per phase",
            "compatibility_matrix_seconds_vs_one_cell": f"medians of {self.matrix_rounds}",
            "lifecycle_releases_per_second": life,
            "lifecycle_releases_per_second_vs_floor": life,
            "parked_worker_rss_mb_per_1000": f"{parked} ({self.parked_at_once} parked at once); "
                                             "per 1,000",
            "parked_update_to_status_p50_ms": to_status,
            "parked_update_to_status_p99_ms": to_status,
            "command_round_trip_p50_ms": command,
            "command_round_trip_p99_ms": command,
            "rollback_seen_by_every_lookup_p50_ms": rollback,
            "rollback_seen_by_every_lookup_p99_ms": rollback,
        }

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "baselines": self.baselines, "floors": self.floors}


def cache_for(parked: int) -> int:
    """The sticky cache for `parked` releases: CACHE_PER_1000 per 1,000."""
    return max(1, parked * CACHE_PER_1000 // 1000)


QUICK = Sizes(name="quick", lifecycle_at_once=10, parked=20, cache=10, parked_at_once=5,
              status_samples=10, command_samples=10, build_rounds=1, matrix_rounds=2,
              resolution_seconds=2.0, rollbacks=10, rollback_clients=4)
DEFAULT = Sizes(name="default", lifecycle_at_once=50, parked=1000, cache=cache_for(1000),
                parked_at_once=50, status_samples=250, command_samples=MIN_SAMPLES,
                build_rounds=3, matrix_rounds=5, resolution_seconds=6.0, rollbacks=50,
                rollback_clients=4)
FULL = Sizes(name="full", lifecycle_at_once=300, parked=5000, cache=cache_for(5000),
             parked_at_once=100, status_samples=MIN_SAMPLES, command_samples=MIN_SAMPLES,
             build_rounds=3, matrix_rounds=5, resolution_seconds=8.0, rollbacks=200,
             rollback_clients=4)
PRESETS = {sizes.name: sizes for sizes in (QUICK, DEFAULT, FULL)}
