"""The in-process generator on a tiny real model: the tiny model is loadable the ordinary way,
its chat template masks assistant tokens, and concurrent requests become batched `generate` calls
that never mix models."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import pytest_asyncio
from transformers import AutoModelForCausalLM, AutoTokenizer

from society_trainer.config import ModelRef, SamplingConfig, TransformersBackend
from society_trainer.generation import CompletionRequest, GenerationError, make_generator
from society_trainer.models.tiny_model import build_tiny_model

pytestmark = pytest.mark.slow

GREEDY = SamplingConfig(temperature=0.0, max_tokens=12)
BASE = ModelRef(name="base")


def _request(model: ModelRef = BASE, question: str = "What is 3+4?", seed: int = 0, **sampling):
    return CompletionRequest(
        model=model,
        messages=[{"role": "user", "content": question}],
        sampling=SamplingConfig(**sampling) if sampling else GREEDY,
        seed=seed,
    )


@pytest_asyncio.fixture
async def make(tiny_model_dir: Path):
    """Build generators on the tiny model; whatever a test leaves open is closed after it."""
    generators = []

    def factory(batch_size: int = 4):
        backend = TransformersBackend(base_model=tiny_model_dir, batch_size=batch_size)
        generators.append(make_generator(backend, concurrency=64))
        return generators[-1]

    yield factory
    for generator in generators:
        await generator.aclose()  # idempotent: also fine after a test closed it


def test_tiny_model_loads_the_ordinary_way(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.vocab_size == len(tokenizer)
    assert {tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token} == {
        "<|startoftext|>",
        "<|im_end|>",
        "<|pad|>",
    }
    text = "12*(3+4) = 84, x_1 != y!\n\tÜnïcode ✓"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_build_is_idempotent_and_seeded(tiny_model_dir: Path, tmp_path: Path) -> None:
    weights = tiny_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_model(tiny_model_dir) == tiny_model_dir
    assert weights.stat().st_mtime_ns == before
    again = build_tiny_model(tmp_path / "again", seed=0)
    assert (again / "model.safetensors").read_bytes() == weights.read_bytes()


def test_chat_template_renders_and_masks_assistant_tokens(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "Sure?"},
        {"role": "assistant", "content": "Yes, 4."},
    ]
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    encoded = tokenizer.apply_chat_template(
        messages, return_dict=True, return_assistant_tokens_mask=True
    )
    masked = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(masked) == "4<|im_end|>Yes, 4.<|im_end|>"


@pytest.mark.asyncio
async def test_generation_returns_strings(make) -> None:
    generator = make()
    text = await generator.complete(_request(temperature=1.0, top_p=0.9, max_tokens=8))
    assert isinstance(text, str)
    assert generator.requests_done == 1
    assert 1 <= generator.generated_tokens <= 8


@pytest.mark.asyncio
async def test_concurrent_requests_are_batched(make) -> None:
    generator = make(batch_size=4)
    started = time.perf_counter()
    texts = await asyncio.gather(
        *(generator.complete(_request(question=f"What is {i}+1?", seed=i)) for i in range(12))
    )
    assert time.perf_counter() - started < 10
    assert all(isinstance(t, str) for t in texts)
    assert (generator.batches_run, generator.requests_done) == (3, 12)


@pytest.mark.asyncio
async def test_a_batch_never_mixes_models(make, tiny_adapter_dir: Path) -> None:
    generator = make(batch_size=4)
    adapter = ModelRef(name="gen-1", path=tiny_adapter_dir)
    batches: list[set[str]] = []
    generate = generator._generate

    def spy(requests):
        batches.append({r.model.name for r in requests})
        return generate(requests)

    generator._generate = spy
    models = [BASE, adapter] * 4
    texts = await asyncio.gather(*(generator.complete(_request(model)) for model in models))
    assert batches == [{"base"}, {"gen-1"}]
    assert texts[0::2] == [texts[0]] * 4
    assert texts[1::2] == [texts[1]] * 4


@pytest.mark.asyncio
async def test_adapter_changes_greedy_output(make, tiny_adapter_dir: Path) -> None:
    generator = make()
    adapter = ModelRef(name="gen-1", path=tiny_adapter_dir)
    base_text = await generator.complete(_request())
    adapter_text = await generator.complete(_request(adapter))
    assert adapter_text != base_text
    # Back on the base model, the adapter must be out of the way again.
    assert await generator.complete(_request()) == base_text


@pytest.mark.asyncio
async def test_greedy_generation_is_deterministic(make) -> None:
    generator = make()
    first = await generator.complete(_request(seed=1))
    second = await generator.complete(_request(seed=2))
    assert first == second


@pytest.mark.asyncio
async def test_sampling_is_seeded(make) -> None:
    generator = make()
    sampled = dict(temperature=1.0, top_p=1.0, max_tokens=16)
    first = await generator.complete(_request(seed=7, **sampled))
    again = await generator.complete(_request(seed=7, **sampled))
    other = await generator.complete(_request(seed=8, **sampled))
    assert first == again
    assert other != first


@pytest.mark.asyncio
async def test_missing_adapter_names_the_model(make, tmp_path: Path) -> None:
    generator = make()
    missing = ModelRef(name="critic-2-it1", path=tmp_path / "nowhere")
    with pytest.raises(GenerationError, match="critic-2-it1"):
        await generator.complete(_request(missing))
    assert isinstance(await generator.complete(_request()), str)


@pytest.mark.asyncio
async def test_unloadable_base_model_names_the_model(tmp_path: Path) -> None:
    generator = make_generator(TransformersBackend(base_model=tmp_path), concurrency=1)
    with pytest.raises(GenerationError, match="'base'.*cannot load base model"):
        await generator.complete(_request())
    await generator.aclose()


@pytest.mark.asyncio
async def test_close_finishes_the_running_batch_and_fails_the_queue(make) -> None:
    generator = make(batch_size=4)
    tasks = [asyncio.create_task(generator.complete(_request(seed=i))) for i in range(8)]
    while len(generator._pending) != 4:  # the first batch has been taken
        await asyncio.sleep(0)
    await generator.aclose()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, str) for r in results[:4])
    assert all(isinstance(r, GenerationError) for r in results[4:])
    assert generator._worker.done()
    with pytest.raises(GenerationError, match="closed"):
        await generator.complete(_request())


@pytest.mark.asyncio
async def test_left_padding_does_not_change_greedy_output(make) -> None:
    generator = make(batch_size=4)
    questions = ["Hi", "What is 12*34-5?", "Add 7 and 8, then double the result.", "2+2"]
    alone = [await generator.complete(_request(question=q)) for q in questions]
    batched = await asyncio.gather(*(generator.complete(_request(question=q)) for q in questions))
    assert batched == alone
    assert generator.batches_run == 5


@pytest.mark.asyncio
async def test_the_event_loop_runs_while_a_batch_generates(make) -> None:
    generator = make()
    await generator.complete(_request())  # load the model first: only generation is measured
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(generator.complete(_request(max_tokens=64, seed=i)) for i in range(4)))
    task.cancel()
    assert ticks >= 5
