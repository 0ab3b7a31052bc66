"""Conversations into training rows: token ids, and labels that put the loss on what a row is
meant to teach.

TRL's assistant-only loss needs `{% generation %}` markers in the chat template, and TRL adds
them only to templates it knows (Phi-3, Llama 3, Qwen, ...): a Mistral-style template
(`[INST] ... [/INST] answer</s>`) is refused. It also puts the loss on every assistant turn,
while a critic row should by default teach only its final answer (a corrected row's first
answer is the wrong one). So rows are tokenized here, with the model's own chat template, and
reach SFTTrainer pre-tokenized (`input_ids` and `labels`, which TRL uses as they are). An
assistant turn's tokens are found

1. by the template's `{% generation %}` blocks, or those of TRL's training variant of a
   template it knows (the same text, with markers; Phi-3's, for one);
2. otherwise by rendering the conversation up to each assistant turn: the turn is what
   rendering it adds to the prompt that asks for it (`add_generation_prompt`). That needs a
   template under which a conversation's beginning renders as a prefix of the whole, as chat
   templates do; one that does not is refused, with what to do about it.

A tokenizer without a chat template (a base model) gets models.FALLBACK_CHAT_TEMPLATE when it is
loaded, for training and generation alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

LossOn = Literal["final_answer", "all_assistant_turns"]
Overlong = Literal["drop", "truncate"]
IGNORE = -100  # the label of a token the loss does not cover


class TemplateError(ValueError):
    """A chat template under which assistant turns cannot be told apart from prompts."""


@dataclass(frozen=True)
class Rows:
    rows: list[dict[str, list[int]]]  # {"input_ids", "labels"}, at most max_length tokens each
    dropped: int  # over max_length (an exchange, with overlong "drop"), or with nothing to learn


def training_template(tokenizer) -> tuple[str, bool]:
    """The template rows are rendered with, and whether it marks assistant turns."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template["default"]
    if template is None:
        raise TemplateError("the tokenizer has no chat template")
    if has_generation_markers(template):
        return template, True
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError:  # a template TRL does not know: found by prefixes instead
        return template, False
    return (patched, True) if patched else (template, False)


def turn_tokens(
    tokenizer, template: str, marked: bool, messages: Sequence[dict]
) -> tuple[list[int], list[int]]:
    """The conversation's token ids, and for each token the index of the assistant turn it
    belongs to (0, 1, ...) or -1 (a prompt, or the template's own text between turns)."""
    answers = sum(m["role"] == "assistant" for m in messages)
    if marked:
        out = tokenizer.apply_chat_template(
            list(messages),
            chat_template=template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        ids, turns = list(out["input_ids"]), _runs(out["assistant_masks"])
        if max(turns, default=-1) + 1 == answers:
            return ids, turns
    return _by_prefixes(tokenizer, template, messages)


def _runs(mask: Sequence[int]) -> list[int]:
    """Number each run of 1s in an assistant mask: one run per generation block."""
    turns, turn, previous = [], -1, 0
    for bit in mask:
        if bit and not previous:
            turn += 1
        turns.append(turn if bit else -1)
        previous = bit
    return turns


def _render(tokenizer, template: str, messages: Sequence[dict], prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        list(messages), chat_template=template, tokenize=False, add_generation_prompt=prompt
    )


def _by_prefixes(tokenizer, template: str, messages: Sequence[dict]) -> tuple[list[int], list[int]]:
    whole = _render(tokenizer, template, messages, prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        asked = _render(tokenizer, template, messages[:i], prompt=True)
        answered = _render(tokenizer, template, messages[: i + 1], prompt=False)
        if not (whole.startswith(asked) and whole.startswith(answered)) or len(asked) >= len(
            answered
        ):
            raise TemplateError(
                "the chat template does not render a conversation's first messages as the "
                "beginning of the whole conversation, so the assistant's turns cannot be found; "
                "give the model a chat template with {% generation %} markers around them"
            )
        spans.append((len(asked), len(answered)))
    encoded = tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True)
    turns = []
    for start, end in encoded["offset_mapping"]:
        # A token belongs to the turn its characters overlap; zero-width tokens to none.
        inside = [n for n, (a, b) in enumerate(spans) if start < b and end > a and end > start]
        turns.append(inside[0] if inside else -1)
    return list(encoded["input_ids"]), turns


def tokenize_rows(
    tokenizer, rows: Sequence[dict], loss_on: LossOn, max_length: int, overlong: Overlong
) -> Rows:
    """Each row's ids and labels. The loss covers the last assistant turn, or every one. A row
    longer than `max_length` with several answers (a critic exchange) is dropped with overlong
    "drop"; otherwise it is cut to `max_length` tokens, and dropped if no label is left."""
    template, marked = training_template(tokenizer)
    kept, dropped = [], 0
    for row in rows:
        ids, turns = turn_tokens(tokenizer, template, marked, row["messages"])
        last = max(turns)
        if last < 0:
            raise TemplateError("the chat template renders no assistant turn as such")
        taught = {last} if loss_on == "final_answer" else set(range(last + 1))
        labels = [t if turn in taught else IGNORE for t, turn in zip(ids, turns, strict=True)]
        if len(ids) > max_length:
            if last > 0 and overlong == "drop":
                dropped += 1
                continue
            ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE for label in labels):
            dropped += 1
            continue
        kept.append({"input_ids": ids, "labels": labels})
    return Rows(kept, dropped)
