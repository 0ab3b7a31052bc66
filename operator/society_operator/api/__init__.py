"""The Society API: one set of pydantic models that validates and defaults in the operator and
the CLI, and from which the CRD and the API reference are generated."""

from .base import ApiModel, Rule
from .society import API_VERSION, GROUP, KIND, PLURAL, VERSION, Society
from .spec import SocietySpec
from .status import SocietyStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ApiModel",
    "Rule",
    "Society",
    "SocietySpec",
    "SocietyStatus",
]
