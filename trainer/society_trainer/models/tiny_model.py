"""A tiny but real causal LM, built locally: nothing can be downloaded here, yet tests and CPU runs
need a model directory that every consumer (transformers, PEFT, TRL, vLLM-style loaders) opens with
the ordinary `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained` calls, so the code under test
takes the same paths it takes with a hub model.

The tokenizer is byte-level BPE without merges: every byte is one token, so any text round-trips
exactly (no unknown token), digits are single tokens (which suits arithmetic), and building it is
deterministic with no training step. Its chat template is ChatML with `{% generation %}` markers
around assistant turns, which `return_assistant_tokens_mask` and TRL's `assistant_only_loss` need.

The config is a Llama one on purpose: AutoTokenizer trusts the saved tokenizer for Llama, while a
Qwen2 config makes it swap in Qwen2's own pre-tokenizer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS, IM_START = "<|pad|>", "<|startoftext|>", "<|im_end|>", "<|im_start|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, IM_START)

# ChatML, as Qwen and many instruct models use it. The assistant's `<|im_end|>` sits inside the
# generation block so that training on assistant tokens also teaches the model when to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# What makes a directory a finished build; the build lands by one rename, so all or none exist.
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def build_tokenizer(
    max_length: int = 4096,
    merges: Sequence[tuple[str, str]] = (),
    merged_tokens: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """The tiny model's tokenizer: special tokens take ids 0..3, the 256 bytes follow, then
    `merged_tokens`, the tokens that BPE `merges` (none by default) make."""
    byte_alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = (*SPECIAL_TOKENS, *byte_alphabet, *merged_tokens)
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=list(merges)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    # Untrimmed offsets keep char_to_token exact, which the assistant-token mask relies on.
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=max_length,
    )


def build_tiny_model(
    path: Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate_size: int = 128,
    max_position_embeddings: int = 4096,
) -> Path:
    """Write a randomly initialised Llama and its tokenizer to `path` and return `path`.

    Idempotent by path: a finished directory is returned as it is, whatever sizes it was built
    with. The files are written to a sibling temporary directory and renamed into place, so a
    crash or a concurrent builder never leaves a half-written model that looks finished.
    """
    path = Path(path)
    if _is_complete(path):
        return path
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} holds files but no complete tiny model; not overwriting")

    tokenizer = build_tokenizer(max_length=max_position_embeddings)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if path.exists():
            path.rmdir()  # empty (checked above), e.g. made by tmp_path_factory.mktemp
        os.replace(staging, path)
    except OSError:
        if not _is_complete(path):  # a concurrent builder did not win the race either
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in _REQUIRED_FILES)
