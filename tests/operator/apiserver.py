"""A kmock API emulator that keeps the promises of a real kube-apiserver which kopf relies on.

kmock 0.8's ``KubernetesEmulator`` stores objects and streams them, but it assigns no uid,
resourceVersion or generation (lists report ``resourceVersion: "..."``), ignores ``labelSelector``,
has no PUT (404), answers a failed JSON-patch ``test`` op with 500, lets the main resource write
``status``, collects no garbage, and its watches ignore ``resourceVersion`` and ``timeoutSeconds``
(every reconnect re-sends everything as ADDED; a stream never ends). kopf reads all of these:
it guards its finalizer and progress patches with ``test /metadata/resourceVersion`` and retries on
422 only, resumes watches from the last resourceVersion it saw, and waits for the resourceVersion of
its own patch to come back through the watch. An operator tested without them passes tests that a
cluster would fail, so :class:`ApiServerEmulator` replaces kmock's write, list and watch paths with
ones that behave like the apiserver. kmock's discovery endpoints, its ``objects`` view (for
assertions) and its request DSL (``emulator['post', ...] << 500`` to inject faults) are kept; an
injected reaction now stops the write from happening, as a failing apiserver would.

What it does NOT emulate, so that nobody relies on it by accident: schema validation,
defaulting and pruning (the operator's own validation has its own tests), strategic-merge list
merging (treated as a JSON merge patch: lists are replaced; custom resources refuse it with
415 as the apiserver does), server-side apply, field managers,
pagination (``limit`` is ignored), collection deletes, subresources other than ``status``,
namespace existence, foreground or orphan deletion, and admission. Garbage collection is a
synchronous background cascade: when an object leaves storage, every object whose
ownerReferences point only at objects that are gone is deleted in the same request (its own
finalizers still hold it).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import copy
import datetime
import re
import secrets
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import attrs
import jsonpatch
import jsonpointer
import kmock

JSON = dict[str, Any]
Key = tuple[kmock.resource, str | None, str]
Matcher = Callable[[JSON], bool]

# Built-in kinds the operator renders or kopf itself touches (events, leases for peering,
# namespaces and CRDs for kopf's cluster scanning). Their discovery data comes from the snapshot
# of a real cluster that kmock bundles, so verbs and subresources are the real ones.
BUILTIN_RESOURCES = (
    "v1/namespaces",
    "v1/pods",
    "v1/services",
    "v1/persistentvolumeclaims",
    "v1/configmaps",
    "v1/secrets",
    "v1/events",
    "apps/v1/deployments",
    "batch/v1/jobs",
    "networking.k8s.io/v1/networkpolicies",
    "coordination.k8s.io/v1/leases",
    "apiextensions.k8s.io/v1/customresourcedefinitions",
)
CRD_RESOURCE = kmock.resource("apiextensions.k8s.io/v1/customresourcedefinitions")
CRD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's generateName suffix alphabet

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# Fields the server owns: clients may send them, the server keeps its own values.
SERVER_METADATA = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "resourceVersion")


def api_error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    """A Status response that kopf's and kubernetes' clients map to their typed errors."""
    details = {"causes": [{"message": message}]}  # without details, kmock sends its traceback
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


def now(offset: float = 0.0) -> str:
    """The current time (plus `offset` seconds) as the apiserver writes timestamps."""
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def api_version(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else resource.version


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386; kmock's own merge refuses to replace a dict by a scalar, the apiserver does not."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_SELECTOR_TERM = re.compile(
    r"""^\s*(?:
        (?P<key>[\w./-]+)\s*(?P<op>==|=|!=)\s*(?P<value>[\w./-]*)
      | (?P<set_key>[\w./-]+)\s+(?P<set_op>in|notin)\s*\((?P<values>[^()]*)\)
      | (?P<negated>!)?\s*(?P<exists_key>[\w./-]+)
    )\s*$""",
    re.VERBOSE,
)


def parse_selector(text: str, *, allow_sets: bool) -> Callable[[Callable[[str], str | None]], bool]:
    """Compile a label or field selector into a predicate over a key-to-value lookup.

    Labels support equality (``a=b``, ``a==b``, ``a!=b``), sets (``a in (x,y)``, ``a notin (x)``)
    and existence (``a``, ``!a``); fields support equality only, as in Kubernetes. A selector the
    apiserver would reject is rejected here too (400), rather than silently matching everything.
    """
    terms: list[Callable[[Callable[[str], str | None]], bool]] = []
    for raw in re.split(r",(?![^()]*\))", text):
        if not raw.strip():
            continue
        match = _SELECTOR_TERM.match(raw)
        if match is None or (not allow_sets and not match["key"]):
            raise api_error(400, "BadRequest", f"unable to parse requirement: {raw.strip()!r}")
        if match["key"]:
            key, value, equal = match["key"], match["value"], match["op"] != "!="
            terms.append(lambda get, k=key, v=value, e=equal: (get(k) == v) == e)
        elif match["set_key"]:
            key, within = match["set_key"], match["set_op"] == "in"
            values = frozenset(v.strip() for v in match["values"].split(","))
            terms.append(lambda get, k=key, vs=values, w=within: (get(k) in vs) == w)
        else:
            key, present = match["exists_key"], not match["negated"]
            terms.append(lambda get, k=key, p=present: (get(k) is not None) == p)
    return lambda get: all(term(get) for term in terms)


def field_value(obj: JSON, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""  # the apiserver compares absent fields as empty strings
    return str(value).lower() if isinstance(value, bool) else str(value)


@attrs.frozen
class Change:
    """One entry of the watch log: what a watcher resuming from an older resourceVersion gets."""

    revision: int
    resource: kmock.resource
    type: str
    new: JSON
    old: JSON | None


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the apiserver's object semantics; see the module docstring.

    All methods run in the emulator's event loop and never await between reading and writing the
    store, so every request is atomic without locks. Stored versions are never mutated in place,
    so versions and the watch log may share their unchanged parts. Tests write through the API:
    editing ``emulator.objects`` directly would bypass resourceVersions and watches.
    """

    _revision: int = attrs.field(default=0, init=False)
    _changes: list[Change] = attrs.field(factory=list, init=False)
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _custom: set[kmock.resource] = attrs.field(factory=set, init=False)
    # What each client asked, as RBAC sees it: (user agent, verb, group, resource[/subresource]).
    calls: collections.Counter[tuple[str, str, str, str]] = attrs.field(
        factory=collections.Counter, init=False
    )
    # kmock finds a request's reactions by scanning its whole request history, once per reaction:
    # quadratic, seconds per request after a few thousand. Tests that neither inject faults nor
    # count requests with the DSL keep only the recent past (a number of requests).
    request_history: int | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback[kmock.method.PUT] << self._serve_replace

    def add_builtins(self) -> None:
        bundled = kmock.ResourcesArray()
        with warnings.catch_warnings():  # kmock 0.8 reads its data with a deprecated importlib API
            warnings.simplefilter("ignore", DeprecationWarning)
            bundled.load_bundled()
        for name in BUILTIN_RESOURCES:
            self.resources[name] = bundled[name]

    def add_crd(self, crd: JSON) -> None:
        """Serve a CRD's resource and store the CRD object, as applying it to a cluster would."""
        spec, names = crd["spec"], crd["spec"]["names"]
        for version in spec["versions"]:
            if version.get("served", True):
                resource = kmock.resource(spec["group"], version["name"], names["plural"])
                self._custom.add(resource)
                self.resources[resource] = kmock.ResourceInfo(
                    namespaced=spec["scope"] == "Namespaced",
                    kind=names["kind"],
                    singular=names.get("singular", names["kind"].lower()),
                    verbs=CRD_VERBS,
                    shortnames=names.get("shortNames", ()),
                    categories=names.get("categories", ()),
                    subresources=version.get("subresources", {}).keys(),
                )
        self._insert((CRD_RESOURCE, None, crd["metadata"]["name"]), copy.deepcopy(crd))

    # kmock writes the object before dispatching to reactions; here the fallbacks write instead,
    # so that a reaction injected by a test (a 500, a 409) prevents the write like a real failure.
    async def _handle(self, request: kmock.Request) -> Any:
        self._record(request)
        if self.request_history is not None:
            del self._requests[: -self.request_history]
        return await kmock.RawHandler._handle(self, request)

    def _record(self, request: kmock.Request) -> None:
        if request.resource is None or not request.resource.plural:
            return  # discovery (/api, /apis/...): every authenticated client may read it
        method = str(request.method).upper().rsplit(".", 1)[-1]
        if method == "GET":
            watch = request.params.get("watch") in ("true", "1")
            verb = "watch" if watch else "get" if request.name else "list"
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
                method, method.lower()
            )
        resource = request.resource.plural
        if request.subresource:
            resource += f"/{request.subresource}"
        agent = {name.lower(): v for name, v in request.headers.items()}.get("user-agent", "")
        self.calls[(agent, verb, request.resource.group, resource)] += 1

    # -- reading --------------------------------------------------------------------------------

    async def _serve_fetch(self, request: kmock.Request) -> JSON:
        info = self._info(request)
        self._is_status(request, info)  # rejects subresources other than /status
        return self._existing(request, info)[1]

    async def _serve_list(self, request: kmock.Request) -> JSON:
        info = self._info(request)
        if request.subresource:
            raise self._no_subresource(request)
        matches = self._matcher(request)
        items = [obj for key, obj in self._live(request.resource) if matches(obj)]
        items.sort(key=lambda obj: (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
        return {
            "apiVersion": api_version(request.resource),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        # A plain function: errors in the parameters become HTTP errors before the stream starts.
        self._info(request)
        matches = self._matcher(request)
        since = request.params.get("resourceVersion", "")
        if since not in ("", "0") and not since.isdigit():
            raise api_error(400, "BadRequest", f"invalid resourceVersion {since!r}")
        timeout = float(request.params.get("timeoutSeconds", "inf"))
        return self._watch(request, matches, since, timeout)

    async def _watch(
        self, request: kmock.Request, matches: Matcher, since: str, timeout: float
    ) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        yield b""  # kmock sends the response headers with the first chunk
        if since in ("", "0"):  # "from now", after a synthetic ADDED for what exists
            cursor = len(self._changes)
            existing = [obj for key, obj in self._live(request.resource) if matches(obj)]
            for obj in existing:
                yield {"type": "ADDED", "object": obj}
            if request.params.get("sendInitialEvents") == "true":
                yield self._initial_events_end(request.resource)
        else:
            revisions = [change.revision for change in self._changes]
            cursor = bisect.bisect_right(revisions, int(since))
        while True:
            while cursor < len(self._changes):
                change = self._changes[cursor]
                cursor += 1
                if change.resource == request.resource and (event := _event(change, matches)):
                    yield event
            remaining = deadline - loop.time()
            transport = request._raw_request.transport if request._raw_request else None
            if remaining <= 0 or transport is None or transport.is_closing():
                return  # aiohttp does not cancel handlers of dropped connections: poll for it
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, 0.2))

    def _initial_events_end(self, resource: kmock.resource) -> JSON:
        annotations = {"k8s.io/initial-events-end": "true"}
        metadata = {"resourceVersion": str(self._revision), "annotations": annotations}
        return {
            "type": "BOOKMARK",
            "object": {"apiVersion": api_version(resource), "metadata": metadata},
        }

    # -- writing --------------------------------------------------------------------------------

    async def _serve_create(self, request: kmock.Request) -> kmock.Response:
        info = self._info(request)
        if not isinstance(request.data, Mapping):
            raise api_error(400, "BadRequest", "the request body must be a JSON object")
        body = copy.deepcopy(dict(request.data))
        meta = body.setdefault("metadata", {})
        namespace = None
        if info.namespaced:
            namespace = request.namespace or meta.get("namespace")
            if not namespace or meta.get("namespace", namespace) != namespace:
                raise api_error(400, "BadRequest", "the namespace is missing or not the URL's")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice(NAME_ALPHABET) for _ in range(5)
            )
        if not meta.get("name"):
            raise api_error(422, "Invalid", "metadata.name or metadata.generateName is required")
        key = (request.resource, namespace, meta["name"])
        if self._get(key) is not None:
            raise api_error(409, "AlreadyExists", f"{info.kind} {meta['name']!r} already exists")
        if "status" in info.subresources:
            body.pop("status", None)  # with a status subresource, only /status writes status
        for field in ("deletionTimestamp", "resourceVersion"):
            meta.pop(field, None)
        if namespace is not None:
            meta["namespace"] = namespace
        body.setdefault("apiVersion", api_version(request.resource))
        body.setdefault("kind", info.kind)
        return kmock.Response(status=201, payload=self._insert(key, body))

    async def _serve_update(self, request: kmock.Request) -> JSON:
        info = self._info(request)
        status_only = self._is_status(request, info)
        key, old = self._existing(request, info)
        content_type = _content_type(request)
        if content_type == JSON_PATCH:
            try:
                new = jsonpatch.apply_patch(copy.deepcopy(old), request.data)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise api_error(422, "Invalid", f"the JSON patch cannot be applied: {e}") from e
        elif content_type == STRATEGIC_MERGE_PATCH and request.resource in self._custom:
            raise api_error(415, "UnsupportedMediaType", "no strategic merge for custom resources")
        elif content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
            if not isinstance(request.data, Mapping):
                raise api_error(400, "BadRequest", "a merge patch must be a JSON object")
            self._check_version(request.data, old)
            new = merge_patch(old, request.data)
        else:
            raise api_error(415, "UnsupportedMediaType", f"unsupported patch: {content_type!r}")
        return self._update(key, info, old, new, status_only=status_only)

    async def _serve_replace(self, request: kmock.Request) -> JSON:
        info = self._info(request)
        if request.name is None:
            raise api_error(405, "MethodNotAllowed", "PUT needs an object name")
        status_only = self._is_status(request, info)
        key, old = self._existing(request, info)
        if not isinstance(request.data, Mapping):
            raise api_error(400, "BadRequest", "the request body must be a JSON object")
        self._check_version(request.data, old)
        return self._update(key, info, old, copy.deepcopy(dict(request.data)), status_only)

    async def _serve_delete(self, request: kmock.Request) -> JSON:
        info = self._info(request)
        if request.subresource:
            raise self._no_subresource(request)
        key, old = self._existing(request, info)
        options = request.data if isinstance(request.data, Mapping) else {}
        for field, expected in (options.get("preconditions") or {}).items():
            if expected is not None and old["metadata"].get(field) != expected:
                raise api_error(409, "Conflict", f"precondition failed: {field}={expected!r}")
        return self._delete(key, old)

    def _update(
        self, key: Key, info: kmock.ResourceInfo, old: JSON, new: Any, status_only: bool
    ) -> JSON:
        if not isinstance(new, Mapping):
            raise api_error(422, "Invalid", "the patched object is not a JSON object")
        if status_only:  # /status changes the status and nothing else
            new = {**old, "status": new["status"]} if "status" in new else _without(old)
        elif "status" in info.subresources:  # ... and the main resource cannot change it
            new = {**new, "status": old["status"]} if "status" in old else _without(new)
        meta = new["metadata"] = dict(new.get("metadata") or {})
        for field in SERVER_METADATA:
            meta.pop(field, None)
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
        meta.update(name=old["metadata"]["name"])
        if "namespace" in old["metadata"]:
            meta.update(namespace=old["metadata"]["namespace"])
        added = set(meta.get("finalizers", ())) - set(old["metadata"].get("finalizers", ()))
        if "deletionTimestamp" in meta and added:
            raise api_error(422, "Invalid", "no new finalizers can be added while deleting")
        if new == old:
            return old  # a no-op write changes no resourceVersion and notifies no watcher
        if _content(new) != _content(old):
            meta["generation"] = old["metadata"].get("generation", 0) + 1
        self._write(key, "MODIFIED", new, old)
        if "deletionTimestamp" in meta and not meta.get("finalizers"):
            self._remove(key, new)
        return new

    def _delete(self, key: Key, old: JSON) -> JSON:
        meta = old["metadata"]
        if meta.get("deletionTimestamp"):
            return old
        if not meta.get("finalizers"):
            return self._remove(key, old)
        new = copy.deepcopy(old)
        generation = meta.get("generation", 0) + 1
        new["metadata"].update(deletionTimestamp=now(), generation=generation)
        return self._write(key, "MODIFIED", new, old)

    def _remove(self, key: Key, old: JSON) -> JSON:
        gone = self._write(key, "DELETED", copy.deepcopy(old), old)
        self._collect_dependents(old["metadata"]["uid"])
        return gone

    def _collect_dependents(self, owner_uid: str) -> None:
        live = self._live(None)
        live_uids = {obj["metadata"]["uid"] for _, obj in live}
        for key, obj in live:
            owners = {ref["uid"] for ref in obj["metadata"].get("ownerReferences", ())}
            if owner_uid in owners and not owners & live_uids and (current := self._get(key)):
                self._delete(key, current)

    # -- storage --------------------------------------------------------------------------------

    def _insert(self, key: Key, body: JSON) -> JSON:
        body["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if key not in self.objects:
            self.objects[key] = []  # a re-created object continues its kmock history
        return self._write(key, "ADDED", body, None)

    def _write(self, key: Key, kind: str, body: JSON, old: JSON | None) -> JSON:
        self._revision += 1
        body["metadata"]["resourceVersion"] = str(self._revision)
        history = self.objects[key].history
        history.append(body)
        if kind == "DELETED":
            history.append(None)  # kmock's soft-deletion marker; the last state stays readable
        self._changes.append(Change(self._revision, key[0], kind, body, old))
        self._changed.set()
        self._changed = asyncio.Event()
        return body

    def _get(self, key: Key) -> JSON | None:
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].last.raw

    def _live(self, resource: kmock.resource | None) -> list[tuple[Key, JSON]]:
        return [
            (key, obj.last.raw)
            for key, obj in self.objects.items()
            if not obj.deleted and (resource is None or key[0] == resource)
        ]

    # -- request interpretation -----------------------------------------------------------------

    def _info(self, request: kmock.Request) -> kmock.ResourceInfo:
        if request.resource not in self.resources:
            raise api_error(404, "NotFound", f"the server does not serve {request.resource}")
        return self.resources[request.resource]

    def _is_status(self, request: kmock.Request, info: kmock.ResourceInfo) -> bool:
        if request.subresource is None:
            return False
        if request.subresource == "status" and "status" in info.subresources:
            return True
        raise self._no_subresource(request)

    def _no_subresource(self, request: kmock.Request) -> kmock.KubernetesError:
        return api_error(404, "NotFound", f"the emulator has no {request.subresource!r} here")

    def _existing(self, request: kmock.Request, info: kmock.ResourceInfo) -> tuple[Key, JSON]:
        key = (request.resource, request.namespace if info.namespaced else None, request.name)
        obj = self._get(key)
        if obj is None:
            raise api_error(404, "NotFound", f"{info.kind} {request.name!r} not found")
        return key, obj

    def _check_version(self, body: Mapping[str, Any], old: JSON) -> None:
        expected = (body.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != old["metadata"]["resourceVersion"]:
            raise api_error(409, "Conflict", "the object has been modified; apply to the latest")

    def _matcher(self, request: kmock.Request) -> Matcher:
        labels = parse_selector(request.params.get("labelSelector", ""), allow_sets=True)
        fields = parse_selector(request.params.get("fieldSelector", ""), allow_sets=False)

        def matches(obj: JSON) -> bool:
            meta = obj["metadata"]
            return (
                (request.namespace is None or meta.get("namespace") == request.namespace)
                and (request.name is None or meta["name"] == request.name)
                and labels((meta.get("labels") or {}).get)
                and fields(lambda path: field_value(obj, path))
            )

        return matches


def _event(change: Change, matches: Matcher) -> JSON | None:
    """What a selective watcher sees: objects entering or leaving its selection appear as such."""
    selected = matches(change.new)
    if change.type == "MODIFIED" and change.old is not None and matches(change.old) != selected:
        return {"type": "ADDED" if selected else "DELETED", "object": change.new}
    return {"type": change.type, "object": change.new} if selected else None


def _content(obj: JSON) -> JSON:
    """What metadata.generation counts: everything but metadata and status."""
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _without(obj: JSON, field: str = "status") -> JSON:
    return {key: value for key, value in obj.items() if key != field}


def _content_type(request: kmock.Request) -> str:
    headers = {name.lower(): value for name, value in request.headers.items()}
    return headers.get("content-type", "").split(";")[0].strip()
