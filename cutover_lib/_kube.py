"""Kubernetes adapter: secret keys, staging secrets, rollout watch and pods, on the ``kubernetes`` client.

The runbook's ``kubectl`` lines, done through the API:

=================================================  ===========================================
runbook                                            here
=================================================  ===========================================
4.1 secrets "contain the keys referenced"          :func:`secret_keys` (key *names* only)
secret refs ``k8s:NS/SECRET#KEY``                  :func:`read_secret_value`
3 ``kubectl apply -f secrets/stage/*.yaml``        :func:`apply_secrets` (server-side apply)
4.3 ``kubectl rollout status deployment/<svc>``    :func:`wait_rollout` (a watch, not a poll)
4.3 ``kubectl get pods -n stellaops --watch``      :func:`list_pods` (evidence)
=================================================  ===========================================

Configuration: the kubeconfig named by ``KUBECONFIG`` (or ``~/.kube/config``) with the
context from params (``deploy.helm.kube_context``); inside a pod without a kubeconfig, the
in-cluster service account.  The ``kubernetes`` package is imported inside the functions
(it is heavy; ``cutover --help`` must stay instant).

Secret values: responses that carry secrets are read raw (``_preload_content=False``), so
the client never logs or models them; only key names leave this module, except from
:func:`read_secret_value`, whose caller registers the value with the masker.

Errors are mapped here, at the edge: configuration problems (no kubeconfig, unknown
context) -> :class:`ParamsError`; what the cluster says or an unreachable API ->
:class:`CheckFailed`; anything on the way to a secret *value* -> :class:`SecretError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import CheckFailed, CutoverError, ParamsError, SecretError

__all__ = ["FIELD_MANAGER", "RolloutResult", "apply_secrets", "list_pods", "load_secret_manifests",
           "read_secret_value", "secret_keys", "wait_rollout"]

FIELD_MANAGER = "stellaops-cutover"
_SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


# --------------------------------------------------------------------------- client and errors

def _which(context: str | None) -> str:
    return f"kube_context '{context}'" if context else "the kubeconfig's current context"


def _config_error(message: str, hint: str, for_secret: bool) -> CutoverError:
    return SecretError(message, hint=hint) if for_secret else ParamsError([message], hint=hint)


@contextmanager
def _client(context: str | None, *, for_secret: bool = False) -> Iterator[tuple[Any, str]]:
    """An ``ApiClient`` for ``context`` and the API server URL; closed (sockets too) on exit."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    raw = os.environ.get("KUBECONFIG") or "~/.kube/config"
    files = [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]
    have_file = any(Path(p).is_file() for p in files)
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and Path(_SA_TOKEN).is_file()
    if not have_file and in_pod:
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except ConfigException as exc:
            raise _config_error(f"in-cluster Kubernetes config is unusable: {exc}",
                                "check the pod's service account token mount", for_secret) from exc
        api = client.ApiClient(cfg)
    elif not have_file:
        raise _config_error(f"no kubeconfig found ({raw} does not exist) and not running inside a pod",
                            "set KUBECONFIG to the cluster's kubeconfig, or create ~/.kube/config", for_secret)
    else:
        try:
            api = config.new_client_from_config(config_file=os.pathsep.join(files), context=context,
                                                persist_config=False)
        except ConfigException as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = (f"kubectl config get-contexts; fix deploy.helm.kube_context in params or KUBECONFIG ({raw})"
                    if context else f"fix the kubeconfig at {raw}")
            raise _config_error(f"cannot use {_which(context)} from {raw}: {text}", hint, for_secret) from exc
    try:
        yield api, str(api.configuration.host)
    finally:
        api.close()


def _reason(exc: BaseException) -> str:
    """A short, human reason for a transport failure (``connection refused``, ``timed out``...)."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = getattr(cur, "reason", None) if isinstance(getattr(cur, "reason", None), BaseException) \
            else (cur.__cause__ or cur.__context__)
    text = " ".join(str(e) for e in seen).lower()
    kinds = {type(e).__name__ for e in seen}
    if "ConnectionRefusedError" in kinds or "refused" in text:
        return "connection refused"
    if kinds & {"ReadTimeoutError", "ConnectTimeoutError", "TimeoutError", "socket.timeout"} or "timed out" in text:
        return "timed out"
    if "NameResolutionError" in kinds or "name or service not known" in text or "nodename nor servname" in text:
        return "the host name does not resolve"
    if kinds & {"SSLError", "SSLCertVerificationError"}:
        return "TLS handshake failed (certificate not trusted for this server?)"
    last = seen[-1]
    return f"{type(last).__name__}: {str(last)[:160]}"


def _status_message(exc: Any) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    return str(body.get("message") or exc.reason or "").strip()


def _failure(exc: BaseException, *, what: str, server: str, context: str | None, namespace: str,
             verb: str, resource: str, for_secret: bool = False) -> CutoverError:
    """Map a client or transport error while doing ``what`` to one of ours (message + fix hint)."""
    from kubernetes.client import ApiException

    cls = SecretError if for_secret else CheckFailed
    flag = f" --context {context}" if context else ""
    if isinstance(exc, ApiException):
        status, msg = exc.status, _status_message(exc)
        if status == 401:
            return cls(f"the Kubernetes API at {server} rejected the credentials of {_which(context)} "
                       f"(HTTP 401 Unauthorized) while trying to {what}",
                       hint=f"log in again or refresh the token for that context (kubectl{flag} get ns)")
        if status == 403:
            return cls(f"{_which(context)} may not {what} (HTTP 403 Forbidden: {msg})",
                       hint=f"ask for RBAC: kubectl auth can-i {verb} {resource} -n {namespace}{flag}")
        return cls(f"the Kubernetes API at {server} answered HTTP {status} {exc.reason or ''} to "
                   f"{what}: {msg}".replace("  ", " "), hint=None)
    where = f"kube_context '{context}' in params" if context else "the kubeconfig's current context"
    return cls(f"cannot reach the Kubernetes API at {server}: {_reason(exc)} while trying to {what}",
               hint=f"check {where}, the kubeconfig ({os.environ.get('KUBECONFIG') or '~/.kube/config'}) "
                    "and your VPN")


def _transport_errors() -> tuple[type[BaseException], ...]:
    import urllib3

    return (urllib3.exceptions.HTTPError, OSError)


def _raw(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call an API method without deserializing: the JSON body as a dict (never logged)."""
    resp = call(*args, _preload_content=False, **kwargs)
    try:
        return json.loads(resp.data or b"{}")
    finally:
        resp.release_conn()


def _api_errors() -> tuple[type[BaseException], ...]:
    from kubernetes.client import ApiException

    return (ApiException, *_transport_errors())


# --------------------------------------------------------------------------- secrets

def _fetch_secret(api: Any, server: str, namespace: str, name: str, context: str | None, timeout: float,
                  *, for_secret: bool) -> dict[str, Any] | None:
    """The raw secret, or ``None`` when it does not exist."""
    from kubernetes import client
    from kubernetes.client import ApiException

    try:
        return _raw(client.CoreV1Api(api).read_namespaced_secret, name, namespace, _request_timeout=float(timeout))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _failure(exc, what=f"read secret {namespace}/{name}", server=server, context=context,
                       namespace=namespace, verb="get", resource="secrets", for_secret=for_secret) from exc
    except _transport_errors() as exc:
        raise _failure(exc, what=f"read secret {namespace}/{name}", server=server, context=context,
                       namespace=namespace, verb="get", resource="secrets", for_secret=for_secret) from exc


def secret_keys(namespace: str, name: str, required: Sequence[str], *, context: str | None = None,
                timeout: float = 10) -> tuple[list[str], list[str]]:
    """``(present, missing)``: every key name the secret holds, and the ``required`` ones it lacks.

    Only key names are looked at (from ``data`` and ``stringData``); no value is kept, logged
    or returned.  A missing secret raises :class:`CheckFailed` naming namespace and secret."""
    with _client(context) as (api, server):
        obj = _fetch_secret(api, server, namespace, name, context, timeout, for_secret=False)
    if obj is None:
        raise CheckFailed(f"secret {namespace}/{name} does not exist ({_which(context)})",
                          hint=f"create it in namespace {namespace}, or fix the secret store's name/namespace "
                               "in params")
    present = sorted({*(obj.get("data") or {}), *(obj.get("stringData") or {})})
    del obj
    missing = [k for k in required if k not in present]
    return present, missing


def read_secret_value(namespace: str, name: str, key: str, *, context: str | None = None,
                      timeout: float = 10) -> str:
    """One key of a secret, base64-decoded (for ``k8s:NS/SECRET#KEY`` references).

    Any problem -- unreachable API, no such secret or key, not text -- is one clear
    :class:`SecretError` line.  The caller must register the value with the masker."""
    ref = f"k8s:{namespace}/{name}#{key}"
    with _client(context, for_secret=True) as (api, server):
        obj = _fetch_secret(api, server, namespace, name, context, timeout, for_secret=True)
    if obj is None:
        raise SecretError(f"secret {ref}: secret {namespace}/{name} does not exist ({_which(context)})",
                          hint=f"create it, or fix the reference (kubectl get secrets -n {namespace})")
    data = obj.get("data") or {}
    if key not in data:
        have = ", ".join(sorted(data)) or "no keys"
        raise SecretError(f"secret {ref}: {namespace}/{name} has no key {key!r} (it has: {have})",
                          hint="fix the key in the reference, or add it to the secret")
    try:
        return base64.b64decode(data[key], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise SecretError(f"secret {ref}: the value is not base64-encoded UTF-8 text",
                          hint="store the secret as text (kubectl create secret generic --from-literal)") from None


def load_secret_manifests(paths: Sequence[Path], namespace: str) -> list[dict[str, Any]]:
    """Read ``Secret`` manifests (multi-document YAML) into normalized apply bodies.

    ``stringData`` is folded into base64 ``data`` (so an apply compares like for like); a
    manifest in another namespace, a non-Secret, or a still-encrypted (sops) file is an error."""
    import yaml

    bodies: list[dict[str, Any]] = []
    for path in paths:
        try:
            docs = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d]
        except FileNotFoundError:
            raise CheckFailed(f"staging secret file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise CheckFailed(f"staging secret file {path} is not valid YAML ({type(exc).__name__})") from None
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "Secret" or doc.get("apiVersion") != "v1":
                raise CheckFailed(f"{path}: expected only v1 Secret objects, found "
                                  f"{doc.get('kind') if isinstance(doc, dict) else type(doc).__name__}")
            if "sops" in doc:
                raise CheckFailed(f"{path} is sops-encrypted", hint="decrypt it first, or set "
                                  "deploy.helm.secrets_plugin: true to let `helm secrets upgrade` do it")
            meta = doc.get("metadata") or {}
            name = meta.get("name")
            if not name:
                raise CheckFailed(f"{path}: a Secret without metadata.name")
            if meta.get("namespace") not in (None, namespace):
                raise CheckFailed(f"{path}: secret {name} is for namespace {meta['namespace']!r}, "
                                  f"not {namespace!r}", hint="fix the manifest or deploy.helm.namespace")
            data = {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
            for k, v in (doc.get("stringData") or {}).items():
                data[str(k)] = base64.b64encode(str(v).encode()).decode()
            out_meta: dict[str, Any] = {"name": name, "namespace": namespace}
            for extra in ("labels", "annotations"):
                if meta.get(extra):
                    out_meta[extra] = dict(meta[extra])
            bodies.append({"apiVersion": "v1", "kind": "Secret", "metadata": out_meta,
                           "type": doc.get("type") or "Opaque", "data": data})
    return bodies


def _same(want: dict[str, Any], have: dict[str, Any]) -> bool:
    """Does the live secret already hold what the manifest says?  (Compares; prints nothing.)"""
    hm, wm = have.get("metadata") or {}, want["metadata"]
    return ((have.get("data") or {}) == want["data"] and (have.get("type") or "Opaque") == want["type"]
            and all((hm.get(x) or {}).get(k) == v for x in ("labels", "annotations")
                    for k, v in (wm.get(x) or {}).items()))


def apply_secrets(paths: Sequence[Path], namespace: str, *, context: str | None = None,
                  timeout: float = 30) -> list[tuple[str, str]]:
    """Apply staging secrets: ``[("secret/NAME", "created" | "changed" | "unchanged"), ...]``.

    Server-side apply (field manager ``stellaops-cutover``, forced); against an API server
    without it (HTTP 415) a create or a replace at the read resourceVersion.  An unchanged
    secret is not written at all.  Values are compared, never shown."""
    from kubernetes import client
    from kubernetes.client import ApiException

    bodies = load_secret_manifests(paths, namespace)
    results: list[tuple[str, str]] = []
    with _client(context) as (api, server):
        core = client.CoreV1Api(api)
        for body in bodies:
            name = body["metadata"]["name"]
            have = _fetch_secret(api, server, namespace, name, context, timeout, for_secret=False)
            if have is not None and _same(body, have):
                results.append((f"secret/{name}", "unchanged"))
                continue
            what = f"apply secret {namespace}/{name}"
            try:
                try:
                    _raw(core.patch_namespaced_secret, name, namespace, body, field_manager=FIELD_MANAGER,
                         force=True, _content_type="application/apply-patch+yaml", _request_timeout=float(timeout))
                except ApiException as exc:
                    if exc.status != 415:
                        raise
                    if have is None:  # no server-side apply on this API server: create / replace
                        _raw(core.create_namespaced_secret, namespace, body, field_manager=FIELD_MANAGER,
                             _request_timeout=float(timeout))
                    else:
                        body = {**body, "metadata": {**body["metadata"],
                                                     "resourceVersion": have["metadata"]["resourceVersion"]}}
                        _raw(core.replace_namespaced_secret, name, namespace, body, field_manager=FIELD_MANAGER,
                             _request_timeout=float(timeout))
            except _api_errors() as exc:
                raise _failure(exc, what=what, server=server, context=context, namespace=namespace,
                               verb="patch", resource="secrets") from exc
            results.append((f"secret/{name}", "created" if have is None else "changed"))
            del have
    return results


# --------------------------------------------------------------------------- rollout

@dataclass
class RolloutResult:
    """What :func:`wait_rollout` saw.  ``not_converged`` maps each late deployment to its reasons."""

    namespace: str
    converged: list[str] = field(default_factory=list)
    not_converged: dict[str, list[str]] = field(default_factory=dict)
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    lists: int = 0
    watches: int = 0
    events: int = 0
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.not_converged

    def summary(self) -> str:
        done = ", ".join(f"{n} ({self.status[n]['updated']}/{self.status[n]['desired']})" for n in self.converged)
        if self.ok:
            return f"{len(self.converged)} deployments rolled out: {done}"
        late = "; ".join(f"{n}: {', '.join(r)}" for n, r in self.not_converged.items())
        return f"not converged after {self.duration_s:.0f}s: {late}" + (f" (rolled out: {done})" if done else "")


def _dep_status(obj: dict[str, Any]) -> dict[str, Any]:
    spec, st, meta = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    desired = spec.get("replicas", 1)
    row = {"desired": desired, "replicas": st.get("replicas") or 0, "updated": st.get("updatedReplicas") or 0,
           "available": st.get("availableReplicas") or 0, "generation": meta.get("generation") or 0,
           "observed_generation": st.get("observedGeneration") or 0}
    row["converged"] = (row["observed_generation"] >= row["generation"]
                        and row["updated"] == desired == row["replicas"] == row["available"])
    progressing: dict[str, Any] = next((c for c in st.get("conditions") or [] if c.get("type") == "Progressing"), {})
    row["deadline_exceeded"] = progressing.get("reason") == "ProgressDeadlineExceeded"
    row["selector"] = ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items())
    return row


def _describe(row: dict[str, Any]) -> str:
    text = (f"{row['updated']}/{row['desired']} updated, {row['available']} available, {row['replicas']} total, "
            f"observedGeneration {row['observed_generation']} of {row['generation']}")
    return text + (" (ProgressDeadlineExceeded)" if row["deadline_exceeded"] else "")


def wait_rollout(namespace: str, deployments: Sequence[str], *, timeout: float, context: str | None = None,
                 request_timeout: float = 10) -> RolloutResult:
    """Watch deployments until each has ``updatedReplicas == replicas == availableReplicas`` (== spec)
    and ``observedGeneration >= metadata.generation``, or ``timeout`` seconds pass.

    One list, then a watch from its resourceVersion (re-listed on 410 Gone or when the server
    ends the watch early).  Empty ``deployments``: every deployment in the namespace.  For each
    deployment that did not converge, the reasons name its status and its pods' waiting reasons
    (CrashLoopBackOff, ImagePullBackOff, ...)."""
    from kubernetes import client, watch
    from kubernetes.client import ApiException

    started = time.monotonic()
    deadline = started + timeout
    result = RolloutResult(namespace)
    objs: dict[str, dict[str, Any]] = {}
    wanted = list(deployments)

    def pending() -> list[str]:
        names = wanted or sorted(objs)
        return [n for n in names if n not in objs or not _dep_status(objs[n])["converged"]]

    def hopeless(names: list[str]) -> bool:
        return bool(names) and all(n in objs and _dep_status(objs[n])["deadline_exceeded"] for n in names)

    with _client(context) as (api, server):
        apps = client.AppsV1Api(api)

        def fail(exc: BaseException) -> CutoverError:
            return _failure(exc, what=f"watch deployments in namespace {namespace}", server=server,
                            context=context, namespace=namespace, verb="watch", resource="deployments")

        def relist() -> str:
            try:
                body = _raw(apps.list_namespaced_deployment, namespace, _request_timeout=float(request_timeout))
            except _api_errors() as exc:
                raise fail(exc) from exc
            result.lists += 1
            objs.clear()
            objs.update({d["metadata"]["name"]: d for d in body.get("items") or []})
            return str((body.get("metadata") or {}).get("resourceVersion") or "")

        rv = relist()
        while pending() and not hopeless(pending()) and (remaining := deadline - time.monotonic()) > 0:
            w = watch.Watch(return_type="object")
            result.watches += 1
            stream = w.stream(apps.list_namespaced_deployment, namespace, resource_version=rv,
                              timeout_seconds=max(1, math.ceil(remaining)),
                              _request_timeout=(float(request_timeout), remaining + float(request_timeout)))
            try:
                for event in stream:
                    obj = event["raw_object"]
                    result.events += 1
                    name = obj["metadata"]["name"]
                    rv = str(obj["metadata"].get("resourceVersion") or rv)
                    if event["type"] == "DELETED":
                        objs.pop(name, None)
                    else:
                        objs[name] = obj
                    left = pending()
                    if not left or hopeless(left) or time.monotonic() >= deadline:
                        break
            except ApiException as exc:
                if exc.status != 410:
                    raise fail(exc) from exc
                rv = relist()  # our resourceVersion expired: list again, watch from there
            except _transport_errors() as exc:
                if time.monotonic() < deadline - 1:
                    raise fail(exc) from exc
            finally:
                stream.close()

        for name in wanted or sorted(objs):
            if name not in objs:
                result.not_converged[name] = [f"deployment {name} not found in namespace {namespace}"]
                continue
            row = _dep_status(objs[name])
            result.status[name] = {k: v for k, v in row.items() if k != "selector"}
            if row["converged"]:
                result.converged.append(name)
                continue
            reasons = [_describe(row)]
            try:
                pods = _pods(api, namespace, row["selector"] or None, request_timeout)
            except _api_errors() as exc:
                reasons.append(f"pods not listed ({_reason(exc) if not isinstance(exc, ApiException) else exc.status})")
                pods = []
            for pod in pods:
                if pod["reasons"] or not pod["ready_all"]:
                    why = ", ".join(pod["reasons"]) or f"not ready ({pod['phase']})"
                    reasons.append(f"pod {pod['name']}: {why} ({pod['restarts']} restarts)")
            result.not_converged[name] = reasons
    result.duration_s = round(time.monotonic() - started, 3)
    return result


# --------------------------------------------------------------------------- pods

def _pod_row(pod: dict[str, Any]) -> dict[str, Any]:
    st, spec = pod.get("status") or {}, pod.get("spec") or {}
    statuses = st.get("containerStatuses") or []
    reasons: list[str] = []
    for cs in statuses:
        state, last = cs.get("state") or {}, cs.get("lastState") or {}
        for kind in ("waiting", "terminated"):
            reason = (state.get(kind) or {}).get("reason")
            if reason and reason not in reasons:
                reasons.append(reason)
        last_reason = (last.get("terminated") or {}).get("reason")
        if cs.get("restartCount") and last_reason and f"last exit: {last_reason}" not in reasons:
            reasons.append(f"last exit: {last_reason}")
    for cond in st.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason"):
            reasons.append(cond["reason"])
    if st.get("reason"):
        reasons.append(st["reason"])
    ready = sum(1 for cs in statuses if cs.get("ready"))
    total = len(spec.get("containers") or statuses)
    return {"name": pod["metadata"]["name"], "phase": st.get("phase") or "Unknown", "ready": f"{ready}/{total}",
            "ready_all": total > 0 and ready == total,
            "restarts": sum(int(cs.get("restartCount") or 0) for cs in statuses), "reasons": reasons,
            "image": ", ".join(c.get("image", "") for c in spec.get("containers") or []),
            "node": spec.get("nodeName")}


def _pods(api: Any, namespace: str, selector: str | None, timeout: float) -> list[dict[str, Any]]:
    from kubernetes import client

    kwargs: dict[str, Any] = {"_request_timeout": float(timeout)}
    if selector:
        kwargs["label_selector"] = selector
    body = _raw(client.CoreV1Api(api).list_namespaced_pod, namespace, **kwargs)
    return [_pod_row(p) for p in body.get("items") or []]


def list_pods(namespace: str, *, context: str | None = None, label_selector: str | None = None,
              timeout: float = 10) -> list[dict[str, Any]]:
    """Pods for evidence: ``name``, ``phase``, ``ready`` (``"1/1"``), ``restarts``, ``reasons``, ``image``."""
    with _client(context) as (api, server):
        try:
            return _pods(api, namespace, label_selector, timeout)
        except _api_errors() as exc:
            raise _failure(exc, what=f"list pods in namespace {namespace}", server=server, context=context,
                           namespace=namespace, verb="list", resource="pods") from exc
