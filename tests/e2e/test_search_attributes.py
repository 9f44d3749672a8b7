"""A namespace that lacks the release search attributes (say, a server kept from an older
version) gets them from the worker at start, instead of failing every workflow task."""

import uuid

from google.protobuf.duration_pb2 import Duration
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client

from mpr.infra.temporal import register_search_attributes, search_attribute_types
from tests.stack import TEST_CONVERTER
from workers.main import ensure_search_attributes


async def test_missing_search_attributes_are_registered_once(temporal_address: str) -> None:
    namespace = f"older-{uuid.uuid4().hex[:8]}"
    admin = await Client.connect(temporal_address)
    await admin.workflow_service.register_namespace(RegisterNamespaceRequest(
        namespace=namespace, workflow_execution_retention_period=Duration(seconds=86_400)))
    client = await Client.connect(temporal_address, namespace=namespace,
                                  data_converter=TEST_CONVERTER)

    await ensure_search_attributes(client)

    assert await register_search_attributes(client) == [], "all present after the first call"
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace))
    assert set(search_attribute_types()) <= set(listed.custom_attributes)
