"""The `Society` resource: apiVersion, kind, metadata, spec and status."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import ApiModel, Rule
from .spec import SocietySpec
from .status import SocietyStatus

GROUP = "society.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Society"
PLURAL = "societies"
SINGULAR = "society"
SHORT_NAMES = ["soc"]

# Children are named <society>-<suffix> (e.g. <society>-train-critic-15-it12) and Job names must
# be RFC 1035 labels of at most 63 characters (they become the job-name label of their pods;
# Services need a leading letter), so the Society name is one too, with room for the suffix.
MAX_NAME_LENGTH = 40
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
_NAME_RE = re.compile(NAME_PATTERN)


class ObjectMeta(BaseModel):
    """The part of metadata the operator reads; the apiserver owns the rest."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


def _name_ok(society: Society) -> bool:
    # fullmatch: `$` alone also matches before a final newline, which the apiserver refuses.
    name = society.metadata.name
    return name is not None and len(name) <= MAX_NAME_LENGTH and bool(_NAME_RE.fullmatch(name))


class Society(ApiModel):
    """A Society custom resource, as stored by the apiserver."""

    apiVersion: Literal["society.dev/v1alpha1"] = API_VERSION
    kind: Literal["Society"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: SocietySpec
    status: SocietyStatus | None = None

    rules = (
        Rule(
            cel=f"size(self.metadata.name) <= {MAX_NAME_LENGTH} && "
            f"self.metadata.name.matches('{NAME_PATTERN}')",
            message=f"metadata.name must be at most {MAX_NAME_LENGTH} characters of lower-case "
            "letters, digits and '-', starting with a letter and ending with a letter or digit "
            "(it prefixes the names of Jobs and Services)",
            check=_name_ok,
        ),
    )

    def to_manifest(self) -> dict[str, Any]:
        """The object as YAML/JSON would hold it (camelCase, no unset optionals)."""
        return self.model_dump(mode="json", exclude_none=True)
