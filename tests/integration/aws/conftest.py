"""Fixtures for the AWS suites: moto (``aws_endpoint``), the fault-injecting proxy, boto3 clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_fault_proxy import FaultProxy
from aws_helpers import CREDS, boto_factory


@pytest.fixture
def aws_opts(aws_endpoint: str) -> dict[str, Any]:
    """boto3 options for moto itself."""
    return {**CREDS, "endpoint_url": aws_endpoint}


@pytest.fixture
def proxy(aws_endpoint: str) -> Iterator[FaultProxy]:
    p = FaultProxy(aws_endpoint)
    yield p
    p.close()


@pytest.fixture
def proxy_opts(proxy: FaultProxy) -> dict[str, Any]:
    """boto3 options pointing at the fault proxy."""
    return {**CREDS, "endpoint_url": proxy.url}


@pytest.fixture
def boto(aws_endpoint: str) -> Callable[[str], Any]:
    return boto_factory(aws_endpoint)
