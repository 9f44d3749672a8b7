"""Compatibility of a built package with one cell of the matrix (OS x network x device tier).

Pure: the tables come from mpr/domain/release/data/*.json (see the README.md there for every
field) and the package facts from the built bundle. Each check states its verdict and the numbers
behind it; the cell's verdict is the worst of its checks. A value equal to a threshold is
within it: only values strictly over a threshold warn or fail.
"""

from collections.abc import Iterable, Mapping
from typing import Annotated, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mpr.domain.release.manifest import BASE_VERSION, base_version_key
from mpr.domain.release.models import (
    DEVICE_TIERS,
    NETWORKS,
    OPERATING_SYSTEMS,
    CellCheck,
    CellResult,
    MatrixCell,
    PackageFacts,
    Verdict,
)

KiB = 1024
MiB = 1024 * KiB
SEVERITY: dict[Verdict, int] = {"pass": 0, "warn": 1, "fail": 2}

BaseVersion = Annotated[str, Field(pattern=BASE_VERSION.pattern)]
Support = Literal["supported", "partial", "unsupported"]


class _Table(BaseModel):
    # A typo in a data file must fail loudly at load time, not silently drop a threshold.
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkProfile(_Table):
    bandwidth_kbps: float = Field(gt=0)
    latency_ms: float = Field(ge=0)
    warn_seconds: float = Field(gt=0)
    fail_seconds: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.warn_seconds > self.fail_seconds:
            raise ValueError("warn_seconds must not exceed fail_seconds")
        return self

    def download_seconds(self, size_bytes: int) -> float:
        return size_bytes * 8 / (self.bandwidth_kbps * 1000) + self.latency_ms / 1000


class DeviceLimits(_Table):
    warn_package_bytes: int = Field(gt=0)
    fail_package_bytes: int = Field(gt=0)
    warn_unpacked_bytes: int = Field(gt=0)
    fail_unpacked_bytes: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.warn_package_bytes > self.fail_package_bytes:
            raise ValueError("warn_package_bytes must not exceed fail_package_bytes")
        if self.warn_unpacked_bytes > self.fail_unpacked_bytes:
            raise ValueError("warn_unpacked_bytes must not exceed fail_unpacked_bytes")
        return self


class OsSupport(_Table):
    oldest_base_version: BaseVersion
    latest_base_version: BaseVersion
    jsapis: dict[str, Support]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if base_version_key(self.oldest_base_version) > base_version_key(self.latest_base_version):
            raise ValueError("oldest_base_version must not be newer than latest_base_version")
        return self

    def support(self, api: str) -> Support:
        # An API the container does not list does not exist there.
        return self.jsapis.get(api, "unsupported")


class CompatibilityTables(_Table):
    networks: dict[str, NetworkProfile]
    devices: dict[str, DeviceLimits]
    operating_systems: dict[str, OsSupport]

    @model_validator(mode="after")
    def _complete(self) -> Self:
        for kind, rows, expected in (
            ("networks", self.networks, NETWORKS),
            ("devices", self.devices, DEVICE_TIERS),
            ("operating_systems", self.operating_systems, OPERATING_SYSTEMS),
        ):
            if set(rows) != set(expected):
                raise ValueError(f"{kind} must cover exactly {list(expected)}, not {sorted(rows)}")
        return self


class UnknownCell(ValueError):
    """The cell names an OS, network or device tier the tables do not describe."""


def evaluate_cell(
    cell: MatrixCell, package: PackageFacts, tables: CompatibilityTables
) -> CellResult:
    os_support = _row(tables.operating_systems, cell.os)
    checks = [
        download_check(package.size_bytes, cell.network, _row(tables.networks, cell.network)),
        base_version_check(package.manifest.min_base_version, cell.os, os_support),
        jsapi_check(package.manifest.jsapis, cell.os, os_support),
        size_check(package, cell.device_tier, _row(tables.devices, cell.device_tier)),
    ]
    return CellResult(cell=cell, verdict=worst(c.verdict for c in checks), checks=checks)


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    return max(verdicts, key=SEVERITY.__getitem__, default="pass")


def download_check(size_bytes: int, network: str, profile: NetworkProfile) -> CellCheck:
    seconds = profile.download_seconds(size_bytes)
    verdict = _grade(seconds, profile.warn_seconds, profile.fail_seconds)
    took = f"download {seconds:.1f} s on {network}"
    detail = {
        "fail": f"{took} exceeds the {profile.fail_seconds:.1f} s budget",
        "warn": f"{took} is over the {profile.warn_seconds:.1f} s target "
        f"(budget {profile.fail_seconds:.1f} s)",
        "pass": f"{took} is within the {profile.warn_seconds:.1f} s target",
    }[verdict]
    return CellCheck(name="download", verdict=verdict, detail=detail)


def base_version_check(required: str | None, os_name: str, support: OsSupport) -> CellCheck:
    oldest, latest = support.oldest_base_version, support.latest_base_version
    if required is None:
        return CellCheck(name="base_version", verdict="pass", detail="no minBaseVersion declared")
    if base_version_key(required) > base_version_key(latest):
        verdict: Verdict = "fail"
        detail = f"needs base library {required}; {os_name} containers ship at most {latest}"
    elif base_version_key(required) > base_version_key(oldest):
        verdict = "warn"
        detail = (
            f"needs base library {required}; {os_name} containers from {oldest} are still in "
            "use and cannot open it"
        )
    else:
        verdict = "pass"
        detail = f"needs base library {required}; every {os_name} container in use has it"
    return CellCheck(name="base_version", verdict=verdict, detail=detail)


def jsapi_check(jsapis: list[str], os_name: str, support: OsSupport) -> CellCheck:
    unsupported = sorted(api for api in jsapis if support.support(api) == "unsupported")
    partial = sorted(api for api in jsapis if support.support(api) == "partial")
    problems = []
    if unsupported:
        problems.append(f"unsupported on {os_name}: {', '.join(unsupported)}")
    if partial:
        problems.append(f"partially supported on {os_name}: {', '.join(partial)}")
    verdict: Verdict = "fail" if unsupported else "warn" if partial else "pass"
    detail = "; ".join(problems) or f"all {len(jsapis)} declared APIs are supported on {os_name}"
    return CellCheck(name="jsapis", verdict=verdict, detail=detail)


def size_check(package: PackageFacts, tier: str, limits: DeviceLimits) -> CellCheck:
    measures = [
        ("package", package.size_bytes, limits.warn_package_bytes, limits.fail_package_bytes),
        (
            "unpacked",
            package.uncompressed_bytes,
            limits.warn_unpacked_bytes,
            limits.fail_unpacked_bytes,
        ),
    ]
    verdicts = [_grade(size, warn, fail) for _, size, warn, fail in measures]
    problems = [
        f"{label} {_size(size)} exceeds the {_size(fail)} limit for {tier} devices"
        if verdict == "fail"
        else f"{label} {_size(size)} is over the {_size(warn)} target for {tier} devices"
        for (label, size, warn, fail), verdict in zip(measures, verdicts, strict=True)
        if verdict != "pass"
    ]
    detail = "; ".join(problems) or (
        f"package {_size(package.size_bytes)} and unpacked {_size(package.uncompressed_bytes)} "
        f"are within the limits for {tier} devices"
    )
    return CellCheck(name="package_size", verdict=worst(verdicts), detail=detail)


def _grade(value: float, warn: float, fail: float) -> Verdict:
    if value > fail:
        return "fail"
    if value > warn:
        return "warn"
    return "pass"


def _size(size_bytes: int) -> str:
    if size_bytes < KiB:
        return f"{size_bytes} bytes"
    if size_bytes < MiB:
        return f"{size_bytes / KiB:.1f} KiB"
    return f"{size_bytes / MiB:.1f} MiB"


_Row = TypeVar("_Row")


def _row(table: Mapping[str, _Row], key: str) -> _Row:
    try:
        return table[key]
    except KeyError:
        raise UnknownCell(f"no compatibility data for {key!r}; known: {sorted(table)}") from None
