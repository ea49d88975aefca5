"""Building blocks shared by every type that appears in the CRD schema."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

Int32 = Annotated[int, Field(json_schema_extra={"format": "int32"})]
Int64 = Annotated[int, Field(json_schema_extra={"format": "int64"})]

PRESERVE_UNKNOWN: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


class ApiModel(BaseModel):
    """Base of all API types: snake_case in Python, camelCase on the wire, unknown keys refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One CEL validation rule as it appears under x-kubernetes-validations."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def list_map(*keys: str) -> dict[str, Any]:
    """Schema extras that mark a list as a map keyed by `keys`."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}
