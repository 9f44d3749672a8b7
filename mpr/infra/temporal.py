"""Connecting to Temporal: one data converter, one way to find the server, one set of
search attributes.

Workers, clients, `mpr` and replayers all build their converter with `data_converter`, so that
what one encrypts the others read (infra.codec).

Connection settings come from Temporal's env config (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE and the profile file), with the values
`make up` wrote to .data/stack.env filling in what the environment leaves unset.
"""

import dataclasses
import re
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from mpr.infra.codec import EncryptionCodec, KeyRing, WorkerPayloadConverter
from mpr.infra.settings import Settings
from workflows import search_attributes

DEFAULT_ADDRESS = "localhost:7233"
# Values to JSON payloads and back, without the codec: for search attributes (never encoded)
# and for payloads already decrypted.
PAYLOAD_CONVERTER = pydantic_data_converter.payload_converter
# How the SDK core words an OS error inside a failed connect: `... message: "Connection refused"`.
CORE_OS_MESSAGE = re.compile(r'message: "([^"]+)"')


def payload_codec(settings: Settings, *, worker: bool = False) -> EncryptionCodec:
    """The codec of MPR_PAYLOAD_KEYS (PayloadKeyError when malformed). Without keys it still
    reads plain payloads, and refuses to send any unless MPR_PAYLOAD_ENCRYPTION=off. The
    worker's hands on what it cannot decrypt (EncryptionCodec)."""
    keys = KeyRing.parse(settings.payload_keys.get_secret_value() if settings.payload_keys
                         else None)
    return EncryptionCodec(keys, encrypt=settings.payload_encryption,
                           pass_undecryptable=worker)


def data_converter(settings: Settings, *, worker: bool = False) -> DataConverter:
    """Pydantic JSON, then the payload codec; the worker's reads what it could not decrypt as
    `Undecryptable` (infra.codec)."""
    converter = dataclasses.replace(pydantic_data_converter,
                                    payload_codec=payload_codec(settings, worker=worker))
    if worker:
        converter = dataclasses.replace(converter, payload_converter_class=WorkerPayloadConverter)
    return converter


def replay_data_converter(settings: Settings) -> DataConverter:
    """The converter to replay a history with. Replaying sends nothing anywhere, so without
    MPR_PAYLOAD_KEYS what the workflow would send passes through unencrypted; with keys it is
    the worker's own converter (`data_converter`). Encrypted payloads in the history still
    need their key to be read (PayloadKeyError names it)."""
    if settings.payload_keys is None:
        codec = EncryptionCodec(KeyRing.parse(None), encrypt=False)
        return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
    return data_converter(settings)


class TemporalSettingsError(ValueError):
    """Temporal's connection settings cannot be used as they are (before any connection)."""


class TemporalUnreachable(ConnectionError):
    """No Temporal server answered at the configured address; the message names it and what
    to do."""

    def __init__(self, address: str, namespace: str, reason: str) -> None:
        super().__init__(f"cannot reach Temporal at {address} (namespace {namespace}): {reason}; "
                         "set TEMPORAL_ADDRESS to a running server (`make up` starts one)")
        self.address = address
        self.reason = reason


def connect_config(settings: Settings) -> dict[str, Any]:
    try:
        config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    except OSError as error:
        # The TLS files (TEMPORAL_TLS_*_PATH or the profile's) are read here.
        raise TemporalSettingsError(
            f"cannot read {error.filename}: {error.strerror} (named by TEMPORAL_TLS_* or by "
            "the profile in TEMPORAL_CONFIG_FILE)"
        ) from None
    except (ValueError, RuntimeError) as error:  # the SDK's ConfigError is a RuntimeError
        raise TemporalSettingsError(f"Temporal's env config is invalid: {error}") from None
    if settings.temporal_address:
        config["target_host"] = settings.temporal_address
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if settings.temporal_namespace:
        config["namespace"] = settings.temporal_namespace
    return config


def metrics_runtime(address: str) -> Runtime:
    """A runtime exporting the SDK's metrics, and those workflows record, for Prometheus."""
    return Runtime(telemetry=TelemetryConfig(
        metrics=PrometheusConfig(bind_address=address, durations_as_seconds=True)
    ))


async def connect(
    settings: Settings, runtime: Runtime | None = None, *, worker: bool = False
) -> Client:
    """A client of the configured namespace; `worker` for the worker's own (data_converter)."""
    config = connect_config(settings)
    converter = data_converter(settings, worker=worker)
    try:
        return await Client.connect(**config, data_converter=converter, runtime=runtime)
    except RuntimeError as error:
        raise TemporalUnreachable(config["target_host"], config.get("namespace", "default"),
                                  _connect_failure(error)) from error


def _connect_failure(error: RuntimeError) -> str:
    """The OS's reason (`Connection refused`) rather than the SDK core's nested dump of it;
    other failures (TLS, say) as the SDK tells them."""
    found = CORE_OS_MESSAGE.search(str(error))
    return found.group(1) if found else str(error)


def search_attribute_types() -> dict[str, "IndexedValueType.ValueType"]:
    return {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in search_attributes.ALL
    }


def search_attribute_type_names() -> dict[str, str]:
    """Name -> type as the `temporal` CLI spells it (Keyword, Int, Datetime)."""
    return {
        name: IndexedValueType.Name(kind).removeprefix("INDEXED_VALUE_TYPE_").title()
        for name, kind in search_attribute_types().items()
    }


def search_attribute_flags() -> list[str]:
    """`temporal server start-dev` arguments that register the release search attributes."""
    flags = []
    for name, type_name in search_attribute_type_names().items():
        flags += ["--search-attribute", f"{name}={type_name}"]
    return flags


async def add_search_attributes(client: Client, names: list[str]) -> None:
    types = search_attribute_types()
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace, search_attributes={name: types[name] for name in names}
        )
    )


async def register_search_attributes(client: Client) -> list[str]:
    """Add the release search attributes the namespace lacks; returns the names added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = sorted(set(search_attribute_types()) - known)
    if missing:
        await add_search_attributes(client, missing)
    return missing
