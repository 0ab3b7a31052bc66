"""`society render`: every child the operator would create for a Society at one iteration, as a
YAML stream that kubectl and reviewers' tools read, or one line per problem and nothing else."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from society_operator.api.manifests import load_documents
from society_operator.build.desired import desired
from society_operator.cli import main
from society_operator.render import PLACEHOLDER_UID, placed
from society_operator.settings import Settings

from ..conftest import EXAMPLES
from .test_builders import K8S_VERSION


def render(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["render", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_renders_what_the_operator_would_create(example):
    (document,) = load_documents(example)
    society = placed(document.society)
    last = society.spec.finetune.iterations
    for iteration in sorted({0, 1, last}):
        code, out, err = render(str(example), "--iteration", str(iteration))
        assert code == 0 and not err, err
        objects = list(yaml.safe_load_all(out))
        wanted = desired(society, Settings(), iteration)
        expected = (
            ([wanted.claim.body] if wanted.claim else [])
            + [child.body for child in wanted.access]
            + [c.body for pair in wanted.servers.values() for c in pair]
            + [wanted.debate.body]
            + (
                [wanted.train_split_debate.body]
                if iteration == last
                else [job.body for job in wanted.training]
            )
        )
        assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
            (o["kind"], o["metadata"]["name"]) for o in expected
        ]
        for got, want in zip(objects, expected, strict=True):
            if got["kind"] == "Secret":  # the key is drawn when the operator creates it
                assert set(got["stringData"]) == set(want["stringData"])
                assert "drawn at random" in got["stringData"]["api-key"]
                continue
            assert got == want
            kubernetes_validate.validate(got, K8S_VERSION, strict=True)
        for obj in objects:
            assert obj["metadata"]["namespace"] == (
                document.society.metadata.namespace or "default"
            )
            for owner in obj["metadata"].get("ownerReferences", []):
                assert owner["uid"] == PLACEHOLDER_UID
        # helm template's way: each document says where it comes from
        assert out.count(f"---\n# Source: {example}: {society.metadata.name}: ") == len(objects)


def test_the_iteration_decides_which_jobs_and_servers_appear():
    example = next(p for p in EXAMPLES if p.name == "gsm8k-full-a100.yaml")
    kinds = {}
    for iteration in (0, 1, 3):
        _, out, _ = render(str(example), "--iteration", str(iteration))
        kinds[iteration] = [
            (o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(out) if o
        ]
    assert ("Deployment", "mistral-gsm8k-vllm") in kinds[0]
    assert ("Job", "mistral-gsm8k-train-critic-2-it1") in kinds[0]
    assert ("Deployment", "mistral-gsm8k-vllm-gen-0-it1") in kinds[1]
    assert ("Job", "mistral-gsm8k-train-gen-0-it2") in kinds[1]
    # The last iteration trains nothing; its train split is debated only if iterations grows.
    assert not any(name.startswith("mistral-gsm8k-train-") for _, name in kinds[3])
    assert ("Job", "mistral-gsm8k-debate-it3-train") in kinds[3]


def test_images_come_from_the_operators_environment():
    example = next(p for p in EXAMPLES if p.name == "tiny.yaml")
    pinned = "registry.example/vllm@sha256:" + "0" * 64
    _, out, _ = render(str(example), env={"SOCIETY_VLLM_IMAGE": pinned})
    (server,) = [o for o in yaml.safe_load_all(out) if o["kind"] == "Deployment"]
    assert server["spec"]["template"]["spec"]["containers"][0]["image"] == pinned
    # Pinned by digest: no exception to state about it.
    assert "CKV_K8S_43" not in str(server["metadata"].get("annotations", {}))


def test_several_societies_in_one_file_render_one_after_the_other(tmp_path):
    text = "\n---\n".join(p.read_text() for p in EXAMPLES)
    path = tmp_path / "all.yaml"
    path.write_text(text)
    code, out, _ = render(str(path))
    assert code == 0
    societies = {o["metadata"]["labels"]["society.dev/society"] for o in yaml.safe_load_all(out)}
    assert societies == {"tiny", "phi3-arithmetic", "mistral-gsm8k"}


@pytest.mark.parametrize(
    "text,args,says",
    [
        ("spec: [", [], "not valid YAML at line 1"),
        (
            "apiVersion: society.dev/v1alpha1\nkind: Society\nmetadata: {name: s}\n"
            "spec: {model: {name: m}, task: {name: gsm8k}, agents: 0}\n",
            [],
            ": s: spec.agents: Input should be greater than or equal to 1",
        ),
        (
            "apiVersion: society.dev/v1alpha1\nkind: Society\nmetadata: {name: s}\n"
            "spec: {model: {name: m}, task: {name: gsm8k}}\n",
            ["--iteration", "3"],
            ": s: --iteration 3: the Society has iterations 0 to 2",
        ),
    ],
    ids=["yaml", "invalid", "iteration"],
)
def test_bad_input_is_one_line_and_nothing_is_printed(tmp_path, text, args, says):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    code, out, err = render(str(path), *args)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(str(path)) and says in err, err


def test_a_missing_file_is_one_line(tmp_path):
    code, out, err = render(str(tmp_path / "nope.yaml"))
    assert code == 1 and out == "" and "cannot read" in err and err.count("\n") == 1
