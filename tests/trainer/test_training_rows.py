"""Training rows: the loss lands on the answers a row teaches, whatever the model's chat template
(markers of its own, TRL's training variant, a Mistral-style one TRL cannot patch, or none),
and critic rows too long for max_length are left out rather than cut to their first answer."""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from trl.chat_template_utils import phi3_chat_template

from society_trainer.finetune import run_finetune
from society_trainer.models import FALLBACK_CHAT_TEMPLATE, load_tokenizer
from society_trainer.models.tiny_model import build_tokenizer
from society_trainer.training_rows import TemplateError, tokenize_rows

from ..conftest import ROOT
from .test_finetune import make_config

# Mistral-7B-Instruct-v0.2's template: no generation markers, and not one TRL can patch.
MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('After the optional system message, conversation roles must "
    "alternate user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.first and system_message is defined %}"
    "{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}"
    "{%- else %}{{- ' [INST] ' + message['content'] + ' [/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}"
    "{%- else %}{{- raise_exception('Only user and assistant roles are supported!') }}"
    "{%- endif %}{%- endfor %}"
)

CRITIC_ROW = {
    "messages": [
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "It is 6."},
        {"role": "user", "content": "Others say 5. Check and answer again."},
        {"role": "assistant", "content": "It is 5."},
    ]
}


def sentencepiece_like() -> PreTrainedTokenizerFast:
    """Mistral's tokenizer in miniature: Metaspace pieces ("▁word"), <s> and </s>, and
    [INST] spelled in ordinary pieces."""
    chars = sorted(set(string.printable) - set(string.whitespace)) + ["\n"]
    vocab = ["<unk>", "<s>", "</s>", "\u2581", *chars, *("\u2581" + c for c in chars)]
    backend = Tokenizer(
        models.BPE(
            vocab={token: i for i, token in enumerate(vocab)},
            merges=[("\u2581", c) for c in chars],
            unk_token="<unk>",
        )
    )
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    backend.decoder = decoders.Metaspace(prepend_scheme="first")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        chat_template=MISTRAL_TEMPLATE,
    )


def phi3_like() -> PreTrainedTokenizerFast:
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|user|>", "<|assistant|>", "<|end|>"]}
    )
    tokenizer.chat_template = phi3_chat_template  # TRL swaps in its training variant
    return tokenizer


def templateless(tmp_path: Path) -> PreTrainedTokenizerFast:
    """A base model's tokenizer, loaded the way every step loads one."""
    tokenizer = build_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path / "base-tokenizer")
    return load_tokenizer(tmp_path / "base-tokenizer")


TOKENIZERS = {
    # name: (tokenizer, what the final answer's labels decode to)
    "chatml-with-markers": (lambda _: build_tokenizer(), "It is 5.<|im_end|>"),
    "phi3-patched-by-trl": (lambda _: phi3_like(), "It is 5.<|end|>\n<|im_end|>"),
    "mistral-by-prefixes": (lambda _: sentencepiece_like(), "It is 5.</s>"),
    "no-template": (templateless, "It is 5.<|im_end|>"),
}


def taught(tokenizer, row: dict) -> str:
    return tokenizer.decode([t for t in row["labels"] if t >= 0])


@pytest.mark.parametrize("name", TOKENIZERS)
def test_the_loss_lands_on_the_answers_whatever_the_template(name, tmp_path):
    make, final = TOKENIZERS[name]
    tokenizer = make(tmp_path)
    (row,) = tokenize_rows(tokenizer, [CRITIC_ROW], "final_answer", 4096, "drop").rows
    assert taught(tokenizer, row).strip() == final
    assert row["input_ids"] == tokenizer.apply_chat_template(CRITIC_ROW["messages"])["input_ids"]

    (row,) = tokenize_rows(tokenizer, [CRITIC_ROW], "all_assistant_turns", 4096, "drop").rows
    both = taught(tokenizer, row)
    assert "It is 6." in both and "It is 5." in both
    assert "2+3" not in both and "Others" not in both  # never the prompts


def test_a_template_without_one_is_the_documented_fallback(tmp_path):
    tokenizer = templateless(tmp_path)
    assert tokenizer.chat_template == FALLBACK_CHAT_TEMPLATE
    assert FALLBACK_CHAT_TEMPLATE in (ROOT / "docs" / "method.md").read_text()  # for vLLM
    rendered = tokenizer.apply_chat_template(
        CRITIC_ROW["messages"][:1], tokenize=False, add_generation_prompt=True
    )
    assert rendered.endswith("User:\nWhat is 2+3?\n\nAssistant:\n")


def test_overlong_critic_rows_are_dropped_not_cut_to_their_first_answer():
    tokenizer = sentencepiece_like()
    (whole,) = tokenize_rows(tokenizer, [CRITIC_ROW], "final_answer", 4096, "drop").rows
    short = next(i for i, label in enumerate(whole["labels"]) if label >= 0)  # up to the final
    dropped = tokenize_rows(tokenizer, [CRITIC_ROW], "final_answer", short, "drop")
    assert (dropped.rows, dropped.dropped) == ([], 1)
    # truncating cuts the final answer off: with the loss on it, nothing is left to learn
    cut = tokenize_rows(tokenizer, [CRITIC_ROW], "final_answer", short, "truncate")
    assert (cut.rows, cut.dropped) == ([], 1)
    # ... and with every answer taught, what is left teaches only the first (wrong) one
    (row,) = tokenize_rows(tokenizer, [CRITIC_ROW], "all_assistant_turns", short, "truncate").rows
    assert len(row["input_ids"]) == short and taught(tokenizer, row).strip() == "It is 6.</s>"

    generation = {"messages": CRITIC_ROW["messages"][:2]}  # one answer: cut, as before
    (row,) = tokenize_rows(tokenizer, [generation], "final_answer", 4096, "drop").rows
    answer = next(i for i, label in enumerate(row["labels"]) if label >= 0)
    (row,) = tokenize_rows(tokenizer, [generation], "final_answer", answer + 4, "drop").rows
    assert len(row["input_ids"]) == answer + 4 and taught(tokenizer, row).strip() == "It is"


def test_a_template_that_is_not_prefix_preserving_is_refused():
    tokenizer = sentencepiece_like()
    tokenizer.chat_template = (  # the newest message first
        "{%- for message in messages | reverse %}{{- message['role'] + ': ' + "
        "message['content'] + '\\n' }}{%- endfor %}"
    )
    with pytest.raises(TemplateError, match="generation %\\} markers"):
        tokenize_rows(tokenizer, [CRITIC_ROW], "final_answer", 4096, "drop")


def model_with_template(tmp_path: Path, tiny_model_dir: Path, template: str | None) -> Path:
    """The tiny model with another chat template (None: without one)."""
    path = tmp_path / "model"
    path.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, path / name)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = template
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("template", [MISTRAL_TEMPLATE, None], ids=["mistral", "no-template"])
def test_finetuning_trains_models_trl_cannot_mask(tmp_path, tiny_model_dir, template):
    """TRL's assistant-only loss refuses both; these train, on their final answers."""
    model = model_with_template(tmp_path, tiny_model_dir, template)
    rows = [CRITIC_ROW] * 6 + [{"messages": CRITIC_ROW["messages"][:2]}] * 2
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_finetune(make_config(tmp_path, model, role="critic", max_length=256, epochs=1))
    assert not result.carriedForward and result.steps == 2 and result.droppedRows == 0
    assert result.finalLoss is not None


@pytest.mark.slow
def test_a_critic_dataset_whose_rows_are_all_too_long_carries_forward(tmp_path, tiny_model_dir):
    (tmp_path / "data.jsonl").write_text(json.dumps(CRITIC_ROW) + "\n")
    config = make_config(tmp_path, tiny_model_dir, role="critic", max_length=40)
    result = run_finetune(config)
    assert result.carriedForward and result.droppedRows == 1 and result.examples == 1
    assert "too long for max_length 40" in result.note
