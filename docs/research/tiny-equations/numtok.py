"""Tokenizer for the tiny-equations v2 prototype: the product's byte-level BPE (every byte a token,
so any text round-trips), plus BPE merges that make

- every number 0..299 ONE token (merges on digit pairs, then pair+digit / digit+pair), and
- a few fixed phrases of the task's formats one token each (the "keys": the token just before a
  number that must be copied is unique in its context, so a plain one-token induction head
  copies it).

Deterministic, no training step. Same special tokens and chat template as the product's
tiny_model.build_tokenizer, so the product's loaders and TRL treat it the same way.
"""

from __future__ import annotations

import sys

sys.path.insert(0, "/work/scratch13/v2/vendor/trainer")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from society_trainer.models.tiny_model import CHAT_TEMPLATE, SPECIAL_TOKENS  # noqa: E402
from society_trainer.models.tiny_model import BOS, EOS, IM_START, PAD  # noqa: E402

# Phrases that become one token each (longest first does not matter: chains are independent).
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
MAX_NUMBER = 299


def _byte_map() -> dict[int, str]:
    """GPT-2's bytes_to_unicode: the byte-level pre-tokenizer's alphabet."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


BYTE = _byte_map()


def mapped(text: str) -> str:
    return "".join(BYTE[b] for b in text.encode())


def merges_and_tokens() -> tuple[list[tuple[str, str]], list[str]]:
    merges: list[tuple[str, str]] = []
    tokens: list[str] = []

    def add(left: str, right: str) -> None:
        if (left, right) not in merges:
            merges.append((left, right))
            if left + right not in tokens:
                tokens.append(left + right)

    digits = "0123456789"
    for d1 in digits:  # every digit pair, "00".."99" (intermediates of 3-digit numbers too)
        for d2 in digits:
            add(d1, d2)
    for n in range(100, MAX_NUMBER + 1):
        s = str(n)
        add(s[:2], s[2])  # whichever pair merged first, both completions exist
        add(s[0], s[1:])
    for phrase in PHRASES:
        m = mapped(phrase)
        for i in range(2, len(m) + 1):
            add(m[: i - 1], m[i - 1])
    return merges, tokens


def build_tokenizer(max_length: int = 1024) -> PreTrainedTokenizerFast:
    byte_alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges, extra = merges_and_tokens()
    vocab = {t: i for i, t in enumerate((*SPECIAL_TOKENS, *byte_alphabet, *extra))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
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


if __name__ == "__main__":
    import random

    tok = build_tokenizer()
    print("vocab", len(tok))
    for n in range(MAX_NUMBER + 1):
        for ctx in (f"{n}", f"x+{n}=", f"Solve {n}x", f"is {n}."):
            ids = tok(ctx, add_special_tokens=False)["input_ids"]
            assert tok.decode(ids) == ctx
        assert len(tok(str(n), add_special_tokens=False)["input_ids"]) == 1, n
    for phrase in PHRASES:
        for ctx in (phrase, f"7{phrase}12", f"x.{phrase}"):
            ids = tok(ctx, add_special_tokens=False)["input_ids"]
            pieces = [tok.decode([i]) for i in ids]
            assert phrase in pieces, (phrase, ctx, pieces)
    rng = random.Random(0)
    for _ in range(2000):
        s = "".join(rng.choice("0123456789 xSolveAgent:\n.,+=*isyes") for _ in range(40))
        assert tok.decode(tok(s, add_special_tokens=False)["input_ids"]) == s
    s = tok.apply_chat_template(
        [{"role": "user", "content": "Solve 7x+12=61."}, {"role": "assistant", "content": "7"}],
        tokenize=False,
    )
    print([tok.decode([i]) for i in tok(s, add_special_tokens=False)["input_ids"]])
    print("ok")
