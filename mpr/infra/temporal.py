"""Connecting to Temporal: one data converter, one way to find the server, one set of
search attributes.

Workers, clients, `mpr` and replayers all build their converter with `data_converter`, so that
what one encrypts the others read (infra.codec).

Connection settings come from Temporal's env config (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE and the profile file), with the values
`make up` wrote to .data/stack.env filling in what the environment leaves unset.
"""

import dataclasses
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

from mpr.infra.codec import EncryptionCodec, KeyRing
from mpr.infra.settings import Settings
from workflows import search_attributes

DEFAULT_ADDRESS = "localhost:7233"
# Values to JSON payloads and back, without the codec: for search attributes (never encoded)
# and for payloads already decrypted.
PAYLOAD_CONVERTER = pydantic_data_converter.payload_converter


def payload_codec(settings: Settings) -> EncryptionCodec:
    """The codec of MPR_PAYLOAD_KEYS (PayloadKeyError when malformed). Without keys it still
    reads plain payloads, and refuses to send any unless MPR_PAYLOAD_ENCRYPTION=off."""
    keys = KeyRing.parse(settings.payload_keys.get_secret_value() if settings.payload_keys
                         else None)
    return EncryptionCodec(keys, encrypt=settings.payload_encryption)


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic JSON, then the payload codec."""
    return dataclasses.replace(pydantic_data_converter, payload_codec=payload_codec(settings))


class TemporalSettingsError(ValueError):
    """Temporal's connection settings cannot be used as they are (before any connection)."""


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


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    config = connect_config(settings)
    converter = data_converter(settings)
    try:
        return await Client.connect(**config, data_converter=converter, runtime=runtime)
    except RuntimeError as error:
        raise ConnectionError(
            f"cannot reach Temporal at {config['target_host']} "
            f"(namespace {config.get('namespace', 'default')}): {error}"
        ) from error


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
