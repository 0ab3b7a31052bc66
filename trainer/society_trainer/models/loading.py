"""Model names to loaded tokenizers and models (the naming scheme is in this package's docstring).

A builtin is the package's shipped copy (checked) or built on first use; a Hub id is loaded
at the revision vLLM serves.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .names import BUILTIN_PREFIX, ModelNotFoundError

log = logging.getLogger(__name__)

# The chat template of a model that has none (a base model): plain "User:" / "Assistant:" turns.
# Training and in-process generation both use it; a vLLM server must be given the same text
# (inference.extraArgs: ["--chat-template=<it>"], docs/method.md). The assistant's part is
# marked for the loss, and ends in EOS so that the model learns to stop.
FALLBACK_CHAT_TEMPLATE = (
    "{{- bos_token or '' }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- 'Assistant:\\n' }}"
    "{%- generation %}{{- message['content'] + (eos_token or '') }}{%- endgeneration %}"
    "{{- '\\n\\n' }}"
    "{%- else %}"
    "{{- message['role'] | capitalize + ':\\n' + message['content'] + '\\n\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant:\\n' }}{%- endif %}"
)


def resolve_model(name: str | Path) -> str:
    """Where transformers finds the model: a directory (a builtin's shipped copy, or its cached
    build, built on first use), or the Hub id itself. Raises ModelNotFoundError for an unknown
    builtin or a missing path."""
    text = str(name)
    if text.startswith(BUILTIN_PREFIX):
        from .builtin import builtin_model

        return str(builtin_model(text.removeprefix(BUILTIN_PREFIX)))
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_absolute() or text.startswith((".", "~")) or path.exists():
        raise ModelNotFoundError(f"model {text!r}: no model directory at {path}")
    return text


def _load_error(name: str | Path, source: str, error: Exception) -> ModelNotFoundError:
    reason = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    if Path(source).is_dir():
        return ModelNotFoundError(f"model {str(name)!r}: cannot load {source} ({reason})")
    return ModelNotFoundError(
        f"model {str(name)!r} is not a builtin model ({_builtins()}), not a local "
        f"directory, and could not be loaded from the Hugging Face Hub ({reason})"
    )


def _builtins() -> str:
    from .builtin import BUILTINS

    return ", ".join(f"{BUILTIN_PREFIX}{name}" for name in sorted(BUILTINS))


def _revision(source: str, revision: str | None) -> dict[str, str]:
    """A Hub id is loaded at spec.model.revision, the one vLLM serves, so that adapters are
    trained on the weights they are served with; a directory has no revisions."""
    return {"revision": revision} if revision and not Path(source).is_dir() else {}


def load_tokenizer(name: str | Path, revision: str | None = None):
    """The model's tokenizer; one without a chat template gets FALLBACK_CHAT_TEMPLATE."""
    from transformers import AutoTokenizer

    source = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **_revision(source, revision))
    except OSError as error:
        raise _load_error(name, source, error) from error
    if getattr(tokenizer, "chat_template", "") is None:  # has the attribute, and it is unset
        log.info("%s has no chat template: using plain User:/Assistant: turns", name)
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return tokenizer


def load_causal_lm(name: str | Path, dtype: str = "auto", revision: str | None = None, **kwargs):
    """AutoModelForCausalLM for `name`; `dtype` is a step config's dtype name."""
    from transformers import AutoModelForCausalLM

    from .dtypes import torch_dtype

    source = resolve_model(name)
    kwargs.update(_revision(source, revision))
    try:
        return AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype(dtype), **kwargs)
    except OSError as error:
        raise _load_error(name, source, error) from error
