"""The one place that connects to Temporal."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from diachronic.settings import Settings


async def connect(settings: Settings) -> Client:
    """A client for the configured Temporal, speaking pydantic models on the wire."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
