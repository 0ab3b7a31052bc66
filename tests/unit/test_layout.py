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


# --- the shape of the code: small modules, no import circles, no import side effects -------------

MAX_LINES = 400
PACKAGES = {"society_operator": society_operator, "society_trainer": society_trainer}


def _sources() -> dict[str, Path]:
    """Module name -> file, for every module of both packages."""
    out = {}
    for name, package in PACKAGES.items():
        root = Path(package.__file__).parent
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            module = ".".join((name, *parts))
            out[module.removesuffix(".__init__")] = path
    return out


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports anywhere in its file (function-level too)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # the longest known module the name starts with (a symbol's module, or a package)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def test_no_module_is_over_the_line_limit():
    long = {
        m: n for m, p in _sources().items() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules (at most {MAX_LINES} lines): {long}"


def test_there_is_no_import_circle():
    sources = _sources()
    known = set(sources)
    # A package's __init__ importing its own submodules is how a package exports: not a circle.
    graph = {
        module: {
            dep
            for dep in _imports(module, path, known)
            if not (path.name == "__init__.py" and dep.startswith(module + "."))
        }
        for module, path in sources.items()
    }
    circles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                circles.append(
                    trail[trail.index(dep) :] + [module, dep] if dep in trail else [module, dep]
                )
            elif dep not in state:
                visit(dep, [*trail, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not circles, f"import circles: {circles}"


def test_importing_the_operator_registers_nothing():
    """`society operator` registers its handlers in a registry of its own, when it runs."""
    code = (
        "import kopf\n"
        "def count():\n"
        "    registry = kopf.get_default_registry()\n"
        "    return sum(len(list(r.get_all_handlers())) for r in "
        "(registry._spawning, registry._watching, registry._changing, registry._activities))\n"
        "before = count()\n"
        "import society_operator, society_operator.cli, society_operator.kube.handlers\n"
        "print(before, count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = out.stdout.split()
    assert after == before
