"""0.1.0's module of the DynamoDB attribute-value mapping, now
:mod:`arrowflow.connectors._aws.attribute_values` (same objects)."""

from __future__ import annotations

from .._aws.attribute_values import AttributeValues, from_attribute_values, to_attribute_values

__all__ = ["AttributeValues", "from_attribute_values", "to_attribute_values"]
