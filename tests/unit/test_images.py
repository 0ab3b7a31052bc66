"""The Dockerfiles, read without Docker: what they copy exists and is in the build context, what
they run is a command the project (or vLLM) provides, and they agree with the operator on the
images, versions and users."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

from society_operator import cli
from society_operator.build.pods import NON_ROOT_UID
from society_operator.settings import DEFAULT_VLLM_IMAGE, IMAGE_REGISTRY, VLLM_UPSTREAM_IMAGE

from ..conftest import ROOT

IMAGES = ROOT / "images"
# Each image's build context, as `make images` passes it.
CONTEXTS = {"operator": ROOT, "trainer": ROOT, "vllm": IMAGES / "vllm"}
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = (IMAGES / name / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def last(name: str, keyword: str) -> str:
    return [rest for kw, rest in instructions(name) if kw == keyword][-1]


def ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    return any(
        fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(parts[0], pattern) for pattern in patterns
    )


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_copy_sources_exist_in_the_build_context(name):
    context = CONTEXTS[name]
    for keyword, rest in instructions(name):
        if keyword != "COPY" or "--from=" in rest:
            continue
        *sources, _destination = [word for word in rest.split() if not word.startswith("--")]
        for source in sources:
            assert (context / source).exists(), f"images/{name}: COPY {source}: no such path"
            if context == ROOT:
                assert not ignored(source), f"images/{name}: COPY {source} is in .dockerignore"


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_runs_as_a_non_root_user(name):
    user = last(name, "USER").split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric, so runAsNonRoot can check it
    if name == "operator":
        deployment = (ROOT / "charts/society-operator/templates/deployment.yaml").read_text()
        assert f"runAsUser: {user}" in deployment
    else:  # the pods the builders render
        assert int(user) == NON_ROOT_UID


def test_the_operator_image_runs_society_operator_without_torch():
    entrypoint = json.loads(last("operator", "ENTRYPOINT"))
    assert entrypoint[0] in SCRIPTS and SCRIPTS[entrypoint[0]] == "society_operator.cli:main"
    assert entrypoint[1:] == ["operator"] and "operator" in cli.main.commands
    installs = [
        rest for kw, rest in instructions("operator") if kw == "RUN" and "pip install" in rest
    ]
    assert installs and not any("[trainer]" in rest or "torch" in rest for rest in installs)


def test_the_trainer_image_runs_society_trainer_on_the_pinned_torch():
    assert json.loads(last("trainer", "ENTRYPOINT")) == ["society-trainer"]
    assert "society-trainer" in SCRIPTS
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    base = last("trainer", "FROM")
    assert base.startswith(f"pytorch/pytorch:{pins['torch']}-cuda") and base.endswith("-runtime")
    assert any(
        "[trainer]" in rest and "-c " in rest for kw, rest in instructions("trainer") if kw == "RUN"
    )


def test_the_vllm_image_is_the_one_the_operator_defaults_to():
    # The project's vLLM image (the release publishes it) is vLLM's, with a non-root user.
    assert last("vllm", "FROM") == VLLM_UPSTREAM_IMAGE
    assert f"{IMAGE_REGISTRY}/vllm:{cli.__version__}" == DEFAULT_VLLM_IMAGE
    assert json.loads(last("vllm", "ENTRYPOINT")) == ["vllm", "serve"]  # vLLM's own server
    helpers = (ROOT / "charts/society-operator/templates/_helpers.tpl").read_text()
    assert f'"{IMAGE_REGISTRY}/vllm:%s" .Chart.AppVersion' in helpers


def test_make_images_builds_each_dockerfile():
    makefile = (ROOT / "Makefile").read_text()
    for name, context in CONTEXTS.items():
        where = "." if context == ROOT else str(context.relative_to(ROOT))
        assert (
            f"-f images/{name}/Dockerfile -t $(IMAGE_REGISTRY)/{name}:$(VERSION) {where}\n"
            in makefile
        )
