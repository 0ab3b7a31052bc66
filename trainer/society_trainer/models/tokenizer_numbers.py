"""The tokenizer of builtin:tiny-equations: tiny_model's byte-level BPE (every byte a token, so any
text round-trips) plus merges that make

- every number 0..299 one token (the digit pairs, then pair+digit and digit+pair), and
- the fixed phrases of the task's formats one token each: the token right before a number that a
  role must copy is then unique in its context, so a one-token induction head copies it.

Deterministic, no training step: the merges apply anywhere in a text, and every byte string still
round-trips. The special tokens and the ChatML chat template are tiny_model's, so the loaders,
TRL's assistant mask and vLLM treat it like tiny-arithmetic's tokenizer (674 tokens in all).
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from . import tiny_model

# Phrases that become one token each. Their order (and the numbers' before them) fixes the token
# ids, which the shipped weights depend on: append, never reorder.
PHRASES = (
    "user\n",
    "assistant\n",
    "Solve ",
    "Summarise.",
    "Check.",
    "Agent 1:\n",
    "Agent 2:\n",
    "Agent 3:\n",
    "Agent 4:\n",
    "You said ",
    "One says ",
    "Another says ",
    "A third says ",
    " is ",
    ", yes.",
    ", no.",
    "Answer ",
    "None fits.",
)
MAX_NUMBER = 299  # 0..MAX_NUMBER are one token each


def _byte_map() -> dict[int, str]:
    """GPT-2's bytes_to_unicode: the byte-level pre-tokenizer's alphabet, byte by byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


_BYTE = _byte_map()


def _mapped(text: str) -> str:
    return "".join(_BYTE[b] for b in text.encode())


def merges_and_tokens() -> tuple[list[tuple[str, str]], list[str]]:
    """The BPE merges, in order, and the tokens they add, in order."""
    merges: list[tuple[str, str]] = []
    tokens: list[str] = []

    def add(left: str, right: str) -> None:
        if (left, right) not in merges:
            merges.append((left, right))
            if left + right not in tokens:
                tokens.append(left + right)

    digits = "0123456789"
    for first in digits:  # every digit pair, "00".."99" (the prefixes of 3-digit numbers too)
        for second in digits:
            add(first, second)
    for number in range(100, MAX_NUMBER + 1):
        text = str(number)
        add(text[:2], text[2])  # whichever pair merged first, both completions exist
        add(text[0], text[1:])
    for phrase in PHRASES:
        mapped = _mapped(phrase)
        for end in range(2, len(mapped) + 1):
            add(mapped[: end - 1], mapped[end - 1])
    return merges, tokens


def build_tokenizer(max_length: int = 512) -> PreTrainedTokenizerFast:
    """tiny_model's tokenizer with these merges: special tokens take ids 0..3, the 256 bytes
    follow, then the merged tokens."""
    merges, merged = merges_and_tokens()
    return tiny_model.build_tokenizer(max_length, merges, merged)
