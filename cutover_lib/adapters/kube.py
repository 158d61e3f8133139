"""Kubernetes adapter: secret keys and staging secrets, on the ``kubernetes`` client.

The runbook's ``kubectl`` lines, done through the API:

=================================================  ===========================================
runbook                                            here
=================================================  ===========================================
4.1 secrets "contain the keys referenced"          :func:`secret_keys` (key *names* only)
secret refs ``k8s:NS/SECRET#KEY``                  :func:`read_secret_value`
=================================================  ===========================================

4.3's ``kubectl rollout status`` and ``kubectl get pods --watch`` are cells of the notebooks
(the ``kubectl`` CLI itself).

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
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CheckFailed, CutoverError, ParamsError, SecretError

__all__ = ["read_secret_value", "secret_keys"]

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
