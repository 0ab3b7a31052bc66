"""A peer's security review, not ours: checkov's Kubernetes checks over the rendered chart (default
and non-default values) and over every child the operator creates for every example
(`society render`), in one checkov run over one directory. No check may fail.

A finding that is a decision is a `checkov.io/skipN: CHECK=reason` annotation on the object that
has it (the chart's templates, build/pods.py review_annotations), so it is said where a reviewer
reads the object. Three need none (issue 16 item 11): an image pull policy other than Always
(images are pinned), the unset or default namespace of a rendered manifest (kubectl apply -n
decides), and CPU limits on GPU pods (a GPU node's CPUs serve its GPUs; a limit would only
throttle data loading).

checkov pins many packages, so it lives in a venv of its own, .venv-checkov, which `make test`
creates (`make checkov`); without it this module is skipped with one line saying so.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from society_operator.cli import main

from ..conftest import EXAMPLES, ROOT
from .test_chart import CUSTOM, render, values_file

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
if not CHECKOV.exists():
    pytest.skip(
        f"checkov is not installed ({CHECKOV.relative_to(ROOT)}): `make checkov` creates it, "
        "`make test` does so itself",
        allow_module_level=True,
    )

# Checks skipped everywhere, with the reason (see the module docstring).
SKIPPED_EVERYWHERE = {
    "CKV_K8S_15": "image pull policy Always: images are pinned by tag or digest",
    "CKV_K8S_21": "the default namespace: a rendered manifest's namespace is kubectl's -n",
}
CPU_LIMITS = "CKV_K8S_11"
GPU = "nvidia.com/gpu"


def _write(directory: Path, name: str, objects: list[dict]) -> None:
    (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))


@pytest.fixture(scope="module")
def rendered(helm, tmp_path_factory) -> tuple[Path, dict[tuple[str, str], dict]]:
    """One directory of rendered manifests, and each object by (file, checkov's resource id)."""
    directory = tmp_path_factory.mktemp("rendered")
    _write(directory, "chart-default", render(helm))
    _write(directory, "chart-custom", render(helm, "-f", values_file(tmp_path_factory, CUSTOM)))
    for example in EXAMPLES:
        iterations = yaml.safe_load(example.read_text())["spec"]["finetune"]["iterations"]
        for iteration in sorted({0, 1, iterations}):
            result = CliRunner().invoke(
                main, ["render", str(example), "--iteration", str(iteration)]
            )
            assert result.exit_code == 0, result.output
            (directory / f"{example.stem}-it{iteration}.yaml").write_text(result.stdout)
    objects = {}
    for path in directory.glob("*.yaml"):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj:
                meta = obj["metadata"]
                ns = meta.get("namespace", "default")
                objects[(f"/{path.name}", f"{obj['kind']}.{ns}.{meta['name']}")] = obj
    return directory, objects


@pytest.fixture(scope="module")
def report(rendered) -> dict:
    directory, _ = rendered
    done = subprocess.run(
        [str(CHECKOV), "-d", str(directory), "--framework", "kubernetes", "-o", "json"]
        + ["--compact", "--skip-download", "--skip-check", ",".join(SKIPPED_EVERYWHERE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: some check failed
    out = json.loads(done.stdout)
    (kubernetes,) = [r for r in (out if isinstance(out, list) else [out])]
    assert kubernetes["check_type"] == "kubernetes"
    return kubernetes


def _pod(obj: dict) -> dict:
    spec = obj["spec"]
    return spec.get("jobTemplate", {}).get("spec", spec)["template"]["spec"]


def _uses_gpus(obj: dict) -> bool:
    return any(GPU in c.get("resources", {}).get("limits", {}) for c in _pod(obj)["containers"])


def _failures(report: dict, objects: dict) -> list[dict]:
    out = []
    for failed in report["results"]["failed_checks"]:
        obj = objects.get((failed["file_path"], failed["resource"]))
        if failed["check_id"] == CPU_LIMITS and obj is not None and _uses_gpus(obj):
            continue
        out.append(failed)
    return out


def _lines(failures: list[dict]) -> str:
    return "\n".join(
        f"{f['file_path']}: {f['resource'].split('.app.kubernetes.io')[0]}: {f['check_id']} "
        f"{f['check_name']}"
        for f in failures
    )


def test_checkov_read_everything(report, rendered):
    _, objects = rendered
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] >= len(objects)
    kinds = {resource.split(".")[0] for _, resource in objects}
    assert {"Deployment", "Job", "Service", "Secret", "NetworkPolicy", "ClusterRole"} <= kinds


def test_no_check_fails(report, rendered):
    _, objects = rendered
    failures = _failures(report, objects)
    assert not failures, f"{len(failures)} failed checks:\n{_lines(failures)}"


def test_every_exception_says_why(report):
    skipped = report["results"].get("skipped_checks", [])
    assert skipped, "no skip annotation was read: checkov would have found nothing to skip"
    for skip in skipped:
        if skip["check_id"] in SKIPPED_EVERYWHERE:
            continue
        comment = skip.get("check_result", {}).get("suppress_comment", "")
        assert comment and comment != "No comment provided", skip["resource"]


def test_gpu_pods_are_the_only_ones_without_cpu_limits(report, rendered):
    _, objects = rendered
    exempt = [
        f
        for f in report["results"]["failed_checks"]
        if f["check_id"] == CPU_LIMITS and f not in _failures(report, objects)
    ]
    assert exempt, "no GPU pod in the examples: the exemption is untested"
    for failed in exempt:
        assert _uses_gpus(objects[(failed["file_path"], failed["resource"])])
