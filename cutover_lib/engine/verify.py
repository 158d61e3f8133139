"""Checks the runbook states in words, for a cell's ``then=[...]``.

"Report accessible with signed DSSE", "Returns DSSE with matching SHA256", "record visible in
``runtime_events``": each is a small function named as the runbook says
it, returning a check that :meth:`Runbook.sh` / :meth:`Runbook.http` run after the expected
result matched.  A check gets the step and the :class:`~cutover_lib.engine.actions.Result`, returns a
short observation and raises :class:`CheckFailed` naming what it saw.  Where a check looks
(trusted keys, queries) comes from params, never from here.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.template import render_text
from ..errors import CheckFailed, ParamsError
from .result import NamedCheck as _Check

if TYPE_CHECKING:  # pragma: no cover
    from .actions import Result
    from .steps import Runbook, StepContext

__all__ = ["OIDC_REQUIRED", "above_zero", "every_profile_validated", "fresh_event", "oidc_discovery_complete", "same_payload_as",
           "signed_dsse", "trusted_signer_keys", "visible_by_query"]

#: fields every OpenID Connect discovery document has (OpenID Connect Discovery 1.0, section 3)
OIDC_REQUIRED = ("issuer", "jwks_uri", "token_endpoint", "authorization_endpoint", "response_types_supported",
                 "subject_types_supported", "id_token_signing_alg_values_supported")
_PEM_START = "-----BEGIN PUBLIC KEY-----"


def _at(doc: Any, path: str) -> Any:
    node = doc
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise CheckFailed(f"the answer has no {path}")
        node = node[part]
    return node


def _pems_in(text: str) -> list[str]:
    """PEM public keys in a file or an answer: the text itself, or string values of a JSON document."""
    if text.lstrip().startswith(_PEM_START):
        return [text]
    try:
        doc = json.loads(text)
    except ValueError:
        return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str) and node.lstrip().startswith(_PEM_START):
            found.append(node)
        elif isinstance(node, Mapping):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return found


def trusted_signer_keys(rb: "Runbook") -> dict[str, str]:
    """``trust.signer_keys`` of params, by DSSE key id: PEM files (pinned), or URLs whose answer
    holds the PEM (weaker: the signer vouches for itself; fine for a lab)."""
    from ..evidence.dsse import key_id

    entries = rb.env.trust.signer_keys
    if not entries:
        raise ParamsError(["trust.signer_keys is empty: there is no key to verify a DSSE signature against"],
                          hint="pin the signer's public key: trust.signer_keys: [path/to/signer.pem] in params")
    keys: dict[str, str] = {}
    for entry in entries:
        where = render_text(entry, rb.env)
        if where.startswith(("http://", "https://")):
            r = rb._http_client().get(where)
            if r.status != 200:
                raise CheckFailed(f"trusted key from {where}: HTTP {r.status}")
            text = r.text
        else:
            try:
                text = rb.path(where).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ParamsError([f"trust.signer_keys: {where} cannot be read ({exc.__class__.__name__})"],
                                  hint="point it at the signer's public key (PEM)") from None
        pems = _pems_in(text)
        if not pems:
            raise ParamsError([f"trust.signer_keys: {where} holds no PEM public key"])
        for pem in pems:
            keys[key_id(pem)] = pem
    return keys


def signed_dsse(at: str) -> _Check:
    """The DSSE envelope at ``at`` (a dotted path in the answer) verifies against a trusted signer key."""
    def check(ctx: "StepContext", result: "Result") -> str:
        from ..evidence.dsse import verify_envelope

        envelope = _at(result.json, at)
        if not isinstance(envelope, Mapping):
            raise CheckFailed(f"{at} is not a DSSE envelope")
        verdict = verify_envelope(envelope, trusted_signer_keys(ctx.rb))
        if not verdict.ok:
            raise CheckFailed(f"expected {ctx.expect}; observed {at}: {verdict.reason}")
        return f"{at} signed by trusted key {str(verdict.keyid)[:12]}…"

    return _Check(f"{at} is a DSSE signed by a trusted signer key", check)


def same_payload_as(bundle: str, at: str) -> _Check:
    """The payload SHA-256 of the envelope at ``at`` equals that of the file ``bundle`` (a template):
    the bundle's own DSSE payload, or the file's bytes when it is not an envelope."""
    def check(ctx: "StepContext", result: "Result") -> str:
        from ..evidence.dsse import payload_sha256

        path = ctx.rb.path(render_text(bundle, ctx.rb.env))
        try:
            raw = path.read_bytes()
        except OSError:
            raise CheckFailed(f"{path} cannot be read", hint="restore it: git checkout -- samples/") from None
        try:
            want = payload_sha256(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            want = hashlib.sha256(raw).hexdigest()
        envelope = _at(result.json, at)
        try:
            got = payload_sha256(envelope)
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckFailed(f"{at} is not a DSSE envelope ({exc})") from None
        if got != want:
            raise CheckFailed(f"expected {ctx.expect}; observed payload SHA256 {got[:16]}… but the bundle's is "
                              f"{want[:16]}…")
        return f"payload SHA256 {got[:16]}… matches the bundle"

    return _Check(f"SHA256 of the payload matches {bundle}", check)


def oidc_discovery_complete() -> _Check:
    """The discovery document has the required OpenID Connect fields and its ``jwks_uri`` answers with keys."""
    def check(ctx: "StepContext", result: "Result") -> str:
        doc = result.json if isinstance(result.json, Mapping) else {}
        missing = [f for f in OIDC_REQUIRED if f not in doc]
        if missing:
            raise CheckFailed(f"expected {ctx.expect}; observed discovery lacks {', '.join(missing)}")
        ctx.artifact(f"{ctx.step_id}.openid-configuration.json", json.dumps(doc, indent=2))
        r = ctx.rb._http_client().get(str(doc["jwks_uri"]))
        keys: list[Any] = []
        try:
            keys = (json.loads(r.text) or {}).get("keys") or [] if r.status == 200 else []
        except (ValueError, AttributeError):
            keys = []
        if not keys:
            raise CheckFailed(f"expected {ctx.expect}; observed jwks_uri answered HTTP {r.status} without keys")
        return f"{len(OIDC_REQUIRED)} required fields present; jwks has {len(keys)} key(s)"

    return _Check("required OIDC fields present; jwks_uri reachable with keys", check)


def fresh_event(rb: "Runbook", sample: str) -> dict[str, Any]:
    """The fixture event ``sample`` (a template, e.g. ``{samples.runtime_event}``) with a new
    ``eventId`` and time, so that this run's record is the one found afterwards."""
    path = rb.path(render_text(sample, rb.env))
    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CheckFailed(f"sample event {path} cannot be read",
                          hint="restore it: git checkout -- samples/") from None
    event["eventId"] = str(uuid.uuid4())
    event["observedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return event


def visible_by_query(query: str, id: str) -> _Check:
    """The record ``id`` is visible through ``query`` (a params template such as
    ``{smoke.runtime_event_query}`` naming ``{id}``): HTTP 200 and the answer names the id."""
    def check(ctx: "StepContext", result: "Result") -> str:
        method, _, url = render_text(query, ctx.rb.env, {"id": id}).partition(" ")
        r = ctx.rb._http_client().request(method.upper(), url.strip())
        if r.status != 200 or id not in r.text:
            raise CheckFailed(f"expected {ctx.expect}; observed {method.upper()} {url} answered HTTP {r.status}"
                              f"{'' if r.status != 200 else ' without the record'}")
        return f"record {id} visible"

    return _Check(f"the record is visible ({query})", check)


def above_zero(field: str) -> _Check:
    """The answer's JSON ``field`` (dotted) is a number above zero (an audit trail that holds records)."""
    def check(ctx: "StepContext", result: "Result") -> str:
        value = _at(result.json, field)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise CheckFailed(f"expected {ctx.expect}; observed {field} = {value!r}")
        return f"{field} = {value}"

    return _Check(f"{field} above zero", check)


_PROFILE_LINE = re.compile(r"^validate-profiles: (?P<file>\S+): (?P<status>ok|FAILED|skipped)(?: \((?P<why>.*)\))?\s*$")


def every_profile_validated(renderings: str | None = None) -> _Check:
    """T-12h: every profile of ``deploy.profiles`` in params is reported ``ok`` by the validation
    script (one ``validate-profiles: FILE: ok [(how)]|FAILED (..)|skipped (..)`` line each; ``ok
    (Helm library)``: linted and rendered by the Helm v4 library, no helm CLI).  A skipped profile
    (its tool not installed) passes only where ``tools.validate_profiles_may_skip`` allows.
    ``renderings``: the folder the script wrote renderings to (``VALIDATE_PROFILES_OUT``); each
    ``<profile>.yaml`` there is kept as the artifact ``<step>.<profile>.yaml`` and the folder removed."""
    def check(ctx: "StepContext", result: "Result") -> str:
        try:
            return _profiles_check(ctx, result)
        finally:
            if renderings:
                _keep_renderings(ctx, Path(renderings))

    def _profiles_check(ctx: "StepContext", result: "Result") -> str:
        rb = ctx.rb
        seen: dict[str, tuple[str, str]] = {}
        for line in result.text.splitlines():
            m = _PROFILE_LINE.match(line.strip())
            if m:
                seen[m.group("file")] = (m.group("status"), m.group("why") or "")
        profiles = rb.env.deploy.profiles
        ctx.data["profiles"] = {name: {"file": f, "status": seen.get(f, ("not reported", ""))[0],
                                       "why": seen.get(f, ("", ""))[1]} for name, f in profiles.items()}
        bad = [f"{name} ({f}): not reported by the script" for name, f in profiles.items() if f not in seen]
        bad += [f"{name}: FAILED ({seen[f][1]})" for name, f in profiles.items() if seen.get(f, ("",))[0] == "FAILED"]
        skipped = [f"{name} ({seen[f][1]})" for name, f in profiles.items() if seen.get(f, ("",))[0] == "skipped"]
        if skipped and not rb.env.tools.validate_profiles_may_skip:
            bad += [f"{s}: skipped, and every profile must be validated here" for s in skipped]
        if bad:
            raise CheckFailed(f"expected {ctx.expect}; observed " + "; ".join(bad),
                              hint="install the missing tool on this host, or fix the profile")
        ok = sum(1 for f in profiles.values() if seen[f][0] == "ok")
        how: dict[str, list[str]] = {}
        for name, f in profiles.items():
            if seen[f][0] == "ok" and seen[f][1]:
                how.setdefault(seen[f][1], []).append(name)
        by = "".join(f", {w}: {', '.join(names)}" for w, names in how.items())
        return f"{len(profiles)} profiles: {ok} ok{by}" + (f", skipped: {', '.join(skipped)}" if skipped else "")

    return _Check("every profile of deploy.profiles validated", check)


def _keep_renderings(ctx: "StepContext", folder: Path) -> None:
    """The script's renderings (``VALIDATE_PROFILES_OUT``) as the step's artifacts; the folder goes."""
    try:
        for path in sorted(folder.glob("*.yaml")):
            ctx.artifact(f"{ctx.step_id}.{path.name}", path.read_text(encoding="utf-8", errors="replace"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
