"""Ways to get completions for the debate: one protocol, an HTTP client for vLLM servers and an
in-process transformers generator for CPU runs and tests."""

from .base import CompletionRequest, GenerationError, Generator, Message

__all__ = ["CompletionRequest", "GenerationError", "Generator", "Message", "make_generator"]


def make_generator(backend, concurrency: int) -> Generator:
    """The generator a step config's backend names. Heavy imports happen only here."""
    if backend.kind == "openai":
        from .openai import OpenAIGenerator

        return OpenAIGenerator(backend, concurrency=concurrency)
    from .transformers import TransformersGenerator

    return TransformersGenerator(backend)
