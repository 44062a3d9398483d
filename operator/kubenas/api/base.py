"""Shared base of the API models: camelCase on the wire, unknown fields refused."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Every API object: camelCase JSON names, snake_case attributes, and no silent typos.

    ``extra="forbid"`` makes a misspelt field an error that names it, mirroring the API server's
    strict field validation, so local mode refuses what ``kubectl apply`` would refuse.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict as Kubernetes stores it: camelCase, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
