"""``rb.sh`` and ``rb.http``: a runbook line in a cell, turned into a step.

The cell holds the runbook's own command or request and its expected result::

    rb.http("5.api-health", "GET {services.scanner}/healthz",
            expect={"status": 200, "json": {"status": "Healthy"}})
    scan = rb.sh("5.scan-submit",
                 "{tools.stellaops_cli} scan submit --profile {tools.profile} --sbom {samples.sbom} --output json",
                 expect={"exit": 0, "json": {"status": "completed"}, "within": "{slo.scan}"},
                 then=[signed_dsse(at="report.dsse")])

The library does the rest: fills the template from params (:mod:`._template`), gives the
tool its environment (``tools.env``, secrets resolved only here) and ``PATH`` (``tools.path``),
runs it with a timeout (``within`` or ``timeouts.command``), or plans it in a dry run,
compares what it saw with ``expect`` (:mod:`._expect`) and with each ``then`` check (small
functions named as the runbook words them, e.g. "signed DSSE"), and records the step.
The returned :class:`Result` hands later cells what this one produced: ``scan["attestation.uuid"]``.
"""

from __future__ import annotations

import json as _json
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import CheckFailed, ParamsError
from ._expect import describe, mismatches
from ._params import parse_duration
from ._secrets import SecretRef, mask
from ._shell import render
from ._template import Missing, lookup, render_args, render_text

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from ._evidence import RunFolder
    from ._http import Http
    from ._params import Environment
    from ._steps import StepContext

__all__ = ["Actions", "Check", "Result"]

#: a ``then`` check: gets the step and what was observed; returns a short observation or raises CheckFailed
Check = Callable[["StepContext", "Result"], "str | None"]


class Result:
    """What a step observed, for the cells after it: outcome, exit code or HTTP status, output."""

    def __init__(self, step_id: str) -> None:
        self.step_id = step_id
        self.record: dict[str, Any] = {}
        self.exit: int | None = None
        self.status: int | None = None
        self.text: str = ""  # stdout of a command, body of a response
        self.json: Any = None
        self.elapsed_s: float = 0.0

    @property
    def outcome(self) -> str:
        return str(self.record.get("outcome", "not run"))

    @property
    def ok(self) -> bool:
        return self.outcome in ("passed", "skipped", "waived")

    def __getitem__(self, path: str) -> Any:
        """A value of the parsed output by dotted path; :class:`Missing` (which fails any step that
        uses it, naming this one) when this step produced none."""
        node = self.json
        for part in path.split("."):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                why = "it was planned, not run (dry run)" if self.outcome == "planned" else \
                      f"its output has no {path}" if self.outcome == "passed" else f"it {self.outcome}"
                return Missing(f"step {self.step_id} gave no {path}: {why}")
        return node

    def __repr__(self) -> str:
        return f"<Result {self.step_id} {self.outcome}>"


def _at(doc: Any, path: str | None) -> Any:
    if not path:
        return doc
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            raise CheckFailed(f"the output has no {path}")
        doc = doc[part]
    return doc


class Actions:
    """Mixed into :class:`~cutover_lib.Runbook`: the cell-level verbs."""

    if TYPE_CHECKING:  # what Runbook provides
        env: Environment
        root: Path
        run: RunFolder

        def step(self, step_id: str, title: str, *, owner: str, expect: str,
                 action: Callable[[StepContext], str | None] | None = None, command: str | None = None,
                 mutating: bool = False, required: bool = True) -> dict[str, Any]: ...

        def path(self, rel: str) -> Path: ...

    # ------------------------------------------------------------------ commands
    def sh(self, step_id: str, command: str, *, title: str | None = None, owner: str | None = None,
           expect: Mapping[str, Any] | None = None, then: Sequence[Check] = (), mutating: bool = False,
           required: bool = True, env: Mapping[str, str] | None = None, vars: Mapping[str, Any] | None = None,
           inside: str | None = None, timeout: str | None = None, parse: str | None = None) -> Result:
        """Run the runbook's command ``command`` (a template over params) as step ``step_id``.

        ``expect`` (default ``{"exit": 0}``) may also hold ``json`` (with ``parse="json"``, a subset
        of the parsed standard output) and ``within`` (a duration: the command is stopped there).
        ``inside`` runs it inside that service's container (``docker exec`` in compose mode,
        ``kubectl exec`` in helm mode).  ``env`` adds environment variables (templates or secret
        references).  ``vars`` fills names the template takes from earlier cells."""
        want = dict(expect or {"exit": 0})
        want.setdefault("exit", 0)
        if "json" in want:
            parse = parse or "json"
        result = Result(step_id)
        values = dict(vars or {})
        try:
            argv = render_args(command, self.env, values)
            prefix, prefix_env = self._inside(inside)
            argv = prefix + argv
            shown = render(argv, prefix_env)
            within = self._duration(want.get("within"), values)
        except (ParamsError, CheckFailed) as exc:
            return self._failed_step(step_id, title, owner, want, command, exc, mutating, required, result)

        def act(ctx: "StepContext") -> str:
            tool_env = {**self._tool_env(values, env), **prefix_env}
            res = ctx.sh(argv, timeout=within or self.env.timeouts.command.total_seconds(), env=tool_env,
                         check=False, capture_stdout=parse is not None)
            result.exit, result.elapsed_s, result.text = res.returncode, res.duration_s, res.stdout or ""
            if res.timed_out:
                limit = f"within {_seconds(within)}" if within else \
                    f"within timeouts.command ({_seconds(self.env.timeouts.command.total_seconds())})"
                raise CheckFailed(f"expected {ctx.expect}; observed no result {limit}: stopped after "
                                  f"{res.duration_s:.1f}s")
            seen = [f"exit {res.returncode} in {res.duration_s:.1f}s"]
            problems = [] if res.returncode == want["exit"] else [f"exit {res.returncode}"]
            if parse == "json":
                try:
                    result.json = self._parse_json(result.text)
                    _keep(ctx, result)
                except CheckFailed:
                    if not problems:
                        raise
            if not (problems and result.json is None):  # a failed tool without output: its exit says it
                problems += self._compare(want, result, values, seen)
            if problems:
                last = " | ".join(res.tail[-2:])
                raise CheckFailed(f"expected {ctx.expect}; observed {'; '.join(problems)}"
                                  + (f" (last output: {last})" if last and res.returncode != want["exit"] else ""))
            return "; ".join(seen + self._then(ctx, result, then))

        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                  expect=self._describe(want, then, values), command=shown, action=act,
                                  mutating=mutating, required=required)
        return self._restored(result)

    # ------------------------------------------------------------------ requests
    def http(self, step_id: str, request: str, *, title: str | None = None, owner: str | None = None,
             expect: Mapping[str, Any] | None = None, then: Sequence[Check] = (), json: Any = None,
             headers: Mapping[str, str] | None = None, vars: Mapping[str, Any] | None = None,
             mutating: bool = False, required: bool = True, wait: bool = False) -> Result:
        """Make the runbook's request ``"METHOD URL"`` (a template over params) as step ``step_id``.

        ``expect`` (default ``{"status": 200}``) may hold ``json`` (a subset of the answer),
        ``contains`` (text the body must contain) and ``within`` (a duration).  ``wait`` repeats
        the request until it meets ``expect`` or ``timeouts.health`` runs out (a service that is
        still starting)."""
        want = dict(expect or {"status": 200})
        want.setdefault("status", 200)
        result = Result(step_id)
        values = dict(vars or {})
        try:
            method, _, url_template = request.strip().partition(" ")
            if method.upper() not in ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH") or not url_template.strip():
                raise ParamsError([f"`{request}` is not a request like `GET {{services.scanner}}/healthz`"])
            url = render_text(url_template.strip(), self.env, values)
            _no_credentials_in(url, request)
            within = self._duration(want.get("within"), values)
        except (ParamsError, CheckFailed) as exc:
            return self._failed_step(step_id, title, owner, want, request, exc, mutating, required, result)
        method = method.upper()

        def once(ctx: "StepContext") -> str:
            r = self._http_client().request(method, url, json=json, headers=dict(headers or {}))
            result.status, result.elapsed_s, result.text = r.status, r.elapsed_s, r.text
            try:
                result.json = _json.loads(r.text) if r.text.strip()[:1] in ("{", "[") else None
            except ValueError:
                result.json = None
            seen = [f"HTTP {r.status} in {r.elapsed_s:.2f}s"]
            problems = [] if r.status == want["status"] else [f"HTTP {r.status}"]
            if within is not None and r.elapsed_s > within:
                problems.append(f"took {r.elapsed_s:.2f}s")
            problems += self._compare(want, result, values, seen)
            if problems:
                body = mask(r.text[:160]).replace("\n", " ")
                raise CheckFailed(f"expected {ctx.expect}; observed {'; '.join(problems)}"
                                  + (f" (body: {body})" if r.status != want["status"] else ""))
            _keep(ctx, result)
            return "; ".join(seen + self._then(ctx, result, then))

        def act(ctx: "StepContext") -> str:
            if not wait:
                return once(ctx)
            from ._http import wait_until

            return wait_until(lambda: once(ctx), deadline_s=self.env.timeouts.health.total_seconds(),
                              what=f"{method} {url}")

        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                  expect=self._describe(want, then, values), command=f"{method} {url}", action=act,
                                  mutating=mutating, required=required)
        return self._restored(result)

    # ------------------------------------------------------------------ helpers
    def _restored(self, result: Result) -> Result:
        """A step skipped on resume (it passed in an earlier attempt) hands on that attempt's output."""
        if result.outcome == "skipped" and result.json is None:
            for rec in reversed(self.run.read_ledger()):
                if rec.get("kind") == "step" and rec.get("step_id") == result.step_id \
                        and rec.get("outcome") == "passed":
                    result.json = (rec.get("data") or {}).get("output")
                    break
        return result

    @property
    def owner(self) -> str:
        return getattr(self, "_owner", "DevOps engineer")

    @owner.setter
    def owner(self, role: str) -> None:
        self._owner = role

    def _failed_step(self, step_id: str, title: str | None, owner: str | None, want: Mapping[str, Any],
                     template: str, error: Exception, mutating: bool, required: bool, result: Result) -> Result:
        """A template that cannot be filled in is recorded as the step's failure (params: exit 2)."""
        def act(ctx: "StepContext") -> str:
            raise error

        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                  expect=describe(want), command=template, action=act, mutating=False,
                                  required=required)
        return result

    def _duration(self, value: Any, values: Mapping[str, Any]) -> float | None:
        if value is None:
            return None
        text = render_text(str(value), self.env, values)
        try:
            return parse_duration(text).total_seconds()
        except ValueError:
            raise ParamsError([f"within {value!r} is not a duration like 5m"]) from None

    def _describe(self, want: Mapping[str, Any], then: Iterable[Check],
                  values: Mapping[str, Any]) -> str:
        shown = {k: (self._fill(v, values) if isinstance(v, (str, Mapping)) else v) for k, v in want.items()}
        words = describe(shown)
        extra = [getattr(c, "expect", "") for c in then]
        return "; ".join([words, *[e for e in extra if e]])

    def _fill(self, value: Any, values: Mapping[str, Any]) -> Any:
        """Templates inside an expected value filled from params (``"{services.authority}"``)."""
        if isinstance(value, str):
            try:
                return render_text(value, self.env, values)
            except (ParamsError, CheckFailed):
                return value
        if isinstance(value, Mapping):
            return {k: self._fill(v, values) for k, v in value.items()}
        if isinstance(value, list):
            return [self._fill(v, values) for v in value]
        return value

    def _compare(self, want: Mapping[str, Any], result: Result, values: Mapping[str, Any],
                 seen: list[str]) -> list[str]:
        problems: list[str] = []
        if "json" in want:
            expected = self._fill(want["json"], values)
            if result.json is None:
                snippet = mask(result.text.strip()[:80]).replace("\n", " ")
                problems.append(f"no JSON in the answer (got {snippet!r})")
            else:
                wrong = mismatches(expected, result.json)
                problems.extend(wrong)
                if not wrong:
                    seen.append(describe({"json": expected})[5:])
        if "contains" in want:
            needle = self._fill(want["contains"], values)
            if needle not in result.text:
                problems.append(f"body does not contain {needle!r}")
            else:
                seen.append(f"contains {needle!r}")
        return problems

    def _then(self, ctx: "StepContext", result: Result, then: Sequence[Check]) -> list[str]:
        notes: list[str] = []
        for check in then:
            note = check(ctx, result)
            if note:
                notes.append(str(note))
        return notes

    def _parse_json(self, text: str) -> Any:
        try:
            return _json.loads(text)
        except ValueError:
            snippet = mask(text.strip()[:80]).replace("\n", " ") or "(nothing)"
            raise CheckFailed(f"the tool printed no JSON on standard output (got {snippet!r})",
                              hint="check that the program in params (tools.*) supports --output json") from None

    def _tool_env(self, values: Mapping[str, Any], extra: Mapping[str, str] | None) -> dict[str, str]:
        """The tool's environment: ``tools.env`` and the cell's ``env``, secrets resolved now, and
        ``tools.path`` appended to ``PATH``."""
        out: dict[str, str] = {}
        for name, raw in {**self.env.tools.env, **(extra or {})}.items():
            out[name] = self._env_value(name, raw, values)
        if self.env.tools.path:
            extra_path = os.pathsep.join(str(self.path(p)) for p in self.env.tools.path)
            out["PATH"] = os.environ.get("PATH", "") + os.pathsep + extra_path
        return out

    def _env_value(self, name: str, raw: Any, values: Mapping[str, Any]) -> str:
        if isinstance(raw, SecretRef):
            return raw.resolve()
        text = str(raw)
        if ":" in text and text.split(":", 1)[0] in ("env", "file", "k8s"):
            return SecretRef(text, base=self.root).resolve()
        whole = text.strip()
        if whole.startswith("{") and whole.endswith("}") and whole.count("{") == 1:
            try:
                value = lookup(self.env, whole[1:-1], values)
            except KeyError:
                value = None
            if isinstance(value, SecretRef):  # the one place a secret param may go: a tool's environment
                return value.resolve()
        return render_text(text, self.env, values)

    def _inside(self, service: str | None) -> tuple[list[str], dict[str, str]]:
        """How to run a command inside ``service``'s container in this deploy mode."""
        if not service:
            return [], {}
        d = self.env.deploy
        if d.mode == "compose" and d.compose is not None:
            return ["docker", "exec", service], {"DOCKER_HOST": d.compose.nodes[0].docker_host}
        if d.mode == "helm" and d.helm is not None:
            ctx = ["--context", d.helm.kube_context] if d.helm.kube_context else []
            return ["kubectl", *ctx, "exec", "-n", d.helm.namespace, f"deployment/{service}", "--"], {}
        return [], {}  # a deploy mode whose services run as local processes (the lab): run it here

    def _http_client(self) -> "Http":
        client = getattr(self, "_client", None)
        if client is None:
            from ._http import Http

            client = Http(timeout=self.env.timeouts.http.total_seconds(), verify=self.env.tls_verify)
            self._client = client
            weakref.finalize(self, client.close)
        return client


_KEEP_BYTES = 64 * 1024


def _keep(ctx: "StepContext", result: Result) -> None:
    """Parsed output goes into the step's record (masked, like all of it) when small enough, so a
    resumed run can hand it on; always into an artifact."""
    if result.json is None:
        return
    text = _json.dumps(result.json, indent=2, default=str)
    ctx.artifact(f"{ctx.step_id}.json", text)
    if len(text) <= _KEEP_BYTES:
        ctx.data["output"] = result.json


def _seconds(value: float) -> str:
    from datetime import timedelta

    from ._params import format_duration

    return format_duration(timedelta(seconds=value))


def _title(step_id: str) -> str:
    words = step_id.rsplit(".", 1)[-1].replace("-", " ")
    return words[:1].upper() + words[1:]


def _no_credentials_in(url: str, template: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        raise ParamsError([f"`{template}` does not give a URL"]) from None
    if parts.username or parts.password:
        raise ParamsError([f"`{template}` puts credentials in the URL"],
                          hint="remove user:password@ from services.* in params; credentials go in secret references")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ParamsError([f"`{template}` gives {mask(url)!r}, not an http(s) URL"],
                          hint="check services.* in params")

