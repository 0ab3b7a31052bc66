"""The children a Society's builders render: valid Kubernetes objects with the names, labels,
owner, scheduling and secrets the operator promises."""

from __future__ import annotations

import json

import kubernetes
import kubernetes_validate
import pytest

from society_operator.api import Society
from society_operator.build.access import build_access
from society_operator.build.claim import build_claim
from society_operator.build.jobs import build_debate_job, build_training_jobs
from society_operator.build.server import build_server, openai_backend, servers
from society_operator.settings import Settings
from society_trainer.results import CONFIG_ERROR_EXIT_CODE

from ..conftest import EXAMPLES

SETTINGS = Settings()
K8S_VERSION = "1.33"


def load(manifest: dict, uid: str = "0a1b2c3d-0000-4000-8000-000000000001") -> Society:
    manifest = json.loads(json.dumps(manifest))
    manifest["metadata"].setdefault("namespace", "research")
    manifest["metadata"]["uid"] = uid
    return Society.model_validate(manifest)


def all_children(society: Society, iteration: int) -> list[dict]:
    children = [
        c
        for served in servers(society, iteration)
        for c in build_server(society, SETTINGS, iteration, served)
    ]
    children.append(build_debate_job(society, SETTINGS, iteration).body)
    children += [job.body for job in build_training_jobs(society, SETTINGS, iteration + 1)]
    children += [child.body for child in build_access(society, SETTINGS)]
    claim = build_claim(society, SETTINGS)
    return children + ([claim] if claim else [])


def example(name: str) -> dict:
    import yaml

    return yaml.safe_load(next(p for p in EXAMPLES if p.name == name).read_text())


@pytest.mark.parametrize("name", ["arithmetic-lora-h100.yaml", "gsm8k-full-a100.yaml", "tiny.yaml"])
@pytest.mark.parametrize("iteration", [0, 1])
def test_every_child_is_a_valid_kubernetes_object(name, iteration):
    society = load(example(name))
    children = all_children(society, iteration)
    for child in children:
        kubernetes_validate.validate(child, K8S_VERSION, strict=True)
        # ... and the official client's models, which the operator sends them through.
        model = getattr(kubernetes.client, f"V1{child['kind']}")
        assert model.from_dict(child) is not None
        meta = child["metadata"]
        assert len(meta["name"]) <= 63 and meta["namespace"] == "research"
        assert meta["labels"]["society.dev/society"] == society.metadata.name
    owned = [c for c in children if c["kind"] != "PersistentVolumeClaim"]
    for child in owned:
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["uid"] == society.metadata.uid and owner["controller"] is True


def test_names_fit_for_the_longest_society_name_and_largest_society():
    manifest = example("arithmetic-lora-h100.yaml")
    manifest["metadata"]["name"] = "x" * 40
    manifest["spec"]["agents"] = 16
    manifest["spec"]["finetune"]["iterations"] = 100
    society = load(manifest)
    for child in all_children(society, 99):
        assert len(child["metadata"]["name"]) <= 63, child["metadata"]["name"]
        kubernetes_validate.validate(child, K8S_VERSION, strict=True)


def test_lora_mode_serves_every_adapter_from_one_server():
    society = load(example("arithmetic-lora-h100.yaml"))
    assert servers(society, 2) == [None]
    deployment, service = build_server(society, SETTINGS, 2)
    assert "kueue.x-k8s.io/queue-name" not in deployment["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--model") + 1] == "microsoft/Phi-3-mini-4k-instruct"
    assert args[args.index("--served-model-name") + 1] == "base"
    assert args[args.index("--max-loras") + 1] == "6"
    assert args[args.index("--max-lora-rank") + 1] == "16"
    modules = args[args.index("--lora-modules") + 1 :]
    assert modules[0] == "critic-0-it2=/artifacts/phi3-arithmetic/models/critic-0-it2"
    assert len(modules) == 6
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert openai_backend(society, 2).default_base_url == (
        "http://phi3-arithmetic-vllm.research.svc:8000/v1"
    )
    # iteration 0 serves the base model alone
    base_args = build_server(society, SETTINGS, 0)[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--enable-lora" not in base_args["args"]


def test_full_mode_serves_each_model_from_its_own_server():
    society = load(example("gsm8k-full-a100.yaml"))
    assert servers(society, 0) == [None]
    served = servers(society, 1)
    assert len(served) == 6 and "gen-0-it1" in served
    deployment, _ = build_server(society, SETTINGS, 1, "gen-0-it1")
    assert deployment["metadata"]["name"] == "mistral-gsm8k-vllm-gen-0-it1"
    # queueName: Kueue's Deployment integration admits its pods within the queue's quota
    assert deployment["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "a100-queue"
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model") + 1] == "/artifacts/mistral-gsm8k/models/gen-0-it1"
    assert "--enable-lora" not in args and "--gpu-memory-utilization=0.90" in args
    backend = openai_backend(society, 1)
    assert backend.base_urls["critic-2-it1"] == (
        "http://mistral-gsm8k-vllm-critic-2-it1.research.svc:8000/v1"
    )


def test_a_base_summarizer_is_served_beside_the_agents():
    """spec.debate.summarizer: base asks the base model for every summary, in every iteration:
    the LoRA server serves it as its own model (not an adapter); full finetuning adds a server
    for it, which downloads the base model like iteration 0's."""
    manifest = example("arithmetic-lora-h100.yaml")
    manifest["spec"]["debate"]["summarizer"] = "base"
    society = load(manifest)
    assert build_debate_job(society, SETTINGS, 2).config.summarizer.name == "base"
    args = build_server(society, SETTINGS, 2)[0]["spec"]["template"]["spec"]["containers"][0]
    modules = args["args"][args["args"].index("--lora-modules") + 1 :]
    assert len(modules) == 6 and not any(m.startswith("base=") for m in modules)
    assert args["args"][args["args"].index("--max-loras") + 1] == "6"

    manifest = example("gsm8k-full-a100.yaml")
    manifest["spec"]["debate"]["summarizer"] = "base"
    society = load(manifest)
    assert "base" in servers(society, 1) and len(servers(society, 1)) == 7
    deployment, _ = build_server(society, SETTINGS, 1, "base")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][container["args"].index("--model") + 1] == (
        "mistralai/Mistral-7B-Instruct-v0.2"
    )
    assert "HF_TOKEN_PATH" in {e["name"] for e in container["env"]}
    assert (
        openai_backend(society, 1).base_urls["base"].startswith("http://mistral-gsm8k-vllm-base.")
    )
    # by default each critic summarises for itself, and no base server is added
    assert "base" not in servers(load(example("gsm8k-full-a100.yaml")), 1)


def test_jobs_carry_queue_scheduling_secrets_and_their_step_config():
    society = load(example("gsm8k-full-a100.yaml"))
    child = build_training_jobs(society, SETTINGS, 1)[3]
    job, config = child.body, child.config
    assert config.model.base_model == "mistralai/Mistral-7B-Instruct-v0.2"
    assert job["metadata"]["name"] == "mistral-gsm8k-train-critic-1-it1"
    labels = job["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "a100-queue" and job["spec"]["suspend"] is True
    assert (labels["society.dev/role"], labels["society.dev/agent"]) == ("critic", "1")
    assert job["spec"]["backoffLimit"] == 3
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["priorityClassName"] == "research-batch" and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    env = {e["name"]: e for e in container["env"]}
    # The token as a file from the Secret (huggingface_hub reads $HF_TOKEN_PATH), never a value.
    assert "HF_TOKEN" not in env
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    token_file = f"{mounts['hf-token']['mountPath']}/token"
    assert env["HF_TOKEN_PATH"]["value"] == token_file and mounts["hf-token"]["readOnly"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["hf-token"]["secret"]["secretName"] == "hf-token"
    assert volumes["hf-token"]["secret"]["items"] == [{"key": "token", "path": "token"}]
    step = json.loads(env["SOCIETY_STEP_CONFIG"]["value"])
    assert step["role"] == "critic" and step["gpus"] == 4 and step["method"] == "full"
    assert step["termination_log"] == "/dev/termination-log"


def test_the_debate_job_needs_no_gpu_and_knows_the_servers():
    society = load(example("arithmetic-lora-h100.yaml"))
    child = build_debate_job(society, SETTINGS, 1)
    job, config = child.body, child.config
    assert job["metadata"]["name"] == "phi3-arithmetic-debate-it1"
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    assert job["spec"]["suspend"] is False
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in json.dumps(container)
    assert container["command"] == ["society-trainer", "debate"]
    assert config.backend.default_base_url.startswith("http://phi3-arithmetic-vllm.")
    assert config.output_dir.as_posix() == "/artifacts/phi3-arithmetic/iterations/1/debate"


def test_suspended_societies_scale_servers_to_zero():
    manifest = example("arithmetic-lora-h100.yaml")
    manifest["spec"]["suspend"] = True
    deployment, _ = build_server(load(manifest), SETTINGS, 0)
    assert deployment["spec"]["replicas"] == 0


@pytest.mark.parametrize("when_deleted,owned", [("Retain", False), ("Delete", True)])
def test_the_claim_is_owned_only_when_it_may_be_deleted(when_deleted, owned):
    manifest = example("arithmetic-lora-h100.yaml")
    manifest["spec"]["storage"]["whenDeleted"] = when_deleted
    claim = build_claim(load(manifest), SETTINGS)
    assert ("ownerReferences" in claim["metadata"]) is owned
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "200Gi"}},
        "storageClassName": "premium-rwx",
    }
    assert build_claim(load(example("gsm8k-full-a100.yaml")), SETTINGS) is None  # existing claim


def test_images_come_from_the_society_or_the_operator_settings():
    manifest = example("tiny.yaml")
    society = load(manifest)
    settings = Settings.from_env(
        {"SOCIETY_VLLM_IMAGE": "mirror/vllm:1", "SOCIETY_TRAINER_IMAGE": "mirror/trainer:1"}
    )
    server = build_server(society, settings, 0)[0]["spec"]["template"]["spec"]["containers"][0]
    job = build_debate_job(society, settings, 0).body["spec"]["template"]["spec"]["containers"][0]
    assert (server["image"], job["image"]) == ("mirror/vllm:1", "mirror/trainer:1")
    manifest["spec"]["inference"]["image"] = "own/vllm:2"
    server = build_server(load(manifest), settings, 0)[0]
    assert server["spec"]["template"]["spec"]["containers"][0]["image"] == "own/vllm:2"


def test_pods_get_nothing_they_do_not_use():
    """No Service links (a Service named vllm would inject VLLM_PORT=tcp://..., which vLLM
    refuses), no ServiceAccount token, a read-only root filesystem with a writable /tmp, and the
    Hub token only in pods that download weights: not in the debate, an HTTP client."""
    society = load(example("gsm8k-full-a100.yaml"))  # full finetuning, with an HF token
    base_server, _ = build_server(society, SETTINGS, 0)
    later_server, _ = build_server(society, SETTINGS, 1, "gen-0-it1")
    debate = build_debate_job(society, SETTINGS, 1).body
    training = build_training_jobs(society, SETTINGS, 1)[0].body
    pods = {
        "base server": base_server["spec"]["template"]["spec"],
        "later server": later_server["spec"]["template"]["spec"],
        "debate": debate["spec"]["template"]["spec"],
        "training": training["spec"]["template"]["spec"],
    }
    for what, pod in pods.items():
        assert pod["enableServiceLinks"] is False, what
        assert pod["automountServiceAccountToken"] is False, what
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, what
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], what
    tokens = {
        what: any(e["name"] == "HF_TOKEN_PATH" for e in pod["containers"][0]["env"])
        and any(v["name"] == "hf-token" for v in pod["volumes"])
        for what, pod in pods.items()
    }
    assert tokens == {"base server": True, "later server": False, "debate": False, "training": True}
    probe = pods["base server"]["containers"][0]["readinessProbe"]
    assert probe["timeoutSeconds"] >= 5  # a server busy with a batch answers late, not never


def test_jobs_fail_at_once_on_configuration_errors_and_ignore_disruptions():
    society = load(example("arithmetic-lora-h100.yaml"))
    for child in [
        build_debate_job(society, SETTINGS, 0),
        *build_training_jobs(society, SETTINGS, 1),
    ]:
        spec = child.body["spec"]
        rules = spec["podFailurePolicy"]["rules"]
        assert rules[0] == {
            "action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
        }
        container = spec["template"]["spec"]["containers"][0]["name"]
        assert rules[1]["action"] == "FailJob"
        assert rules[1]["onExitCodes"] == {
            "containerName": container,
            "operator": "In",
            "values": [CONFIG_ERROR_EXIT_CODE],
        }
        assert spec["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy needs it


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_children_named_before_they_are_built_are_named_as_built(path):
    """A reconcile reads a child's kind and name without building it (build/child.py): they
    must be those of the manifest built later, or the operator would create a child anew at
    every reconcile (or never see the one it made)."""
    import yaml

    from society_operator.build.desired import desired

    society = load(yaml.safe_load(path.read_text()))
    seen = 0
    for iteration in (0, 1):
        wanted = desired(society, SETTINGS, iteration)
        children = [wanted.debate, wanted.train_split_debate, *wanted.training]
        children += [child for pair in wanted.servers.values() for child in pair]
        for child in children:
            kind, name = child.kind, child.name
            assert "_built" not in vars(child)  # nothing built yet
            assert (child.body["kind"], child.body["metadata"]["name"]) == (kind, name)
            seen += 1
        for child in wanted.training:
            assert child.body["metadata"]["labels"]["society.dev/role"] == child.config.role
    assert seen >= 6
