"""Stand-in Kubernetes API server (loopback, stdlib ``http.server``) -- NOT a cluster.

It answers the subset of the Kubernetes REST API that ``cutover_lib._kube`` calls, with
bodies shaped like the API reference (``kind``, ``apiVersion``, ``metadata.resourceVersion``,
``Status`` objects for errors):

* ``GET/POST /api/v1/namespaces/{ns}/secrets`` and ``GET/PUT/PATCH .../secrets/{name}``
  (``PATCH`` only as server-side apply: ``application/apply-patch+yaml`` with ``fieldManager``)
* ``GET /apis/apps/v1/namespaces/{ns}/deployments[/{name}]``, and with ``?watch=true`` a
  streaming watch (one JSON event per line, ``timeoutSeconds`` honoured)
* ``GET /api/v1/namespaces/{ns}/pods`` (``labelSelector`` with ``k=v,...``)

Deployments are *scripted*: :meth:`KubeStandin.add_deployment` with ``converge_after=N``
makes one that converges after N ``MODIFIED`` events, ``converge_after=None`` one that never
does (its new pod waits in ``stuck_reason``, e.g. ``CrashLoopBackOff``).  Rollout progress
happens only while a watch is open -- a client that polls with plain GETs never sees it
converge, which is how the tests prove the adapter watches.  Every request is counted in
:attr:`KubeStandin.requests`.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
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
    """How a deployment rolls out: ``converge_after`` events, or stuck with ``stuck_reason``."""

    replicas: int
    converge_after: int | None
    stuck_reason: str
    step: int = 0


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
        self.scripts: dict[tuple[str, str], _Script] = {}
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
        """A deployment whose spec was just changed (generation 2, observedGeneration 1).

        ``converge_after=0``: already rolled out.  ``N``: converges after N watch events.
        ``None``: never converges; its new pod waits with ``stuck_reason``."""
        image = image or f"registry.stella-ops.internal/{name}:2025.09.2"
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "stellaops"}
        with self.lock:
            dep = {
                "kind": "Deployment", "apiVersion": "apps/v1",
                "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                             "resourceVersion": self._bump(), "generation": 2, "labels": dict(labels),
                             "creationTimestamp": _now()},
                "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                         "template": {"metadata": {"labels": dict(labels)},
                                      "spec": {"containers": [{"name": name.removeprefix("stellaops-"),
                                                               "image": image}]}},
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
            self.deployments[(namespace, name)] = dep
            self.scripts[(namespace, name)] = _Script(replicas, converge_after, stuck_reason)
            for i in range(replicas):
                self._pod(namespace, name, labels, image.replace("2025.09.2", "2025.09.1"), f"old{i}", None)
            if converge_after == 0:
                self._converge(namespace, name)

    def _pod(self, ns: str, dep: str, labels: dict[str, str], image: str, suffix: str,
             waiting: str | None) -> None:
        name = f"{dep}-7d9c5b-{suffix}"
        container = dep.removeprefix("stellaops-")
        state: dict[str, Any] = ({"waiting": {"reason": waiting, "message": f"back-off restarting {container}"}}
                                 if waiting else {"running": {"startedAt": _now()}})
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

    def _converge(self, ns: str, name: str) -> None:
        dep = self.deployments[(ns, name)]
        n = dep["spec"]["replicas"]
        dep["status"].update(observedGeneration=dep["metadata"]["generation"], replicas=n, updatedReplicas=n,
                             readyReplicas=n, availableReplicas=n)
        dep["status"].pop("unavailableReplicas", None)
        dep["status"]["conditions"][1]["reason"] = "NewReplicaSetAvailable"
        labels = dep["spec"]["selector"]["matchLabels"]
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        for key in [k for k in self.pods if k[0] == ns and k[1].startswith(f"{name}-7d9c5b-")]:
            del self.pods[key]
        for i in range(n):
            self._pod(ns, name, labels, image, f"new{i}", None)

    def advance(self, namespace: str) -> int:
        """One controller step for every scripted deployment in ``namespace``; returns events made."""
        made = 0
        with self.lock:
            for (ns, name), script in self.scripts.items():
                if ns != namespace:
                    continue
                dep = self.deployments[(ns, name)]
                st = dep["status"]
                if script.converge_after is None:
                    if script.step:
                        continue  # stuck: the controller has nothing new to report
                    labels = dep["spec"]["selector"]["matchLabels"]
                    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
                    self._pod(ns, name, labels, image, "new0", script.stuck_reason)
                    st.update(observedGeneration=2, replicas=script.replicas + 1, updatedReplicas=1,
                              availableReplicas=script.replicas, unavailableReplicas=1)
                elif script.step < script.converge_after:
                    if script.step + 1 == script.converge_after:
                        self._converge(ns, name)
                    else:
                        frac = (script.step + 1) / script.converge_after
                        st.update(observedGeneration=2, replicas=script.replicas + 1,
                                  updatedReplicas=max(1, math.floor(script.replicas * frac)),
                                  availableReplicas=script.replicas, unavailableReplicas=1)
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
            elif parts[:4] == ["apis", "apps", "v1", "namespaces"] and len(parts) >= 6 and parts[5] == "deployments":
                self._deployments(method, parts[4], parts[6] if len(parts) > 6 else None, query)
            elif url.path == "/version":
                self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-standin"})
            else:
                self._fail(404, "NotFound", "the server could not find the requested resource")
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
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype != "application/apply-patch+yaml" or not st.ssa_supported:
                    self._fail(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                                                            f"accepted media types include: application/json-patch+json")
                    return
                if not query.get("fieldManager"):
                    self._fail(400, "BadRequest", "PATCH, fieldManager is required for apply requests")
                    return
                existed = (ns, name) in st.secrets
                self._store(ns, name, body)
                self._send(200 if existed else 201, st.secrets[(ns, name)])
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
    """The stand-in Kubernetes API on a free loopback port; ``KUBECONFIG`` points at it."""
    state, server, thread = start(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(state.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    try:
        yield state
    finally:
        stop(state, server, thread)
