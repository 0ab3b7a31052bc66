"""The base every API model derives from, and cross-field rules declared once for two enforcers.

A Society is validated in two places: by the kube-apiserver at `kubectl apply` time (the CRD's
openAPIV3Schema, CEL rules included) and by pydantic in `society validate`, `society run` and the
operator. Both come from these models, so they cannot disagree:
- field types, bounds, enums and defaults become the CRD schema through pydantic's JSON schema;
- a cross-field constraint is one `Rule`: its CEL expression goes into the CRD as an
  `x-kubernetes-validations` entry, and its Python predicate runs in an after-validator;
- an immutable field carries `immutable(...)`, a CEL transition rule that only the apiserver can
  check (it alone sees the old object).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

CEL_VALIDATIONS = "x-kubernetes-validations"


@dataclass(frozen=True)
class Rule:
    """A cross-field constraint on one object.

    `cel` is evaluated by the apiserver with `self` bound to the object; `check` must say the
    same thing in Python (a test evaluates both on the same manifests). `field` names the field
    the message is about, relative to the object, so both enforcers point at it.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    field: str | None = None

    def as_cel(self) -> dict[str, str]:
        entry = {"rule": self.cel, "message": self.message}
        if self.field:
            entry["fieldPath"] = "." + self.field
        return entry


# The CEL transition rule that makes a field immutable (the apiserver compares with the stored
# object); `immutable.py` finds the fields by it, for `society run`, which has no apiserver.
IMMUTABLE_RULE = "self == oldSelf"


def immutable(what: str) -> dict[str, Any]:
    """`json_schema_extra` for a field that may not change once the Society exists."""
    return {
        CEL_VALIDATIONS: [
            {
                "rule": IMMUTABLE_RULE,
                "message": f"{what} is immutable: changing it mid-run would mix two experiments; "
                "create a new Society instead",
            }
        ]
    }


def _add_rules_to_schema(schema: dict[str, Any], cls: type[ApiModel]) -> None:
    if cls.rules:
        schema.setdefault(CEL_VALIDATIONS, []).extend(rule.as_cel() for rule in cls.rules)


class ApiModel(BaseModel):
    """camelCase on the wire, unknown fields rejected (a typo must never be silently dropped)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra=_add_rules_to_schema,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self):
        for rule in type(self).rules:
            if not rule.check(self):
                raise PydanticCustomError("cross_field", rule.message, {"field": rule.field})
        return self


class StatusModel(ApiModel):
    """Written by the operator, read back by it: tolerate fields a newer operator added."""

    model_config = ConfigDict(extra="ignore")
