"""Fixtures for the format tests."""

from __future__ import annotations

import pyarrow as pa
import pytest
from format_samples import eight_columns


@pytest.fixture
def batch8() -> pa.RecordBatch:
    return eight_columns()
