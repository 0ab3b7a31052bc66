"""The dependency direction DESIGN.md fixes, and the generated docs staying current."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import society_operator
import society_trainer
from society_operator.api.reference import render_api_reference

from ..conftest import ROOT

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")


def _modules(package) -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + ".")
        if not info.name.endswith("__main__")
    ]


def _imported_after(modules: list[str]) -> set[str]:
    """Top-level packages in sys.modules after importing `modules` in a fresh interpreter."""
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_operator_never_imports_the_ml_stack():
    modules = _modules(society_operator)
    assert "society_operator.cli" in modules
    loaded = _imported_after(modules)
    assert not loaded & set(HEAVY), f"the operator image has no {loaded & set(HEAVY)}"


def test_trainer_entry_points_and_step_configs_are_light():
    light = ["society_trainer", "society_trainer.cli"] + [
        m for m in _modules(society_trainer) if m.split(".")[1] in ("config", "tasks")
    ]
    loaded = _imported_after(light)
    assert not loaded & {"torch", "transformers", "trl", "peft"}


def test_the_trainer_never_imports_the_operator():
    trainer_root = Path(society_trainer.__file__).parent
    for path in trainer_root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.startswith("society_operator") for n in names), path


def test_no_top_level_package_named_operator():
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_committed_api_reference_is_current():
    committed = (ROOT / "docs" / "api.md").read_text()
    assert committed == render_api_reference() + "\n", "docs/api.md is stale: run `make crd`"
