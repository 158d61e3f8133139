"""Secret references and masking.

A params file never holds a secret, only a *reference* to one::

    env:NAME                     an environment variable of the process that uses it
    file:PATH                    the contents of a file (trailing newline stripped)
    k8s:NAMESPACE/SECRET#KEY     one key of a Kubernetes secret (read through the kube adapter)

A reference resolves only when a step uses it, inside the library.  Every value that
was ever resolved in this process is registered with the masker, and everything the
library writes (command lines, output, ledger records, notebook output, HTML) passes
through :func:`mask` first, so a value shows as ``***`` wherever it would appear.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import SecretError

__all__ = ["MASK", "SecretRef", "derived_forms", "is_reference", "mask", "mask_obj", "register_resolver",
           "register_secret"]

MASK = "***"

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _base64_cores(raw: bytes) -> set[str]:
    """The base64 (and URL-safe base64) characters that encode ``raw`` alone, at each of the three
    byte offsets it can have inside a longer encoded text."""
    cores = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            text = encode(b"\0" * shift + raw).decode()
            start, stop = -(-8 * shift // 6), 8 * (shift + len(raw)) // 6  # characters no other byte touches
            cores.add(text[start:stop])
    return cores


def derived_forms(value: str) -> set[str]:
    """The value and the forms a tool may print it in: URL-encoded, JSON-escaped, base64 at any
    offset; for a URI with credentials (``mongodb://user:PASS@host``) also its password (as
    written and decoded) and its ``user:password`` part."""
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), json.dumps(value)[1:-1]}
    forms |= _base64_cores(value.encode())
    try:
        parts = urllib.parse.urlsplit(value)
        password = parts.password
    except ValueError:
        password = None
    if password:
        if len(urllib.parse.unquote(password)) < 4:
            raise SecretError("the password in a secret URI is shorter than 4 characters",
                              hint="use a real credential; a short password cannot be masked when a tool prints it")
        forms |= {password, urllib.parse.unquote(password), f"{parts.username}:{password}"}
        forms |= _base64_cores(urllib.parse.unquote(password).encode())
    return {f for f in forms if len(f) >= 4}


def register_secret(value: str) -> None:
    """Remember a resolved value so that :func:`mask` hides it and its derived forms."""
    global _pattern
    if not value or len(value) < 4:
        # Too short to mask without destroying ordinary text; such a secret is a config error.
        if value:
            raise SecretError("a resolved secret is shorter than 4 characters",
                              hint="use a real credential; short values cannot be masked safely")
        return
    forms = derived_forms(value)
    with _lock:
        if forms <= _values:
            return
        _values.update(forms)
        alternatives = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in alternatives))


def mask(text: str) -> str:
    """Replace every registered secret value in ``text`` with ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def mask_obj(obj: Any) -> Any:
    """:func:`mask` applied to every string inside a JSON-like structure."""
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, dict):
        return {mask(str(k)): mask_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mask_obj(v) for v in obj]
    return obj


def _forget_all_for_tests() -> None:
    global _pattern
    with _lock:
        _values.clear()
        _pattern = None


_Resolver = Callable[[str], str]
_resolvers: dict[str, _Resolver] = {}


def register_resolver(scheme: str, resolver: _Resolver) -> None:
    """Plug in a secret store: ``resolver(rest_of_reference) -> value``."""
    _resolvers[scheme] = resolver


def _resolve_env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise SecretError(f"secret env:{name} is not set",
                          hint=f"export {name}=... in the shell that runs cutover")
    return value


def _resolve_file(path: str) -> str:
    p = Path(path).expanduser()
    try:
        return p.read_text(encoding="utf-8").rstrip("\n")
    except FileNotFoundError:
        raise SecretError(f"secret file:{path} does not exist",
                          hint="create it (mode 0600) or point the reference at the right file") from None
    except PermissionError:
        raise SecretError(f"secret file:{path} is not readable by this user",
                          hint=f"chmod 600 {path} and run cutover as its owner") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise SecretError(f"secret file:{path} cannot be read as text ({type(exc).__name__})",
                          hint="point the reference at a text file holding only the secret") from None


def _resolve_k8s(rest: str) -> str:
    m = re.fullmatch(r"([a-z0-9-]+)/([a-z0-9.-]+)#([A-Za-z0-9._-]+)", rest)
    if not m:
        raise SecretError(f"secret k8s:{rest} is not of the form k8s:NAMESPACE/SECRET#KEY")
    from ..adapters import kube as _kube  # lazy: the kubernetes client is heavy

    return _kube.read_secret_value(m.group(1), m.group(2), m.group(3))


register_resolver("env", _resolve_env)
register_resolver("file", _resolve_file)
register_resolver("k8s", _resolve_k8s)

_REF = re.compile(r"^(env|file|k8s):(.+)$")


def is_reference(text: str) -> bool:
    """Whether ``text`` is written as a secret reference (``env:NAME``, ``file:PATH``, ``k8s:...``)."""
    return _REF.match(text or "") is not None


class SecretRef:
    """A reference to a secret.  ``str()`` shows the reference; the value shows as ``***``."""

    __slots__ = ("base", "ref")

    def __init__(self, ref: str, base: Path | None = None) -> None:
        m = _REF.match(ref or "")
        if not m:
            # never echoed: what was written here may be the secret itself
            raise ValueError("expected a secret reference like env:NAME, file:PATH or k8s:NS/SECRET#KEY, got a "
                             f"value that is not one ({len(ref or '')} characters, not shown)")
        if m.group(1) == "k8s" and not re.fullmatch(r"[a-z0-9-]+/[a-z0-9.-]+#[A-Za-z0-9._-]+", m.group(2)):
            raise ValueError(f'expected k8s:NAMESPACE/SECRET#KEY, got "{ref}"')
        self.ref = ref
        self.base = base  # relative file: references resolve against this (the project root)

    @property
    def scheme(self) -> str:
        return self.ref.split(":", 1)[0]

    def resolve(self) -> str:
        """Read the value now and register it for masking.  Never print the result."""
        scheme, rest = self.ref.split(":", 1)
        if scheme == "file" and self.base is not None and not Path(rest).expanduser().is_absolute():
            rest = str(self.base / rest)
        value = _resolvers[scheme](rest)
        register_secret(value)
        return value

    def __str__(self) -> str:
        return self.ref

    def __repr__(self) -> str:
        return f"SecretRef({self.ref!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(self.ref)
