"""examples/gsm8k-full-a100.yaml through the real Kueue (../shared/k8s: its CRDs, its webhooks on
loopback) with the ResourceFlavor, ClusterQueue and LocalQueue that docs/install.md documents:
every Job suspended at creation, admitted by Kueue within the queue's quota, placed on the
flavor's nodes, and the Society Succeeded. Only this module starts Kueue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from ..conftest import ROOT
from .addons import Kueue
from .assets import unpack
from .conftest import ASSETS
from .test_lifecycle import created_once
from .test_operator import Children, run_to_end

GSM8K_A100 = ROOT / "examples" / "gsm8k-full-a100.yaml"
INSTALL = ROOT / "docs" / "install.md"
NAME = "mistral-gsm8k"
A100 = "nvidia-tesla-a100"


@pytest.fixture(scope="module")
def kueue(control_plane, kubectl, tmp_path_factory) -> Iterator[Kueue]:
    assert isinstance(ASSETS, Path)
    with Kueue(
        unpack(ASSETS, ("kueue",)),
        ASSETS / "kueue" / "kueue-v0.17.0-config.tar.xz",
        tmp_path_factory.mktemp("kueue"),
        kubectl,
    ) as running:
        yield running
        print(running.log())


def install_queues(namespace: str) -> list[dict[str, Any]]:
    """The Kueue objects of docs/install.md section 5, the LocalQueue in `namespace`."""
    text = INSTALL.read_text().split("## 5. Kueue")[1].split("```yaml")[1].split("```")[0]
    documents = [d for d in yaml.safe_load_all(text) if d]
    kinds = ["ResourceFlavor", "ResourceFlavor", "ClusterQueue", "LocalQueue"]
    assert [d["kind"] for d in documents] == kinds
    documents[3]["metadata"]["namespace"] = namespace
    return documents


def gsm8k_society(namespace: str) -> dict[str, Any]:
    """The example in `namespace`, one iteration, small splits."""
    manifest = yaml.safe_load(GSM8K_A100.read_text())
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"]["task"] |= {"trainSize": 32, "evalSize": 32}
    manifest["spec"]["finetune"]["iterations"] = 1
    return manifest


def prerequisites(kubectl, namespace: str) -> None:
    """What the example names and docs/install.md has the reader create."""
    kubectl.apply(
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "research-batch"},
            "value": 1000,
        }
    )
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "society-artifacts", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "resources": {"requests": {"storage": "100Gi"}},
            },
        }
    )
    kubectl.run(
        *("create", "secret", "generic", "hf-token", "-n", namespace),
        "--from-literal=token=hf_test",
    )


def test_gsm8k_example_through_kueue_on_the_a100_pool(
    api, kubectl, namespace, kubelet, operator, kueue
):
    for document in install_queues(namespace):
        kubectl.apply(document)
    prerequisites(kubectl, namespace)
    kubectl.apply(gsm8k_society(namespace))
    children = Children(api, namespace, NAME)

    try:
        status = run_to_end(api, namespace, NAME, children, timeout=120)
    except AssertionError:
        print(kubectl.run("get", "workloads,jobs,pods", "-n", namespace, "-o", "wide").stdout)
        print(kubectl.run("describe", "workloads,pods", "-n", namespace, check=False).stdout)
        raise

    assert status["phase"] == "Succeeded", status
    created_once(children, kubelet)
    batch = kubernetes.client.BatchV1Api(api)
    jobs = batch.list_namespaced_job(namespace, label_selector=f"society.dev/society={NAME}")
    assert len(jobs.items) == 2 + 6  # two debates, 3 agents x 2 roles of training
    for job in jobs.items:
        assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "a100-queue"
        assert job.status.succeeded == 1, job.metadata.name
    # Every Job went through a Workload that Kueue admitted: GPU Jobs to the a100 flavor.
    workloads = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
        "kueue.x-k8s.io", "v1beta2", namespace, "workloads"
    )["items"]
    owners = {w["metadata"]["ownerReferences"][0]["name"]: w for w in workloads}
    assert sorted(owners) == sorted(j.metadata.name for j in jobs.items)
    for job, workload in owners.items():
        admission = workload["status"]["admission"]
        assert admission["clusterQueue"] == "gpu", job
        flavors = {f for ps in admission["podSetAssignments"] for f in ps["flavors"].values()}
        assert flavors == ({"default-cpu"} if "-debate-" in job else {"a100"}), (job, flavors)
    # Servers (outside the queue) and training Jobs on the A100 pool; debates off the GPU pools.
    nodes = {
        n.metadata.name: n.metadata.labels
        for n in kubernetes.client.CoreV1Api(api).list_node().items
    }
    wrong = {
        pod: node
        for pod, node in children.nodes.items()
        if nodes[node].get("cloud.google.com/gke-accelerator")
        != (None if "-debate-" in pod else A100)
    }
    assert not wrong, f"pods on the wrong pool: {wrong}"
