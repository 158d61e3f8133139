"""Environment parameters: loading, ``extends`` and overrides (the models are :mod:`.models`).

Merge order (later wins): the ``extends`` base file(s) < the environment file < ``-p
KEY=VALUE`` overrides from the command line.  Mappings merge key by key; lists and
scalars replace.  Files whose name starts with ``_`` are bases, not environments.  Where the
approvals are not waivable (prod), ``-p`` may change only :data:`RUNTIME_OVERRIDES`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import ParamsError
from .models import ComposeDeploy, ComposeNode, Environment, HelmDeploy, SecretStore, format_duration, parse_duration
from .schema import Problem, check, dump

__all__ = [
    "ComposeDeploy",
    "ComposeNode",
    "Environment",
    "RUNTIME_OVERRIDES",
    "HelmDeploy",
    "SecretStore",
    "available_environments",
    "format_duration",
    "load_environment",
    "params_digest",
    "parse_duration",
]


def available_environments(params_dir: Path) -> list[str]:
    return sorted(p.stem for p in params_dir.glob("*.yaml") if not p.name.startswith("_"))


#: PyYAML's safe loader in C (libyaml) when the wheel has it: 10x faster than the pure-Python one
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _pure_python_yaml_error(text: str) -> yaml.YAMLError:
    """The pure-Python loader's error for a document libyaml rejected: its wording is the one
    operators see documented (and the position is the same)."""
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return exc
    return yaml.YAMLError("malformed YAML")


def _read_yaml(path: Path, label: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError([f"{label}: file not found"]) from None
    except OSError as exc:
        raise ParamsError([f"{label}: cannot read ({exc.strerror})"]) from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader, libyaml's when present
    except yaml.YAMLError:
        error = _pure_python_yaml_error(text)
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ParamsError([f"{label}: {where}malformed YAML: {problem}"],
                          hint="fix the YAML syntax at that position") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError([f"{label}: expected a mapping at the top level, got {type(data).__name__}"])
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _load_chain(path: Path, params_dir: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    label = _label(path, params_dir)
    if path in seen:
        raise ParamsError([f"{label}: extends: cycle through " + " -> ".join(_label(p, params_dir) for p in seen + (path,))])
    data = _read_yaml(path, label)
    parent = data.pop("extends", None)
    layers: list[tuple[str, dict[str, Any]]] = []
    merged: dict[str, Any] = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise ParamsError([f"{label}: extends: expected a file name like _base.yaml"])
        ppath = (path.parent / parent).resolve()
        if not ppath.exists():
            raise ParamsError([f"{label}: extends: {parent} not found next to it"])
        merged, layers = _load_chain(ppath, params_dir, seen + (path,))
    layers.append((label, data))
    return _merge(merged, data), layers


def _label(path: Path, params_dir: Path) -> str:
    try:
        return f"{params_dir.name}/{path.resolve().relative_to(params_dir.resolve())}"
    except ValueError:
        return str(path)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[k] = nxt
        cur = nxt
    cur[keys[-1]] = value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["slo.scan=2m", "deploy.compose.parallelism=4"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair or not re.match(r"^[A-Za-z_][\w.-]*=", pair):
            raise ParamsError([f"-p {pair}: expected KEY=VALUE with a dotted key, e.g. -p slo.scan=2m"])
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(out, key, value)
    return out


def _origin(layers: list[tuple[str, dict[str, Any]]], loc: tuple[Any, ...]) -> str:
    """The file of the chain whose value is the one at ``loc`` (where the operator must look): the
    last that sets it, or that replaces what holds it (a list or scalar replaces, a mapping merges);
    for a key that no file sets, the last that sets the most of the path to it."""
    best, depth = layers[-1][0], -1
    for label, data in reversed(layers):
        cur: Any = data
        for i, part in enumerate(loc):
            if isinstance(cur, list):
                return label  # a list set here replaced the base's, whatever is (or is not) in it
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                if i and not isinstance(cur, dict):
                    return label  # (a value set here replaced the base's mapping)
                if i > depth:
                    best, depth = label, i
                break
        else:
            return label
    return best


def _problems(found: list[Problem], layers: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Each problem as the operator reads it: the file that sets the key, the dotted key, what is wrong."""
    return [f"{_origin(layers, loc)}: {'.'.join(str(p) for p in loc) or '(top level)'}: {msg}" for loc, msg in found]


def validate(data: dict[str, Any], root: Path) -> tuple[Environment | None, list[Problem]]:
    """The environment ``data`` (merged params) describes, or every problem (paths into ``data``);
    ``file:`` secret references resolve against ``root``."""
    data, found = Environment.prepare(data)
    env, problems = check(data, Environment, root)
    return (env, []) if env is not None and not found else (None, found + problems)


#: What ``-p`` may change in an environment whose approvals are not waivable (prod): the run's
#: patience.  Who approves, what is deployed where, when (T0 and the timeline: a run off its hour
#: says --at-any-time instead), the services checked, the tools run and the keys trusted stay as the
#: reviewed params file says (change the file instead).
RUNTIME_OVERRIDES = ("timeouts.*", "slo.*", "monitoring.duration", "monitoring.interval", "bridge.heartbeat",
                     "bridge.timeout", "bridge.retries", "deploy.compose.parallelism", "deploy.compose.health_timeout",
                     "deploy.helm.timeout", "deploy.helm.watch")


def _dotted_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for k, v in data.items():
        key = f"{prefix}{k}"
        keys.extend(_dotted_keys(v, key + ".") if isinstance(v, dict) and v else [key])
    return keys


def _runtime_override(key: str) -> bool:
    return any(key == allowed or (allowed.endswith(".*") and key.startswith(allowed[:-1]))
               for allowed in RUNTIME_OVERRIDES)


def _refuse_protected(name: str, data: dict[str, Any], overrides: dict[str, Any]) -> None:
    approvals = data.get("approvals")
    if isinstance(approvals, dict) and approvals.get("waivable") is True:
        return
    protected = [k for k in _dotted_keys(overrides) if not _runtime_override(k)]
    if protected:
        raise ParamsError(
            [f"-p {key}: refused: {name}'s approvals are not waivable, so -p may change only run-time settings "
             f"({', '.join(RUNTIME_OVERRIDES)})" for key in protected],
            hint=f"edit params/{name}.yaml instead (a reviewed change), then: cutover params check --env {name}")


def load_environment(name: str, params_dir: Path, overrides: dict[str, Any] | None = None) -> Environment:
    """Load, merge and validate ``params_dir/<name>.yaml``; raise :class:`ParamsError` with every problem."""
    if not re.fullmatch(r"[A-Za-z0-9][\w-]*", name or ""):
        raise ParamsError([f"environment {name!r} is not a valid name"])
    path = params_dir / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(available_environments(params_dir)) or "none"
        raise ParamsError([f"unknown environment {name!r}: {_label(path, params_dir)} does not exist"],
                          hint=f"known environments: {known}")
    data, layers = _load_chain(path, params_dir)
    if overrides:
        _refuse_protected(name, data, overrides)
        data = _merge(data, overrides)
        layers.append(("-p", overrides))
    data.setdefault("name", name)
    env, found = validate(data, params_dir.resolve().parent)
    if env is None:
        raise ParamsError(_problems(found, layers), hint=f"fix the file, then run: cutover params check --env {name}")
    return env


def params_digest(env: Environment) -> str:
    """sha256 of the validated environment (secret *references*, never values)."""
    blob = json.dumps(dump(env), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def flatten(env: Environment) -> list[tuple[str, str]]:
    """``(dotted.path, shown value)`` rows for the params table; secrets show as their reference."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        elif isinstance(value, list):
            rows.append((prefix, ", ".join(str(v) for v in value)))
        else:
            rows.append((prefix, "" if value is None else str(value)))

    walk("", dump(env))
    return rows
