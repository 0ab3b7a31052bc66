"""The dtype names step configs use (config.Dtype), as torch and transformers take them."""

from __future__ import annotations

import torch


def torch_dtype(name: str) -> torch.dtype | str:
    """ "auto" passes through: transformers then takes the model config's own dtype."""
    return name if name == "auto" else getattr(torch, name)
