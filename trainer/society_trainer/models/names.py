"""What a model name may be, shared by the loader and the builtin registry below it, so that
neither imports the other to name an error."""

from __future__ import annotations

BUILTIN_PREFIX = "builtin:"


class ModelNotFoundError(ValueError):
    """A model name that is neither a builtin, nor a local directory, nor loadable from the Hub."""
