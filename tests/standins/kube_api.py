"""Stand-in Kubernetes API server (loopback, stdlib ``http.server``) -- NOT a cluster.

It answers the subset of the Kubernetes REST API that ``cutover_lib.adapters.kube``, the kubectl stand-in
(tests/standins/bin/kubectl) and the helm stand-in (tests/standins/helm) call, with bodies shaped
like the API reference (``kind``, ``apiVersion``, ``metadata.resourceVersion``, ``generation``,
``Status`` objects for errors):

* ``GET/POST /api/v1/namespaces/{ns}/secrets`` and ``GET/PUT/PATCH/DELETE .../secrets/{name}``
* ``GET /apis/apps/v1/namespaces/{ns}/deployments[/{name}]``, and with ``?watch=true`` a
  streaming watch (one JSON event per line, ``timeoutSeconds`` honoured); ``PATCH`` and
  ``DELETE .../deployments/{name}``
* ``GET /api/v1/namespaces/{ns}/services|configmaps[/{name}]``, ``PATCH`` and ``DELETE`` of one:
  stored and served as applied (no endpoints, no kube-proxy: nothing routes to a Service)
* ``GET /api/v1/namespaces/{ns}/pods`` (``labelSelector`` with ``k=v,...``)

Every ``PATCH`` is server-side apply only (``application/apply-patch+yaml`` with ``fieldManager``),
which is how the helm stand-in applies the objects the real Helm library rendered.  The applied
configuration replaces the object's labels, annotations and ``spec`` (``data`` for a ConfigMap or
Secret): one field manager, no managed-field merging between managers.

Deployments roll out by *script*.  :meth:`KubeStandin.add_deployment` makes one whose spec was just
changed: ``converge_after=N`` converges after N ``MODIFIED`` events, ``converge_after=None`` never
does (its new pod waits in ``stuck_reason``, e.g. ``CrashLoopBackOff``).  The same script says how
the deployment rolls out when it is next *applied*: an apply that changes the spec gives the object
a new ``generation`` and starts a rollout of what was applied (image, replicas, labels,
annotations as rendered) by the first queued script -- add_deployment's, then each
:meth:`KubeStandin.next_rollout` for the apply after that; the last one holds for later applies.
A deployment no test scripted converges after one watch event.  add_deployment on a deployment an
apply wrote keeps the applied object and only scripts it (an unfinished rollout follows the new
script at once).  Rollout progress happens only while a watch is open -- a client that polls with
plain GETs never sees it converge, which is how the tests prove the adapter watches.  Every
request is counted in :attr:`KubeStandin.requests`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import math
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

TOKEN = "standin-bearer-token-5d1e"
CONTEXTS = ("stellaops-prod", "stellaops-stage", "standin")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details or {}, "code": code}


@dataclass
class _Script:
    """How a deployment rolls out: ``converge_after`` events, or stuck with ``stuck_reason``;
    ``rs_hash`` names the pods of the rollout (``NAME-HASH-newI``)."""

    converge_after: int | None
    stuck_reason: str
    rs_hash: str = "7d9c5b"
    step: int = 0

    def done(self) -> bool:
        return self.converge_after is not None and self.step >= self.converge_after


class ApiError(Exception):
    """A request the API refuses: answered as a ``Status`` object with ``code``."""

    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


@dataclass
class Requests:
    log: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def count(self, method: str, prefix: str = "", *, watch: bool | None = None) -> int:
        n = 0
        for m, path, query in self.log:
            is_watch = query.get("watch", "").lower() == "true"
            if m == method and path.startswith(prefix) and (watch is None or watch == is_watch):
                n += 1
        return n


class KubeStandin:
    """State of the stand-in API plus the scripting helpers tests call."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._rv = itertools.count(1000)
        self.resource_version = str(next(self._rv))
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.pod_owner: dict[tuple[str, str], str] = {}  # (ns, pod) -> its deployment
        self.scripts: dict[tuple[str, str], _Script] = {}  # the rollout in progress (or done)
        self.plans: dict[tuple[str, str], list[tuple[int | None, str]]] = {}  # how the next applies roll out
        self.last_plan: dict[tuple[str, str], tuple[int | None, str]] = {}  # ... and the later ones
        self.applied: set[tuple[str, str]] = set()  # deployments an apply wrote last
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, ns, name): services, configmaps
        self.events: list[tuple[int, str, dict[str, Any]]] = []  # (rv, type, object) of deployments
        self.requests = Requests()
        self.ssa_supported = True
        self.step_interval = 0.05
        self.stopping = threading.Event()
        self.url = ""
        self.kubeconfig: Path | None = None

    # ------------------------------------------------------------------ scripting
    def _bump(self) -> str:
        self.resource_version = str(next(self._rv))
        return self.resource_version

    def add_secret(self, name: str, data: dict[str, str], namespace: str = "stellaops",
                   type_: str = "Opaque") -> None:
        """Create a secret; ``data`` holds plain values (stored base64 like the API does)."""
        with self.lock:
            self.secrets[(namespace, name)] = {
                "kind": "Secret", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                             "resourceVersion": self._bump(), "creationTimestamp": _now()},
                "type": type_,
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }

    def secret_data(self, name: str, namespace: str = "stellaops") -> dict[str, str]:
        with self.lock:
            obj = self.secrets[(namespace, name)]
            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}

    def add_deployment(self, name: str, namespace: str = "stellaops", *, replicas: int = 2,
                       converge_after: int | None = 3, stuck_reason: str = "CrashLoopBackOff",
                       image: str | None = None) -> None:
        """A deployment whose spec was just changed (generation 2, observedGeneration 1), and how it
        rolls out when next applied.

        ``converge_after=0``: already rolled out.  ``N``: converges after N watch events.
        ``None``: never converges; its new pod waits with ``stuck_reason``.  On a deployment an
        apply wrote, the applied object stays (``replicas`` and ``image`` are not used): only the
        script changes, for the next apply and for a rollout still unfinished."""
        key = (namespace, name)
        with self.lock:
            self.plans[key] = [(converge_after, stuck_reason)]
            if key in self.applied and key in self.deployments:
                if not self.scripts[key].done():
                    self.scripts[key] = _Script(converge_after, stuck_reason, self.scripts[key].rs_hash)
                    if converge_after == 0:
                        self._converge(namespace, name)
                return
            self.applied.discard(key)
            image = image or f"registry.stella-ops.internal/{name}:2025.09.2"
            labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "stellaops"}
            container = name.removeprefix("stellaops-")
            dep = {
                "kind": "Deployment", "apiVersion": "apps/v1",
                "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                             "resourceVersion": self._bump(), "generation": 2, "labels": dict(labels),
                             "creationTimestamp": _now()},
                "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                         "template": {"metadata": {"labels": dict(labels)},
                                      "spec": {"containers": [{"name": container, "image": image}]}},
                         "strategy": {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                         "progressDeadlineSeconds": 600},
                "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": 0,
                           "readyReplicas": replicas, "availableReplicas": replicas,
                           "conditions": [{"type": "Available", "status": "True",
                                           "reason": "MinimumReplicasAvailable"},
                                          {"type": "Progressing", "status": "True",
                                           "reason": "ReplicaSetUpdated"}]},
            }
            self._drop_pods(namespace, name)
            self.deployments[key] = dep
            self.scripts[key] = _Script(converge_after, stuck_reason)
            for i in range(replicas):
                self._pod(namespace, name, labels, container, image.replace("2025.09.2", "2025.09.1"),
                          f"7d9c5b-old{i}", None)
            if converge_after == 0:
                self._converge(namespace, name)

    def next_rollout(self, name: str, namespace: str = "stellaops", *, converge_after: int | None = 1,
                     stuck_reason: str = "CrashLoopBackOff") -> None:
        """Script one more apply of ``name``: the apply after the ones scripted so far rolls out
        like this (e.g. an upgrade that sticks, then the rollback that converges)."""
        with self.lock:
            self.plans.setdefault((namespace, name), []).append((converge_after, stuck_reason))

    def _pod(self, ns: str, dep: str, labels: dict[str, str], container: str, image: str, suffix: str,
             waiting: str | None) -> None:
        name = f"{dep}-{suffix}"
        state: dict[str, Any] = ({"waiting": {"reason": waiting, "message": f"back-off restarting {container}"}}
                                 if waiting else {"running": {"startedAt": _now()}})
        self.pod_owner[(ns, name)] = dep
        self.pods[(ns, name)] = {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                         "resourceVersion": self._bump(), "labels": dict(labels)},
            "spec": {"containers": [{"name": container, "image": image}]},
            "status": {"phase": "Pending" if waiting == "ImagePullBackOff" else "Running",
                       "conditions": [{"type": "Ready", "status": "False" if waiting else "True"}],
                       "containerStatuses": [{"name": container, "image": image, "imageID": "",
                                              "ready": not waiting, "restartCount": 4 if waiting else 0,
                                              "started": not waiting, "state": state,
                                              "lastState": ({"terminated": {"reason": "Error", "exitCode": 1}}
                                                            if waiting == "CrashLoopBackOff" else {})}]},
        }

    def _drop_pods(self, ns: str, dep: str) -> None:
        for key in [k for k, owner in self.pod_owner.items() if k[0] == ns and owner == dep]:
            self.pods.pop(key, None)
            del self.pod_owner[key]

    def _new_pod(self, ns: str, name: str, suffix: str, waiting: str | None) -> None:
        """A pod of the deployment's current template (its labels, first container and image)."""
        template = self.deployments[(ns, name)]["spec"]["template"]
        container = template["spec"]["containers"][0]
        self._pod(ns, name, (template.get("metadata") or {}).get("labels") or {}, container["name"],
                  container.get("image", ""), f"{self.scripts[(ns, name)].rs_hash}-{suffix}", waiting)

    def _converge(self, ns: str, name: str) -> None:
        dep = self.deployments[(ns, name)]
        n = dep["spec"]["replicas"]
        dep["status"].update(observedGeneration=dep["metadata"]["generation"], replicas=n, updatedReplicas=n,
                             readyReplicas=n, availableReplicas=n)
        dep["status"].pop("unavailableReplicas", None)
        dep["status"]["conditions"] = [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
        self._drop_pods(ns, name)
        for i in range(n):
            self._new_pod(ns, name, f"new{i}", None)

    # ------------------------------------------------------------------ applies (server-side apply)
    def apply_deployment(self, ns: str, name: str, body: dict[str, Any], manager: str) -> tuple[int, dict[str, Any]]:
        """Server-side apply of a Deployment: (HTTP code, the stored object).  A changed spec is a new
        generation whose rollout follows the next script (see the module docstring)."""
        meta = body.get("metadata") or {}
        if body.get("apiVersion") != "apps/v1" or body.get("kind") != "Deployment":
            raise ApiError(400, "BadRequest", f"the API version in the data ({body.get('apiVersion')}) does not match "
                                              f"the expected API version (apps/v1)")
        if meta.get("name") != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')}) does not match the name "
                                              f"on the URL ({name})")
        if meta.get("namespace") not in (None, ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                              "sent on the request")
        spec = copy.deepcopy(body.get("spec") or {})
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector or any(tlabels.get(k) != v for k, v in selector.items()):
            raise ApiError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.template.metadata.labels: '
                                           f"Invalid value: {json.dumps(tlabels)}: `selector` does not match "
                                           f"template `labels`", name=name, group="apps", kind="Deployment")
        if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
            raise ApiError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.template.spec.containers: '
                                           f"Required value", name=name, group="apps", kind="Deployment")
        spec.setdefault("replicas", 1)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        key = (ns, name)
        with self.lock:
            cur = self.deployments.get(key)
            if cur is not None and cur["spec"]["selector"] != spec["selector"]:
                raise ApiError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.selector: Invalid value: '
                                               f"{json.dumps(spec['selector'])}: field is immutable",
                               name=name, group="apps", kind="Deployment")
            new_meta = {k: copy.deepcopy(meta[k]) for k in ("labels", "annotations") if meta.get(k)}
            managed = [{"manager": manager, "operation": "Apply", "apiVersion": "apps/v1", "time": _now(),
                        "fieldsType": "FieldsV1"}]
            dep: dict[str, Any]
            if cur is None:
                dep = {"kind": "Deployment", "apiVersion": "apps/v1",
                       "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()), "generation": 1,
                                    "creationTimestamp": _now(), **new_meta, "managedFields": managed},
                       "spec": spec, "status": {}}
                changed, code = True, 201
            else:
                dep = cur
                old_meta = {k: cur["metadata"].get(k) for k in ("labels", "annotations") if cur["metadata"].get(k)}
                changed, code = cur["spec"] != spec, 200
                if not changed and old_meta == new_meta and key in self.applied:
                    return 200, cur  # a no-op apply: no new resourceVersion (like the real API)
                for k in ("labels", "annotations"):
                    dep["metadata"].pop(k, None)
                dep["metadata"].update(new_meta, managedFields=managed)
                if changed:
                    dep["spec"] = spec
                    dep["metadata"]["generation"] = int(dep["metadata"].get("generation") or 1) + 1
            self.deployments[key] = dep
            self.applied.add(key)
            if changed:
                plans = self.plans.get(key)
                if plans:
                    self.last_plan[key] = plans.pop(0)
                converge_after, stuck = self.last_plan.get(key, (1, "CrashLoopBackOff"))
                rs = hashlib.sha256(json.dumps(spec["template"], sort_keys=True).encode()).hexdigest()[:6]
                self.scripts[key] = _Script(converge_after, stuck, rs)
                if converge_after == 0:
                    self._converge(ns, name)
            dep["metadata"]["resourceVersion"] = self._bump()
            self.events.append((int(self.resource_version), "ADDED" if cur is None else "MODIFIED",
                                json.loads(json.dumps(dep))))
            self.changed.notify_all()
            return code, dep

    def delete_deployment(self, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            dep = self.deployments.pop((ns, name), None)
            if dep is None:
                raise ApiError(404, "NotFound", f'deployments.apps "{name}" not found', name=name, group="apps",
                               kind="deployments")
            self.scripts.pop((ns, name), None)
            self.applied.discard((ns, name))
            self._drop_pods(ns, name)
            dep["metadata"]["resourceVersion"] = self._bump()
            self.events.append((int(self.resource_version), "DELETED", json.loads(json.dumps(dep))))
            self.changed.notify_all()
            return dep

    def apply_object(self, plural: str, ns: str, name: str, body: dict[str, Any], manager: str) -> tuple[int, dict[str, Any]]:
        """Server-side apply of a Service or ConfigMap: stored and served as applied."""
        kind = {"services": "Service", "configmaps": "ConfigMap"}[plural]
        meta = body.get("metadata") or {}
        if body.get("apiVersion") != "v1" or body.get("kind") != kind:
            raise ApiError(400, "BadRequest", f"the API version in the data ({body.get('apiVersion')}) does not match "
                                              f"the expected API version (v1)")
        if meta.get("name") != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')}) does not match the name "
                                              f"on the URL ({name})")
        with self.lock:
            cur = self.objects.get((plural, ns, name))
            obj: dict[str, Any] = {"kind": kind, "apiVersion": "v1",
                   "metadata": {"name": name, "namespace": ns,
                                "uid": cur["metadata"]["uid"] if cur else str(uuid.uuid4()),
                                "creationTimestamp": cur["metadata"]["creationTimestamp"] if cur else _now(),
                                **{k: copy.deepcopy(meta[k]) for k in ("labels", "annotations") if meta.get(k)},
                                "managedFields": [{"manager": manager, "operation": "Apply", "apiVersion": "v1",
                                                   "time": _now(), "fieldsType": "FieldsV1"}]}}
            if kind == "Service":
                spec = copy.deepcopy(body.get("spec") or {})
                spec.setdefault("type", "ClusterIP")
                spec["clusterIP"] = (cur or {}).get("spec", {}).get("clusterIP") or \
                    f"10.96.{len(self.objects) // 250}.{len(self.objects) % 250 + 2}"
                for port in spec.get("ports") or []:
                    port.setdefault("protocol", "TCP")
                obj["spec"] = spec
            else:
                obj["data"] = copy.deepcopy(body.get("data") or {})
            obj["metadata"]["resourceVersion"] = self._bump()
            self.objects[(plural, ns, name)] = obj
            return (200 if cur else 201), obj

    # ------------------------------------------------------------------ controller
    def advance(self, namespace: str) -> int:
        """One controller step for every scripted deployment in ``namespace``; returns events made."""
        made = 0
        with self.lock:
            for (ns, name), script in self.scripts.items():
                if ns != namespace:
                    continue
                dep = self.deployments[(ns, name)]
                st = dep["status"]
                replicas = dep["spec"]["replicas"]
                old = sum(1 for k, owner in self.pod_owner.items()
                          if k[0] == ns and owner == name and not k[1].startswith(f"{name}-{script.rs_hash}-new"))
                if script.converge_after is None:
                    if script.step:
                        continue  # stuck: the controller has nothing new to report
                    self._new_pod(ns, name, "new0", script.stuck_reason)
                    st.update(observedGeneration=dep["metadata"]["generation"], replicas=old + 1, updatedReplicas=1,
                              availableReplicas=old, unavailableReplicas=1)
                elif script.step < script.converge_after:
                    if script.step + 1 == script.converge_after:
                        self._converge(ns, name)
                    else:
                        frac = (script.step + 1) / script.converge_after
                        st.update(observedGeneration=dep["metadata"]["generation"], replicas=old + 1,
                                  updatedReplicas=max(1, math.floor(replicas * frac)),
                                  availableReplicas=old, unavailableReplicas=1)
                else:
                    continue
                script.step += 1
                dep["metadata"]["resourceVersion"] = self._bump()
                self.events.append((int(self.resource_version), "MODIFIED", json.loads(json.dumps(dep))))
                made += 1
            if made:
                self.changed.notify_all()
        return made

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            self.changed.notify_all()


def _selector_match(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (selector or "").split(",")):
        k, _, v = term.partition("=")
        if labels.get(k.strip()) != v.strip().lstrip("="):
            return False
    return True


def _field_match(selector: str, obj: dict[str, Any]) -> bool:
    for term in filter(None, (selector or "").split(",")):
        k, _, v = term.partition("=")
        if k == "metadata.name" and obj["metadata"]["name"] != v:
            return False
        if k == "metadata.namespace" and obj["metadata"]["namespace"] != v:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"  # keep-alive like the real server; watches stream chunked

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # ------------------------------------------------------------------ plumbing
    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, code: int, reason: str, message: str, **details: Any) -> None:
        self._send(code, status_body(code, reason, message, details))

    def _route(self, method: str) -> None:
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        with st.lock:
            st.requests.log.append((method, url.path, query))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._fail(401, "Unauthorized", "Unauthorized")
            return
        parts = url.path.strip("/").split("/")
        try:
            if parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 5 and parts[4] == "secrets":
                self._secrets(method, parts[3], parts[5] if len(parts) > 5 else None, query)
            elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "pods":
                self._pods(method, parts[3], query)
            elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) in (5, 6) and \
                    parts[4] in ("services", "configmaps"):
                self._objects(method, parts[4], parts[3], parts[5] if len(parts) > 5 else None, query)
            elif parts[:4] == ["apis", "apps", "v1", "namespaces"] and len(parts) >= 6 and parts[5] == "deployments":
                self._deployments(method, parts[4], parts[6] if len(parts) > 6 else None, query)
            elif url.path == "/version":
                self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-standin"})
            else:
                self._fail(404, "NotFound", "the server could not find the requested resource")
        except ApiError as exc:
            self._fail(exc.code, exc.reason, exc.message, **exc.details)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def _apply_manager(self, query: dict[str, str]) -> str:
        """The field manager of a server-side apply; anything else is refused like the API does."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/apply-patch+yaml" or not self.server.state.ssa_supported:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                                        "accepted media types include: application/json-patch+json")
        if not query.get("fieldManager"):
            raise ApiError(400, "BadRequest", "PATCH, fieldManager is required for apply requests")
        return query["fieldManager"]

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return yaml.safe_load(raw.decode()) if raw else None

    # ------------------------------------------------------------------ secrets
    def _secrets(self, method: str, ns: str, name: str | None, query: dict[str, str]) -> None:
        st = self.server.state
        with st.lock:
            if method == "GET" and name:
                obj = st.secrets.get((ns, name))
                if obj is None:
                    self._fail(404, "NotFound", f'secrets "{name}" not found', name=name, kind="secrets")
                else:
                    self._send(200, obj)
                return
            body = self._body()
            if method == "POST" and name is None:
                name = body["metadata"]["name"]
                if (ns, name) in st.secrets:
                    self._fail(409, "AlreadyExists", f'secrets "{name}" already exists', name=name, kind="secrets")
                    return
                self._store(ns, name, body)
                self._send(201, st.secrets[(ns, name)])
                return
            if method == "PUT" and name:
                cur = st.secrets.get((ns, name))
                if cur is None:
                    self._fail(404, "NotFound", f'secrets "{name}" not found', name=name, kind="secrets")
                    return
                want_rv = (body.get("metadata") or {}).get("resourceVersion")
                if want_rv and want_rv != cur["metadata"]["resourceVersion"]:
                    self._fail(409, "Conflict", f'Operation cannot be fulfilled on secrets "{name}": the object '
                                                "has been modified; please apply your changes to the latest version "
                                                "and try again", name=name, kind="secrets")
                    return
                self._store(ns, name, body)
                self._send(200, st.secrets[(ns, name)])
                return
            if method == "PATCH" and name:
                self._apply_manager(query)
                existed = (ns, name) in st.secrets
                self._store(ns, name, body)
                self._send(200 if existed else 201, st.secrets[(ns, name)])
                return
            if method == "DELETE" and name:
                if st.secrets.pop((ns, name), None) is None:
                    self._fail(404, "NotFound", f'secrets "{name}" not found', name=name, kind="secrets")
                else:
                    self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                     "details": {"name": name, "kind": "secrets"}})
                return
        self._fail(405, "MethodNotAllowed", f"{method} is not supported here")

    def _store(self, ns: str, name: str, body: dict[str, Any]) -> None:
        st = self.server.state
        data = dict(body.get("data") or {})
        for k, v in (body.get("stringData") or {}).items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        cur = st.secrets.get((ns, name))
        meta = dict(body.get("metadata") or {})
        new = {"kind": "Secret", "apiVersion": "v1",
               "metadata": {"name": name, "namespace": ns,
                            "uid": cur["metadata"]["uid"] if cur else str(uuid.uuid4()),
                            "creationTimestamp": cur["metadata"]["creationTimestamp"] if cur else _now(),
                            **{k: v for k, v in meta.items() if k in ("labels", "annotations")}},
               "type": body.get("type") or (cur or {}).get("type") or "Opaque", "data": data}
        if cur and {k: cur.get(k) for k in ("type", "data")} == {k: new.get(k) for k in ("type", "data")} and \
                cur["metadata"].get("labels") == new["metadata"].get("labels") and \
                cur["metadata"].get("annotations") == new["metadata"].get("annotations"):
            return  # a no-op write does not bump resourceVersion (like the real API)
        new["metadata"]["resourceVersion"] = st._bump()
        st.secrets[(ns, name)] = new

    # ------------------------------------------------------------------ pods
    def _pods(self, method: str, ns: str, query: dict[str, str]) -> None:
        st = self.server.state
        with st.lock:
            items = [p for (pns, _), p in sorted(st.pods.items())
                     if pns == ns and _selector_match(query.get("labelSelector", ""), p["metadata"]["labels"])]
            self._send(200, {"kind": "PodList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": st.resource_version}, "items": items})

    # ------------------------------------------------------------------ deployments
    def _deployments(self, method: str, ns: str, name: str | None, query: dict[str, str]) -> None:
        st = self.server.state
        if query.get("watch", "").lower() in ("true", "1"):
            self._watch(ns, name, query)
            return
        if method == "PATCH" and name:
            code, applied = st.apply_deployment(ns, name, self._body() or {}, self._apply_manager(query))
            self._send(code, applied)
            return
        if method == "DELETE" and name:
            self._send(200, st.delete_deployment(ns, name))
            return
        if method != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
        with st.lock:
            if name:
                obj = st.deployments.get((ns, name))
                if obj is None:
                    self._fail(404, "NotFound", f'deployments.apps "{name}" not found', name=name,
                               group="apps", kind="deployments")
                else:
                    self._send(200, obj)
                return
            items = [d for (dns, _), d in sorted(st.deployments.items())
                     if dns == ns and _field_match(query.get("fieldSelector", ""), d)
                     and _selector_match(query.get("labelSelector", ""), d["metadata"]["labels"])]
            self._send(200, {"kind": "DeploymentList", "apiVersion": "apps/v1",
                             "metadata": {"resourceVersion": st.resource_version}, "items": items})

    # ------------------------------------------------------------------ services, configmaps
    def _objects(self, method: str, plural: str, ns: str, name: str | None, query: dict[str, str]) -> None:
        st = self.server.state
        kind = {"services": "Service", "configmaps": "ConfigMap"}[plural]
        if method == "PATCH" and name:
            code, applied = st.apply_object(plural, ns, name, self._body() or {}, self._apply_manager(query))
            self._send(code, applied)
            return
        with st.lock:
            if method == "GET" and name is None:
                items = [o for (p, ons, _), o in sorted(st.objects.items()) if p == plural and ons == ns
                         and _selector_match(query.get("labelSelector", ""), o["metadata"].get("labels") or {})]
                self._send(200, {"kind": f"{kind}List", "apiVersion": "v1",
                                 "metadata": {"resourceVersion": st.resource_version}, "items": items})
                return
            obj = st.objects.get((plural, ns, name or ""))
            if obj is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found', name=name, kind=plural)
            if method == "GET":
                self._send(200, obj)
            elif method == "DELETE":
                del st.objects[(plural, ns, name or "")]
                self._send(200, obj)
            else:
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    def _watch(self, ns: str, name: str | None, query: dict[str, str]) -> None:
        st = self.server.state
        timeout = float(query.get("timeoutSeconds") or 30)
        deadline = time.monotonic() + timeout
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True

        def wanted(obj: dict[str, Any]) -> bool:
            return obj["metadata"]["namespace"] == ns and (name is None or obj["metadata"]["name"] == name) \
                and _field_match(query.get("fieldSelector", ""), obj)

        def send(kind: str, obj: dict[str, Any]) -> None:
            line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        rv_text = query.get("resourceVersion", "")
        with st.lock:
            if rv_text in ("", "0"):  # "start at most recent": synthetic ADDED for what exists
                pending = [("ADDED", json.loads(json.dumps(d))) for d in st.deployments.values() if wanted(d)]
                since = int(st.resource_version)
            else:
                pending = []
                since = int(rv_text)
        for kind, obj in pending:
            send(kind, obj)
        while not st.stopping.is_set() and time.monotonic() < deadline:
            with st.lock:
                new = [(rv, kind, obj) for rv, kind, obj in st.events if rv > since and wanted(obj)]
                if not new:
                    st.changed.wait(timeout=min(st.step_interval, max(0.0, deadline - time.monotonic())))
            for rv, kind, obj in new:
                send(kind, obj)
                since = max(since, rv)
            if not new:
                st.advance(ns)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: KubeStandin


def write_kubeconfig(path: Path, url: str, token: str = TOKEN) -> Path:
    """A kubeconfig with the contexts the params files name, all pointing at ``url``."""
    doc = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "standin", "cluster": {"server": url}}],
        "users": [{"name": "standin", "user": {"token": token}}],
        "contexts": [{"name": c, "context": {"cluster": "standin", "user": "standin", "namespace": "stellaops"}}
                     for c in CONTEXTS],
        "current-context": "standin",
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def start(tmp_path: Path) -> tuple[KubeStandin, _Server, threading.Thread]:
    state = KubeStandin()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="kube-api-standin", daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    state.kubeconfig = write_kubeconfig(tmp_path / "kubeconfig-standin.yaml", state.url)
    return state, server, thread


def stop(state: KubeStandin, server: _Server, thread: threading.Thread) -> None:
    state.stop()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def kube_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeStandin]:
    """The stand-in Kubernetes API on a free loopback port; ``KUBECONFIG`` points at it.

    ``HELM_STANDIN_PYTHON`` names this interpreter (it has the real Helm library, ``helm_python``)
    for the helm stand-in, which renders with that library and applies the result here."""
    state, server, thread = start(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(state.kubeconfig))
    monkeypatch.setenv("HELM_STANDIN_PYTHON", sys.executable)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    try:
        yield state
    finally:
        stop(state, server, thread)
