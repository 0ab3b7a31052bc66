"""In-process generation with transformers and PEFT: `society run` on a laptop and the tests.

The debate engine awaits one completion per (question, agent, round) from many coroutines at
once. Running those one by one would waste the batch dimension, so requests are queued and a
single worker turns them into batched `generate` calls. The torch work runs on one dedicated
thread: the event loop never blocks, and adapter switching (global state of the one PeftModel)
is never raced.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedModel

from ..config import SamplingConfig, TransformersBackend
from ..models import load_causal_lm, load_tokenizer
from .base import CompletionRequest, GenerationError


@dataclass
class _Pending:
    request: CompletionRequest
    future: asyncio.Future[str] = field(repr=False)

    @property
    def key(self) -> Hashable:
        """Requests that can share one `generate` call: same weights, same sampling settings."""
        return (_adapter_path(self.request), self.request.sampling)


class TransformersGenerator:
    """A `Generator` that batches concurrent requests into `generate` calls on one base model.

    A batch holds up to `backend.batch_size` requests for the same model (adapter path) and the
    same sampling settings, taken in arrival order from the oldest waiting request's group.
    LoRA adapters load lazily, each once, onto a single PeftModel, so the base weights exist
    once however many agents the society has; `ModelRef.path=None` means the base model.

    Seeds: one `generate` call draws from one RNG, so per-request seeds cannot be honoured
    inside a batch. Each batch is seeded with a hash of its requests' sorted seeds instead:
    the same requests batched the same way sample the same tokens (this reseeds torch's global
    RNG, which this process leaves to the generator). Which requests share a batch
    depends on arrival timing, so sampled outputs are repeatable only when the batching is;
    greedy decoding (temperature 0) is deterministic either way.
    """

    def __init__(self, backend: TransformersBackend) -> None:
        self._backend = backend
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transformers-gen")
        self._pending: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        # Touched only on the executor thread.
        self._tokenizer = None
        self._model: PreTrainedModel | PeftModel | None = None
        self._adapters: dict[Path, str] = {}
        self._adapter_names = (f"adapter{i}" for i in itertools.count())
        # Read by benchmarks.
        self.requests_done = 0
        self.batches_run = 0
        self.generated_tokens = 0

    async def complete(self, request: CompletionRequest) -> str:
        if self._closed:
            raise GenerationError(f"model {request.model.name!r}: the generator is closed")
        self._ensure_worker()
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(request, future))
        self._wakeup.set()
        return await future

    async def aclose(self) -> None:
        """Fail what is still queued, let a running batch finish (its callers get their
        answers), then stop the worker and its thread."""
        self._closed = True
        for pending in self._pending:
            if not pending.future.done():
                pending.future.set_exception(
                    GenerationError(f"model {pending.request.model.name!r}: the generator closed")
                )
        self._pending.clear()
        worker = self._worker
        if worker is not None and worker.get_loop() is asyncio.get_running_loop():
            self._wakeup.set()
            await worker
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def _ensure_worker(self) -> None:
        """Start the worker on the running loop. A generator outlives an event loop (one
        `asyncio.run` per split, one loop per test), so a worker from a finished loop is
        replaced; the model it loaded stays."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._pending = [p for p in self._pending if p.future.get_loop() is loop]
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="transformers-generator")

    async def _run(self) -> None:
        while not self._closed:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Give callers that were just woken (by the previous batch's results) one turn to
            # queue their next request, so the next batch is full rather than a single request.
            await asyncio.sleep(0)
            batch = self._take_batch()
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        requests = [p.request for p in batch]
        loop = asyncio.get_running_loop()
        try:
            texts = await loop.run_in_executor(self._executor, self._generate, requests)
        except Exception as exc:
            error = exc if isinstance(exc, GenerationError) else _error(requests[0], exc)
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        for pending, text in zip(batch, texts, strict=True):
            if not pending.future.done():
                pending.future.set_result(text)

    def _take_batch(self) -> list[_Pending]:
        """The oldest request's group, up to batch_size; requests whose caller gave up are
        dropped."""
        self._pending = [p for p in self._pending if not p.future.done()]
        if not self._pending:
            return []
        key = self._pending[0].key
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        for pending in self._pending:
            if pending.key == key and len(batch) < self._backend.batch_size:
                batch.append(pending)
            else:
                rest.append(pending)
        self._pending = rest
        return batch

    # Everything below runs on the executor thread.

    def _generate(self, requests: list[CompletionRequest]) -> list[str]:
        self._load_base(requests[0])
        model_context = self._activate(requests[0])
        tokenizer = self._tokenizer
        try:
            prompts = [
                tokenizer.apply_chat_template(
                    list(r.messages), tokenize=False, add_generation_prompt=True
                )
                for r in requests
            ]
        except Exception as exc:
            raise _error(requests[0], exc) from exc
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(self._model.device)
        torch.manual_seed(_batch_seed(requests))
        with torch.inference_mode(), model_context:
            output = self._model.generate(
                **inputs, **_sampling_kwargs(requests[0].sampling, tokenizer.pad_token_id)
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        stop_ids = _stop_ids(self._model, tokenizer)
        texts = []
        for tokens in new_tokens:
            tokens = _until_stop(tokens, stop_ids)
            self.generated_tokens += len(tokens)
            texts.append(tokenizer.decode(tokens, skip_special_tokens=True))
        self.batches_run += 1
        self.requests_done += len(requests)
        return texts

    def _load_base(self, request: CompletionRequest) -> None:
        if self._model is not None:
            return
        base, revision = self._backend.base_model, self._backend.base_model_revision
        try:
            tokenizer = load_tokenizer(base, revision)
            model = load_causal_lm(
                base, self._backend.dtype, revision, device_map=_device(self._backend)
            )
        except Exception as exc:
            raise _error(request, exc, f"cannot load base model {base}") from exc
        tokenizer.padding_side = "left"  # generation continues from the right end of each row
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer = tokenizer
        self._model = model.eval()

    def _activate(self, request: CompletionRequest) -> contextlib.AbstractContextManager:
        """Point the model at the request's weights; the returned context is entered around
        `generate` (the base model needs the adapters disabled only for that long)."""
        path = _adapter_path(request)
        if path is None:
            if isinstance(self._model, PeftModel):
                return self._model.disable_adapter()
            return contextlib.nullcontext()
        if path not in self._adapters:
            self._load_adapter(request, path)
        self._model.set_adapter(self._adapters[path])
        return contextlib.nullcontext()

    def _load_adapter(self, request: CompletionRequest, path: Path) -> None:
        if not (path / "adapter_config.json").is_file():
            raise _error(request, None, f"no LoRA adapter at {path} (adapter_config.json missing)")
        # PEFT keeps adapters in ModuleDicts, whose keys may not contain dots, so paths cannot be
        # names; a failed load may leave its name half-registered, so names are never reused.
        name = next(self._adapter_names)
        try:
            if isinstance(self._model, PeftModel):
                self._model.load_adapter(path, adapter_name=name)
            else:
                self._model = PeftModel.from_pretrained(self._model, path, adapter_name=name)
        except Exception as exc:
            raise _error(request, exc, f"cannot load LoRA adapter {path}") from exc
        self._model.eval()
        self._adapters[path] = name


def _device(backend: TransformersBackend) -> str:
    if backend.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return backend.device


def _adapter_path(request: CompletionRequest) -> Path | None:
    path = request.model.path
    return None if path is None else Path(path).resolve()


def _error(
    request: CompletionRequest, cause: BaseException | None, what: str = ""
) -> GenerationError:
    detail = what or "generation failed"
    if cause is not None:
        detail += f": {type(cause).__name__}: {cause}"
    return GenerationError(f"model {request.model.name!r}: {detail}")


def _batch_seed(requests: list[CompletionRequest]) -> int:
    """A seed that depends on which requests share the batch, not on their order in it."""
    text = ",".join(str(seed) for seed in sorted(r.seed for r in requests))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _sampling_kwargs(sampling: SamplingConfig, pad_token_id: int) -> dict:
    """Exactly the request's sampling: top_k is switched off because transformers would
    otherwise apply its default of 50, which the paper's sampling does not include."""
    kwargs: dict = {"max_new_tokens": sampling.max_tokens, "pad_token_id": pad_token_id}
    if sampling.temperature == 0:
        kwargs["do_sample"] = False
    else:
        kwargs.update(
            do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0
        )
    return kwargs


def _stop_ids(model: PreTrainedModel | PeftModel, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos) if isinstance(eos, list) else {eos}
    ids.add(tokenizer.eos_token_id)
    ids.discard(None)
    return ids


def _until_stop(tokens: list[int], stop_ids: set[int]) -> list[int]:
    """The tokens up to and including the first stop token: what follows is padding."""
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[: i + 1]
    return tokens
