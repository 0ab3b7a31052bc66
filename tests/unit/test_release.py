"""The release workflow (.github/workflows/release.yaml), read without GitHub: on a v* tag it
builds every image the Makefile builds, from the same Dockerfile and context, and pushes it
under the name and tag the chart's and the operator's defaults use; then it pushes the chart.
(actionlint has no binary wheel on PyPI, so the workflow is checked here, by its structure.)"""

from __future__ import annotations

import re
import shlex
import tomllib

import yaml

from society_operator.settings import DEFAULT_TRAINER_IMAGE, DEFAULT_VLLM_IMAGE, IMAGE_REGISTRY

from ..conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "release.yaml"
CHART = ROOT / "charts" / "society-operator"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def workflow() -> dict:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    loaded["on"] = loaded.pop(True, loaded.get("on"))
    return loaded


def makefile_images() -> dict[str, str]:
    """name -> build context, from the Makefile's `images` target."""
    text = (ROOT / "Makefile").read_text()
    out = {}
    for match in re.finditer(r"\$\(DOCKER\) build (.+)", text):
        args = shlex.split(match.group(1))
        name = args[args.index("-t") + 1].split("/")[-1].split(":")[0]
        assert args[args.index("-f") + 1] == f"images/{name}/Dockerfile"
        out[name] = args[-1]
    return out


def test_it_runs_on_version_tags_only():
    assert workflow()["on"] == {"push": {"tags": ["v*"]}}


def test_it_checks_that_the_tag_is_the_projects_and_the_charts_version():
    steps = workflow()["jobs"]["version"]["steps"]
    script = next(s["run"] for s in steps if "run" in s)
    for source in ("pyproject.toml", "charts/society-operator/Chart.yaml", "$GITHUB_REF_NAME"):
        assert source in script
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == VERSION


def test_it_builds_every_image_the_makefile_builds_from_the_same_dockerfile_and_context():
    images = workflow()["jobs"]["images"]
    matrix = {entry["name"]: entry["context"] for entry in images["strategy"]["matrix"]["include"]}
    assert matrix == makefile_images()
    assert {p.parent.name for p in (ROOT / "images").glob("*/Dockerfile")} == set(matrix)
    (build,) = [
        s for s in images["steps"] if str(s.get("uses", "")).startswith("docker/build-push")
    ]
    assert build["with"]["file"] == "images/${{ matrix.name }}/Dockerfile"
    assert build["with"]["context"] == "${{ matrix.context }}"
    assert build["with"]["push"] is True


def test_it_pushes_what_the_defaults_name():
    flow = workflow()
    registry = flow["env"]["REGISTRY"]
    assert registry == IMAGE_REGISTRY
    (build,) = [
        s
        for s in flow["jobs"]["images"]["steps"]
        if str(s.get("uses", "")).startswith("docker/build-push")
    ]
    tag = build["with"]["tags"]
    assert tag == "${{ env.REGISTRY }}/${{ matrix.name }}:${{ needs.version.outputs.version }}"

    def published(name: str) -> str:
        return f"{registry}/{name}:{VERSION}"

    # The operator's own defaults ...
    assert published("vllm") == DEFAULT_VLLM_IMAGE
    assert published("trainer") == DEFAULT_TRAINER_IMAGE
    # ... the chart's (its image, and the helpers that default the other two to appVersion) ...
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == f"{registry}/operator" and values["image"]["tag"] == ""
    assert values["operator"]["vllmImage"] == values["operator"]["trainerImage"] == ""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    for name in ("vllm", "trainer"):
        assert f'(printf "{registry}/{name}:%s" .Chart.AppVersion)' in helpers
    # ... and the Makefile's registry.
    assert f"IMAGE_REGISTRY ?= {registry}\n" in (ROOT / "Makefile").read_text()


def test_it_pushes_the_chart_after_the_images_with_the_workflows_own_token():
    flow = workflow()
    assert flow["permissions"] == {"contents": "read", "packages": "write"}
    chart = flow["jobs"]["chart"]
    assert set(chart["needs"]) == {"version", "images"}
    script = next(s["run"] for s in chart["steps"] if "run" in s)
    assert "helm package charts/society-operator" in script
    assert 'helm push "dist/society-operator-$VERSION.tgz" "oci://$REGISTRY/charts"' in script
    # A secret reaches a script through the environment, never pasted into its text.
    for job in flow["jobs"].values():
        for step in job["steps"]:
            assert "secrets." not in step.get("run", "")


def test_every_action_is_pinned_to_a_release():
    for job in workflow()["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]
