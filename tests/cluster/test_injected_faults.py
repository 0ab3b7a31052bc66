"""Apiserver faults that the real control plane cannot be made to show on demand (issue 16 item 4),
injected between the real `society operator` process and the real kube-apiserver by a proxy
(`faults.py`): 409 Conflict on the Society's status writes, 500s on creates (before and after the
apiserver made the object) and on GETs, 410 Gone on watches (the HTTP answer, and the in-stream
ERROR event of an expired resourceVersion), and connections cut in the middle of watch streams
and before an answer. kube-apiserver itself sends 410 inside the watch stream; an HTTP 410 answer
to the watch request (an aggregated apiserver's, a proxy's) ends kopf, so the operator exits
non-zero for the kubelet to restart it, and the restart finishes the run.

The operator's kubeconfig points at the proxy and holds the chart's ServiceAccount token, which
the proxy forwards: the apiserver authorises and audits the operator as without it. Each test
runs `examples/tiny.yaml` (two iterations) to Succeeded and checks that nothing was created
twice (the audit log's creates that succeeded, and every child's uid) and that every iteration's
results are in the status."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import Operator
from .controlplane import kubeconfig, wait_for
from .faults import Fault, FaultProxy, after, drop, expire, hang, respond
from .kubelet import accuracy
from .test_faults import CHILD_RESOURCES, operator_creates, phase, tiny
from .test_operator import Children, run_to_end


@pytest.fixture
def proxy(control_plane) -> Iterator[FaultProxy]:
    with FaultProxy(control_plane.server, control_plane.ca) as running:
        yield running


@pytest.fixture
def proxied_operator(
    control_plane, operator_kubeconfig: Path, proxy: FaultProxy, namespace: str, tmp_path: Path
) -> Iterator[Callable[[], Operator]]:
    """Starts `society operator` with a kubeconfig whose server is the proxy (call it once the
    faults that must meet its first requests are set); its log is printed after the test."""
    token = json.loads(operator_kubeconfig.read_text())["users"][0]["user"]["token"]
    path = tmp_path / "proxied.kubeconfig"
    path.write_text(kubeconfig(proxy.url, control_plane.ca, token))
    path.chmod(0o600)
    running = Operator(path, tmp_path / "operator.log")
    yield running.start
    running.stop()
    print(running.output()[-20000:])


def finished_with_everything(status: dict) -> None:
    """Succeeded, with every iteration's results (no artifact lost)."""
    assert status["phase"] == "Succeeded", status
    iterations = status["iterations"]
    assert [entry["iteration"] for entry in iterations] == [0, 1, 2]
    for entry in iterations:
        assert entry["accuracy"] == accuracy(entry["iteration"]), entry
    datasets = sorted((d["agent"], d["role"]) for d in iterations[0]["datasets"])
    assert datasets == [(agent, role) for agent in range(3) for role in ("critic", "generation")]
    assert status["accuracy"] == accuracy(2)


SERVED = 3  # tiny.yaml evaluates three times (iterations 0, 1, 2): a server for each


def created_once(control_plane, namespace: str, children: Children, kubelet) -> None:
    """Each child created once (the server, once per iteration): by the apiserver's audit log
    (creates that succeeded, by name), by uid as listed while the test polled (by name and
    iteration), and one pod per Job."""
    made = Counter(
        (event["objectRef"]["resource"], event["objectRef"]["name"])
        for event in operator_creates(control_plane, namespace, resources=CHILD_RESOURCES)
        if event.get("responseStatus", {}).get("code") in (200, 201)
    )
    servers = {("deployments", "tiny-vllm"), ("services", "tiny-vllm")}
    assert all(made.pop(server) == SERVED for server in servers), made
    assert made and set(made.values()) == {1}, {key: n for key, n in made.items() if n > 1}
    twice = {key: uids for key, uids in children.uids.items() if len(uids) > 1}
    assert not twice, twice
    jobs = kubelet.jobs_finished()
    assert len(jobs) == len(set(jobs)), f"a Job ran more than one pod: {jobs}"
    assert sum(job.startswith("tiny-train-") for job in jobs) == 12  # 2 iterations x 3 agents x 2


def test_conflicts_and_server_errors_on_writes_and_reads(
    api, kubectl, control_plane, namespace, kubelet, proxy, proxied_operator
):
    """409 on the first three status writes; a status write, two Job creates and the claim's
    create answered 500 after the apiserver made them (the response lost); a Deployment create
    and three GETs of the Society answered 500 before reaching it; a GET cut before its answer;
    kopf's first lists of Jobs and Pods answered 500."""
    society = f"/namespaces/{namespace}/societies/tiny"
    faults = [
        Fault("PUT", society + "/status$", respond(409), times=3),
        Fault("PUT", society + "/status$", after(500)),
        Fault("POST", f"/namespaces/{namespace}/jobs$", after(500), times=2),
        Fault("POST", f"/namespaces/{namespace}/persistentvolumeclaims$", after(500)),
        Fault("POST", f"/namespaces/{namespace}/deployments$", respond(500)),
        Fault("GET", society + "$", respond(500), times=3),
        Fault("GET", society + "$", drop()),
        Fault("GET", "^/apis/batch/v1/jobs$", respond(500), watch=False),
        Fault("GET", "^/api/v1/pods$", respond(500), watch=False),
    ]
    proxy.add(*faults)
    proxied_operator()
    kubectl.apply(tiny(namespace))
    children = Children(api, namespace, "tiny")

    status = run_to_end(api, namespace, "tiny", children, timeout=180)

    finished_with_everything(status)
    created_once(control_plane, namespace, children, kubelet)
    missed = [f for f in faults if f.hits < f.times]
    assert not missed, f"faults that never met their request: {missed}"


def test_expired_and_cut_watches(
    api, kubectl, control_plane, namespace, kubelet, proxy, proxied_operator
):
    """Every watch of the operator ends mid-run, twice: with the in-stream ERROR 410 of an
    expired resourceVersion while the Society debates (kopf lists again), and cut without an
    end while it trains (kopf resumes from its last resourceVersion), the first reconnection
    of Pods and Deployments cut again after one event. The Job that ends the phase finishes
    while the watches are down."""
    operator = proxied_operator()
    kubelet.hold("tiny-debate-it0")
    kubelet.hold("tiny-train-gen-0-it1")
    kubectl.apply(tiny(namespace))
    children = Children(api, namespace, "tiny")
    wait_for(lambda: reached(api, children, "Debating"), "Debating", timeout=90, every=0.5)

    jobs = "/apis/batch/v1/jobs"
    listed = len(proxy.requests(lambda r: r.path == jobs and not r.watch))
    expired = proxy.interrupt(expire())
    kubelet.release("tiny-debate-it0")
    wait_for(lambda: reached(api, children, "Training"), "Training", timeout=90, every=0.5)
    # An expired resourceVersion: the watch listed again.
    relisted = len(proxy.requests(lambda r: r.path == jobs and not r.watch))
    assert relisted > listed, (listed, relisted)
    watched = len(proxy.requests(lambda r: r.path == jobs and r.watch))
    cut_again = [
        Fault("GET", "^/api/v1/pods$", drop(events=1), watch=True),
        Fault("GET", "^/apis/apps/v1/deployments$", drop(events=1), watch=True),
    ]
    proxy.add(*cut_again)
    cut = proxy.interrupt(drop())
    kubelet.release("tiny-train-gen-0-it1")
    status = run_to_end(api, namespace, "tiny", children, timeout=180)

    finished_with_everything(status)
    created_once(control_plane, namespace, children, kubelet)
    # A cut connection: the watch resumed from its resourceVersion, without listing again.
    resumed = proxy.requests(lambda r: r.path == jobs and r.watch)[watched:]
    assert resumed and all("resourceVersion=" in r.query for r in resumed), resumed
    assert len(proxy.requests(lambda r: r.path == jobs and not r.watch)) == relisted
    # Societies, Jobs, Deployments, Services, Pods and claims at least, each time.
    assert expired >= 6 and cut >= 6, (expired, cut)
    assert all(fault.hits == 1 for fault in cut_again), cut_again
    assert operator.process is not None and operator.process.popen.poll() is None
    assert "Traceback" not in operator.output()


def test_a_watch_refused_with_http_410_ends_the_process_and_a_restart_finishes(
    api, kubectl, control_plane, namespace, kubelet, proxy, proxied_operator
):
    """kube-apiserver says 410 inside the watch stream (above); an HTTP 410 answer to the watch
    request itself (an aggregated apiserver's, a proxy's) is fatal to kopf 1.45's watcher: the
    operator exits non-zero, so that the kubelet restarts it (the chart's Deployment), and the
    restarted process picks the Society up where it was, creating nothing twice.

    It exits even with a request of its own that never gets an answer (a half-dead connection):
    the process does not wait at its end for the client's threads."""
    operator = proxied_operator()
    kubelet.hold("tiny-debate-it0")
    kubectl.apply(tiny(namespace))
    children = Children(api, namespace, "tiny")
    wait_for(lambda: reached(api, children, "Debating"), "Debating", timeout=90, every=0.5)

    stalled = Fault("PUT", "/societies/tiny/status$", hang())
    proxy.add(stalled)
    kubelet.release("tiny-debate-it0")  # the debate ends: the next status write stalls
    wait_for(lambda: stalled.hits == 1, "the stalled status write", timeout=60, every=0.2)
    refused = Fault("GET", "^/apis/batch/v1/jobs$", respond(410), watch=True)
    proxy.add(refused)
    assert proxy.interrupt(drop(), "^/apis/batch/v1/jobs$") == 1  # it reconnects: refused
    assert operator.process is not None
    code = operator.process.popen.wait(30)
    assert code != 0 and refused.hits == 1, operator.output()[-3000:]

    operator.start()
    status = run_to_end(api, namespace, "tiny", children, timeout=180)

    finished_with_everything(status)
    created_once(control_plane, namespace, children, kubelet)


def reached(api, children: Children, wanted: str) -> bool:
    children.poll()
    return phase(api, children.namespace, "tiny") == wanted
