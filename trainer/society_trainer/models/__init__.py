"""From a Society's model name to loaded weights: the one place every step loads a base model.

A name is one of
- `builtin:<name>`: a model this project made itself: shipped with the package (checked
  against its checksums) or built on first use and cached (builtin.py), for runs without a GPU
  or a network;
- a local directory;
- a Hugging Face Hub id, downloaded (and cached) by transformers.

Anything else is an error that says which of those the name failed to be. Nothing is ever
substituted: a typo in a model name must not quietly train a different model.

Modules, lowest first (each imports only those above it): names (what a name may be),
tiny_model (a tiny Llama and its tokenizer), tokenizer_numbers (builtin:tiny-equations'
tokenizer), tiny_arithmetic and tiny_equations (the recipes of builtin:tiny-arithmetic and
builtin:tiny-equations), builtin (the registry, the shipped weights, the cache), build (`python
-m society_trainer.models.build NAME DIR`: a rebuild from the recipe), dtypes, loading (names ->
loaded models, re-exported here).
"""

from .loading import FALLBACK_CHAT_TEMPLATE, load_causal_lm, load_tokenizer, resolve_model
from .names import BUILTIN_PREFIX, ModelNotFoundError

__all__ = [
    "BUILTIN_PREFIX",
    "FALLBACK_CHAT_TEMPLATE",
    "ModelNotFoundError",
    "load_causal_lm",
    "load_tokenizer",
    "resolve_model",
]
