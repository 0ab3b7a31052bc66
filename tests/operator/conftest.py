"""Fixtures that run kopf handlers against the kmock API emulator, over real HTTP.

Three threads meet here. The test is synchronous and acts as the user with kubectl, and as the
kubelet and the Job controller, which do not exist here. The emulator (``apiserver.py``) serves on
127.0.0.1 from its own event loop. kopf runs in a third thread and loop, started and stopped the
way the operator's pod would be. Both kopf and the test find the emulator through a kubeconfig, so
the operator's login and client code paths are the ones it uses in a cluster.

    def test_creates_the_debate_job(kube, kopf_registry, running_operator):
        @kopf.on.create("society.dev", "v1alpha1", "societies", registry=kopf_registry)
        def create_fn(body, **_): ...
        operator = running_operator()
        kube.create(society)
        job = kube.wait_for(lambda: kube.find("Job", "default", "x-debate"), "the debate Job")
        kube.finish_job("default", job["metadata"]["name"])
        kube.wait_for(lambda: kube.get("Society", "default", "x").get("status"), "a status")
        operator.stop()
        operator.start()  # a restarted operator: same cluster state, empty kopf memory
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import kmock
import kopf
import kubernetes
import pytest
import yaml

from society_operator.kube.config import OperatorConfig
from society_operator.kube.handlers import register

from .apiserver import JSON_PATCH, MERGE_PATCH, ApiServerEmulator, now

ROOT = Path(__file__).resolve().parents[2]
SOCIETY_CRD = ROOT / "crds" / "society.yaml"
REQUEST_TIMEOUT = 10.0
T = TypeVar("T")
JSON = dict[str, Any]

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{{name: kmock, cluster: {{server: "{url}"}}}}]
users: [{{name: tester, user: {{token: kmock-test-token}}}}]
contexts: [{{name: kmock, context: {{cluster: kmock, user: tester, namespace: default}}}}]
current-context: kmock
"""


class EmulatorThread:
    """Serves an :class:`ApiServerEmulator` on a free port of 127.0.0.1 from its own event loop.

    The test thread stays synchronous and kopf needs a loop of its own, so the emulator gets a
    third one that neither test nor operator code can block.
    """

    def __init__(self, emulator: ApiServerEmulator, kubeconfig: Path) -> None:
        self.emulator = emulator
        self.kubeconfig = kubeconfig
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._crash: BaseException | None = None
        self._bugs: list[Exception] = []
        self._thread = threading.Thread(target=self._run, name="kmock-apiserver", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._started.wait(timeout) or not self.url:
            raise RuntimeError(f"the API emulator did not start in {timeout}s") from self._crash
        self.kubeconfig.write_text(KUBECONFIG.format(url=self.url))

    def stop(self, timeout: float = 10.0) -> list[Exception]:
        """Stop serving; return what the emulator raised while serving (its bugs, not 4xx)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the API emulator did not stop in {timeout}s")
        return self._bugs

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported by start(), which waits on this thread
            self._crash = e
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._started.set()
            await self._stopping.wait()
            # API errors are answers; anything else is the emulator failing, i.e. a 500.
            self._bugs = [
                e for e in self.emulator.errors if not isinstance(e, kmock.KubernetesError)
            ]


def operator_test_settings() -> kopf.OperatorSettings:
    """kopf's settings for tests; the operator's startup handlers may still override them."""
    settings = kopf.OperatorSettings()
    # kopf SIGKILLs its own thread -- here, pytest -- if it exits other than by the stop flag.
    settings.process.ultimate_exiting_timeout = None
    # Short server-side watch timeouts make kopf reconnect and resume from its last
    # resourceVersion several times per test, which is what a long-lived operator does.
    settings.watching.server_timeout = 5
    settings.watching.client_timeout = 10
    settings.watching.connect_timeout = 2
    settings.networking.request_timeout = REQUEST_TIMEOUT
    settings.networking.connect_timeout = 2
    # A failed handler is retried after 60 s by default, past any test's patience.
    settings.execution.default_backoff = 1
    # Events are posted as soon as they are queued; idle posters should not outlive a test.
    settings.posting.idle_timeout = 0.5
    return settings


class OperatorThread:
    """One kopf operator in its own thread and event loop, like the operator's pod.

    ``start()`` and ``stop()`` may alternate within a test: every start is a fresh kopf with empty
    in-memory state, as after a pod restart, against the apiserver state that the last one left.
    It runs standalone (no peering objects) and cluster-wide: in namespaced mode kopf lists
    ``/api/v1/namespaces``, a path kmock 0.8 cannot even parse (a 500, reported at teardown).
    """

    def __init__(
        self,
        registry: kopf.OperatorRegistry,
        *,
        configure: Callable[[kopf.OperatorSettings], None] | None = None,
        memo: object | None = None,
    ) -> None:
        self.registry = registry
        self.settings = operator_test_settings()
        self._configure = configure
        self._memo = memo
        self._thread: threading.Thread | None = None
        self._stop_flag = threading.Event()
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Return once kopf's startup handlers have run, or raise why it did not get there."""
        if self.running:
            raise RuntimeError("the operator is already running")
        self.settings = operator_test_settings()  # fresh: stop() shut the last executor down
        if self._configure is not None:
            self._configure(self.settings)
        ready = threading.Event()
        self._stop_flag = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name="kopf", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()  # raises kopf's own error if it crashed
                raise RuntimeError(f"kopf did not become ready in {timeout}s")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop kopf as SIGTERM would; raise what it crashed with, if it did (once)."""
        if self._thread is None:
            return
        self._stop_flag.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"kopf did not stop in {timeout}s")
        self.settings.execution.executor.shutdown(wait=False)
        error, self._error = self._error, None
        if error is not None:
            raise RuntimeError("kopf exited with an error") from error

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    settings=self.settings,
                    memo=self._memo,
                    clusterwide=True,
                    standalone=True,
                    stop_flag=self._stop_flag,
                    ready_flag=ready,
                )
            )
        except BaseException as e:  # re-raised in the test thread by stop()
            self._error = e


class KubeClient:
    """What a test uses in place of kubectl, the kubelet and the Job controller.

    Bodies are plain dicts, kinds are named as in manifests ("Job", "Society"). It is the official
    client over HTTP, so every write reaches kopf's watches as it would in a cluster; reading the
    emulator's memory directly would bypass exactly what is under test.
    """

    def __init__(self, kubeconfig: Path, resources: Mapping[Any, kmock.ResourceInfo]) -> None:
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
        self._api = kubernetes.client.ApiClient(config)
        self._kinds = {info.kind: (resource, info) for resource, info in resources.items()}

    def close(self) -> None:
        self._api.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        response_type: str = "object",
        timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        """One API call; a non-2xx answer raises kubernetes.client.ApiException (with .status)."""
        method, url, headers, body, _ = self._api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(method, url, headers, body, _request_timeout=timeout)
        response.read()
        return self._api.response_deserialize(response, {"2XX": response_type}).data

    def path(
        self, kind: str, namespace: str | None, name: str | None = None, sub: str | None = None
    ) -> str:
        resource, info = self._kinds[kind]
        parts = [f"/apis/{resource.group}" if resource.group else "/api", resource.version]
        if info.namespaced and namespace is not None:
            parts += ["namespaces", namespace]
        parts += [resource.plural, name, sub]
        return "/".join(part for part in parts if part)

    def create(self, body: JSON) -> JSON:
        namespace = body.get("metadata", {}).get("namespace", "default")
        return self.request("POST", self.path(body["kind"], namespace), body=body)

    def get(self, kind: str, namespace: str | None, name: str) -> JSON:
        return self.request("GET", self.path(kind, namespace, name))

    def find(self, kind: str, namespace: str | None, name: str) -> JSON | None:
        """Like get(), but None if absent: the usual shape of a wait_for() predicate."""
        try:
            return self.get(kind, namespace, name)
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(
        self, kind: str, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[JSON]:
        query = {"labelSelector": label_selector} if label_selector else {}
        return self.request("GET", self.path(kind, namespace), query=query)["items"]

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        seconds: int = 1,
        label_selector: str | None = None,
    ) -> list[JSON]:
        """The events a watcher gets in the next few seconds: to assert what kopf would see."""
        query = {"watch": "true", "resourceVersion": resource_version}
        query |= {"timeoutSeconds": str(seconds)}
        if label_selector:
            query["labelSelector"] = label_selector
        path = self.path(kind, namespace)
        raw = self.request("GET", path, query=query, response_type="bytes", timeout=seconds + 5)
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    def patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: JSON | list[JSON],
        *,
        subresource: str | None = None,
    ) -> JSON:
        """A JSON merge patch for a dict, a JSON patch (RFC 6902) for a list of operations."""
        content_type = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        path = self.path(kind, namespace, name, subresource)
        return self.request("PATCH", path, body=patch, content_type=content_type)

    def patch_status(self, kind: str, namespace: str | None, name: str, status: JSON) -> JSON:
        """Merge into .status via /status, the only way to write it where it is a subresource."""
        return self.patch(kind, namespace, name, {"status": status}, subresource="status")

    def replace(self, body: JSON, *, subresource: str | None = None) -> JSON:
        meta = body["metadata"]
        path = self.path(body["kind"], meta.get("namespace"), meta["name"], subresource)
        return self.request("PUT", path, body=body)

    def delete(self, kind: str, namespace: str | None, name: str) -> JSON:
        return self.request("DELETE", self.path(kind, namespace, name))

    def finish_job(
        self,
        namespace: str,
        name: str,
        *,
        succeeded: bool = True,
        termination_message: str | None = None,
        seconds: float | None = None,
    ) -> JSON:
        """Run a Job to its end as the Job controller and the kubelet would, in their order.

        A Pod labelled and owned like the Job controller's terminates with the given termination
        message (how the trainer reports results), then the Job gets the counters and the
        conditions of Kubernetes >= 1.31 (SuccessCriteriaMet/FailureTarget before Complete/Failed).
        The pod's container ran for `seconds`, or since the Job was created.
        """
        job = self.get("Job", namespace, name)
        uid = job["metadata"]["uid"]
        labels = dict((job["spec"]["template"].get("metadata") or {}).get("labels") or {})
        labels |= {"batch.kubernetes.io/job-name": name, "batch.kubernetes.io/controller-uid": uid}
        labels |= {"job-name": name, "controller-uid": uid}
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid}
        owner |= {"controller": True, "blockOwnerDeletion": True}
        pod_spec = copy.deepcopy(job["spec"]["template"]["spec"])
        meta = {"generateName": f"{name}-", "namespace": namespace, "labels": labels}
        pod = self.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta | {"ownerReferences": [owner]},
                "spec": pod_spec,
            }
        )
        finished = now()
        started = job["metadata"]["creationTimestamp"] if seconds is None else now(-seconds)
        terminated = {"exitCode": 0 if succeeded else 1, "startedAt": started}
        terminated |= {"finishedAt": finished, "reason": "Completed" if succeeded else "Error"}
        if termination_message is not None:
            terminated["message"] = termination_message
        container = pod_spec["containers"][0]
        container_status = {"name": container["name"], "image": container.get("image", "")}
        container_status |= {"ready": False, "restartCount": 0, "state": {"terminated": terminated}}
        pod_phase = "Succeeded" if succeeded else "Failed"
        pod_status = {"phase": pod_phase, "containerStatuses": [container_status]}
        self.patch_status("Pod", namespace, pod["metadata"]["name"], pod_status)
        if succeeded:
            reason, message = "CompletionsReached", "Reached expected number of succeeded pods"
            condition_types = ("SuccessCriteriaMet", "Complete")
            counts = {"succeeded": 1, "completionTime": finished}
        else:
            reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            condition_types = ("FailureTarget", "Failed")
            counts = {"failed": 1}
        conditions = [
            {"type": kind, "status": "True", "reason": reason, "message": message}
            | {"lastProbeTime": finished, "lastTransitionTime": finished}
            for kind in condition_types
        ]
        status = {"startTime": started, "active": 0, "ready": 0, "conditions": conditions}
        return self.patch_status("Job", namespace, name, status | counts)

    @staticmethod
    def wait_for(
        predicate: Callable[[], T | None], what: str, timeout: float = 5.0, interval: float = 0.05
    ) -> T:
        """Poll until predicate() is truthy and return its value; fail naming what was awaited."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; got {value!r}"
                )
            time.sleep(interval)
        return value


@pytest.fixture
def apiserver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    """A running emulator serving the built-ins and the project's generated Society CRD.

    KUBECONFIG points at it for the test, so kopf's login and the kubernetes client find it.
    The teardown fails the test if the emulator itself crashed while serving a request.
    """
    emulator = ApiServerEmulator()
    emulator.add_builtins()
    emulator.add_crd(yaml.safe_load(SOCIETY_CRD.read_text()))
    server = EmulatorThread(emulator, tmp_path / "kubeconfig")
    server.start()
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))
    yield server
    bugs = server.stop()
    assert not bugs, f"the API emulator failed while serving requests: {bugs!r}"


@pytest.fixture
def kube(apiserver: EmulatorThread) -> Iterator[KubeClient]:
    client = KubeClient(apiserver.kubeconfig, apiserver.emulator.resources)
    yield client
    client.close()


@pytest.fixture
def kopf_registry() -> kopf.OperatorRegistry:
    """An empty registry that only knows how to log in, so that no handler leaks between tests.

    A bare ``kopf.OperatorRegistry`` has no login handler at all (only kopf's global default
    registry adds them); ``login_with_kubeconfig`` reads $KUBECONFIG and has no side effects,
    unlike the kubernetes-client login, which replaces that library's global default config.
    """
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_with_kubeconfig)
    return registry


@pytest.fixture
def running_operator(
    apiserver: EmulatorThread, kopf_registry: kopf.OperatorRegistry
) -> Iterator[Callable[..., OperatorThread]]:
    """A factory: ``running_operator(registry=None, *, configure=None, memo=None)``.

    It returns a started :class:`OperatorThread` (with ``kopf_registry`` unless told otherwise).
    At the end of the test every operator is stopped, and a crash of kopf that the test did not
    see yet fails the teardown, so a wait_for() timeout does not hide its cause.
    """
    operators: list[OperatorThread] = []

    def start(
        registry: kopf.OperatorRegistry | None = None,
        *,
        configure: Callable[[kopf.OperatorSettings], None] | None = None,
        memo: object | None = None,
    ) -> OperatorThread:
        operator = OperatorThread(
            registry if registry is not None else kopf_registry, configure=configure, memo=memo
        )
        operators.append(operator)
        operator.start()
        return operator

    yield start
    errors: list[RuntimeError] = []
    for operator in operators:
        try:
            operator.stop()
        except RuntimeError as e:
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def start_operator(
    apiserver: EmulatorThread,
    kopf_registry: kopf.OperatorRegistry,
    running_operator: Callable[..., OperatorThread],
) -> Callable[..., OperatorThread]:
    """Start (and again, after a stop) the real operator; its config can be overridden."""
    apiserver.emulator.request_history = 20  # these tests inject no faults with kmock's DSL
    register(kopf_registry)

    def start(**config: Any) -> OperatorThread:
        config = {"resync_seconds": 1.0, "leader_election": False} | config
        return running_operator(memo=kopf.Memo(config=OperatorConfig(**config)))

    return start
