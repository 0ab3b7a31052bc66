"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.fixture
def minimal_society() -> dict:
    """The four-line spec DESIGN.md promises is a whole, valid Society."""
    return {
        "apiVersion": "society.dev/v1alpha1",
        "kind": "Society",
        "metadata": {"name": "minimal", "namespace": "default"},
        "spec": {"model": {"name": "microsoft/Phi-3-mini-4k-instruct"}, "task": {"name": "gsm8k"}},
    }
