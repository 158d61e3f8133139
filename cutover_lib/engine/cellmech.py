"""The mechanics behind ``rb.sh`` / ``rb.http`` (:mod:`.actions`): the tool's environment and
secret files, where a command runs (nodes, containers), what applies here, and how the observed
result is compared with the expected one.  A base of :class:`~cutover_lib.engine.actions.Actions`."""

from __future__ import annotations

import json as _json
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..config.params import parse_duration
from ..config.secrets import SecretRef, is_reference, mask
from ..config.template import NotNeeded, lookup, render_text
from ..errors import CheckFailed, ParamsError
from .expect import describe, mismatches
from .result import _SECRET_FIELD, _WHOLE, Check, Result, _title, _word

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from ..adapters.http import Http
    from ..config.params import Environment
    from ..evidence.evidence import RunFolder
    from .steps import StepContext

__all__ = ["CellMechanics"]


class CellMechanics:
    """What ``rb.sh`` and ``rb.http`` share; mixed into :class:`~cutover_lib.Runbook` with them."""

    if TYPE_CHECKING:  # what Runbook provides
        env: Environment
        root: Path
        run: RunFolder
        dry_run: bool

        def step(self, step_id: str, title: str, *, owner: str, expect: str,
                 action: Callable[[StepContext], str | None] | None = None, command: str | None = None,
                 mutating: bool = False, required: bool = True, not_applicable: str | None = None
                 ) -> dict[str, Any]: ...

        def path(self, rel: str) -> Path: ...

        def record(self, kind: str, **fields: Any) -> dict[str, Any]: ...

    # ------------------------------------------------------------------ helpers
    def _finish(self, ctx: "StepContext", r: Result, result: Result, node: Any, seen: list[str],
                then: Sequence[Check]) -> str:
        if node is not None:
            result.exit, result.text, result.json = r.exit, r.text, r.json  # (the last node's, for later cells)
        notes = self._then(ctx, r, then)
        if r.values:
            result.values.update(r.values)
            ctx.data["values"] = {k: ({"not_needed": v.what} if isinstance(v, NotNeeded) else v)
                                  for k, v in r.values.items() if isinstance(v, (str, int, float, bool, NotNeeded))}
        return "; ".join(seen + notes)

    def _then_problems(self, ctx: "StepContext", r: Result, then: Sequence[Check]) -> list[str]:
        """The ``then`` checks' findings on the output of a command that already failed (no raise)."""
        found: list[str] = []
        for check in then:
            try:
                check(ctx, r)
            except CheckFailed as exc:
                text = exc.message
                found.append(text.split("; observed ", 1)[1] if "; observed " in text else text)
            except Exception:  # noqa: BLE001 - a check that cannot read a failed tool's output adds nothing
                continue
        return found

    def _unmet(self, when: Mapping[str, Any] | None) -> str | None:
        """Why a ``when={"params.key": value}`` cell does not apply here (None: it does)."""
        for key, want in (when or {}).items():
            try:
                have = lookup(self.env, key)
            except KeyError:
                have = None
            if have != want:
                return f"{key} is {_word(have)} here; this cell is for {key} = {_word(want)}"
        return None

    @contextmanager
    def _secret_files(self, files: Mapping[str, str] | None,
                      values: Mapping[str, Any]) -> Iterator[tuple[dict[str, str], tuple[int, ...]]]:
        """Each ``secret_files`` entry (a template whose secret references are resolved now) as a file
        the tool can open but that never touches a disk: an anonymous memory file (``memfd``) passed to
        the tool as ``/dev/fd/N``; where there is none, a 0600 file in a private 0700 folder, removed
        afterwards.  Yields (placeholder -> path, the descriptors to pass)."""
        if not files:
            yield {}, ()
            return
        texts = {name: _SECRET_FIELD.sub(lambda m: self._env_value(name, m.group(0), values), template)
                 for name, template in files.items()}
        paths: dict[str, str] = {}
        if hasattr(os, "memfd_create"):
            fds: list[int] = []
            try:
                for name, text in texts.items():
                    fd = os.memfd_create(f"cutover-{name}", os.MFD_CLOEXEC)  # passed only to this command
                    fds.append(fd)
                    os.fchmod(fd, 0o600)
                    os.write(fd, (text if text.endswith("\n") else text + "\n").encode())
                    os.lseek(fd, 0, os.SEEK_SET)
                    paths[f"secret-file:{name}"] = f"/dev/fd/{fd}"
                yield paths, tuple(fds)
            finally:
                for fd in fds:
                    os.close(fd)
            return
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="cutover-secret-")  # 0700
        try:
            for name, text in texts.items():
                path = os.path.join(folder, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text if text.endswith("\n") else text + "\n")
                paths[f"secret-file:{name}"] = path
            yield paths, ()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _restored(self, result: Result) -> Result:
        """A step skipped on resume (it passed in an earlier attempt) hands on that attempt's output."""
        if result.outcome == "skipped" and result.json is None and not result.values:
            for rec in reversed(self.run.read_ledger()):
                if rec.get("kind") == "step" and rec.get("step_id") == result.step_id \
                        and rec.get("outcome") == "passed":
                    result.json = (rec.get("data") or {}).get("output")
                    kept = (rec.get("data") or {}).get("values") or {}
                    result.values.update({k: NotNeeded(v["not_needed"]) if isinstance(v, dict) and "not_needed" in v
                                          else v for k, v in kept.items()})
                    break
        return result

    @property
    def owner(self) -> str:
        return getattr(self, "_owner", "DevOps engineer")

    @owner.setter
    def owner(self, role: str) -> None:
        self._owner = role

    def _not_applicable(self, step_id: str, title: str | None, owner: str | None, want: Mapping[str, Any],
                        template: str, result: Result, why: str) -> Result:
        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                  expect=describe(want), command=template, not_applicable=why)
        return result

    def _decide(self, on_failure: str | None, step_id: str, why: str) -> None:
        if on_failure is None:
            return
        if on_failure != "rollback":
            raise ValueError(f"on_failure={on_failure!r}: only \"rollback\" is known")
        self.record("decision", decision="rollback", reason=f"{step_id} failed: {why}", failed=[step_id])

    def _require_files(self, files: Sequence[str], values: Mapping[str, Any], on_nodes: bool) -> None:
        """Files a command reads on this host (compose files and env files are read by the docker CLI,
        not on the node) must exist before anything runs: one clear line naming the params key."""
        base = self.path(self.env.deploy.compose.project_dir) if on_nodes and self.env.deploy.compose else self.root
        for template in files:
            rel = render_text(template, self.env, values)
            if not (base / rel).is_file():
                raise CheckFailed(f"{rel} ({template.strip('{}')}) not found in {base}",
                                  hint=f"fix {template.strip('{}')} in params, or the project folder")

    def _require_new(self, paths: Sequence[str], values: Mapping[str, Any]) -> None:
        """Paths a command creates must not exist yet (a snapshot never writes into another one)."""
        for template in paths:
            rel = render_text(template, self.env, values)
            if self.path(rel).exists():
                raise CheckFailed(f"{rel} already exists; this step never writes into an earlier one",
                                  hint="wait a second and run the cell again (the name carries the time)")

    def _nodes(self) -> list[Any]:
        c = self.env.deploy.compose
        if c is None:
            raise ParamsError(["deploy.compose is missing: there are no compose nodes"])
        return list(c.nodes)

    def _each(self, each: Mapping[str, Any] | None, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``each={"service": "{compose.services}"}`` -> one set of values per list item."""
        if not each:
            return [{}]
        ((name, source),) = each.items()
        items = source
        if isinstance(source, str):
            m = _WHOLE.match(source.strip())
            if not m:
                raise ParamsError([f"each={{{name!r}: {source!r}}} must name one params list like "
                                   f"\"{{compose.services}}\""])
            try:
                items = lookup(self.env, m.group(1), values)
            except KeyError:
                raise ParamsError([f"{source} (each) is not set in params"]) from None
            if isinstance(items, (list, tuple)):  # params items may be templates ({release} in a path)
                items = [render_text(i, self.env, values) if isinstance(i, str) else i for i in items]
        if not isinstance(items, (list, tuple)):
            raise ParamsError([f"each {name}: {source} is not a list"])
        return [{name: item} for item in items]

    def _failed_step(self, step_id: str, title: str | None, owner: str | None, want: Mapping[str, Any],
                     template: str, error: Exception, mutating: bool, required: bool, result: Result) -> Result:
        """A template that cannot be filled in is recorded as the step's failure (params: exit 2)."""
        def act(ctx: "StepContext") -> str:
            raise error

        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                  expect=describe(want), command=template, action=act, mutating=False,
                                  required=required)
        return result

    def _secret_param(self, raw: str, what: str = "the login password") -> SecretRef:
        """A secret as written in a cell: ``{smoke.web_login.password}`` (a params secret reference)
        or a reference itself (``env:NAME``); never a value (which is never echoed)."""
        whole = _WHOLE.match(raw.strip())
        if whole:
            try:
                value = lookup(self.env, whole.group(1))
            except KeyError:
                raise ParamsError([f"{raw} ({what}) is not set in params"],
                                  hint="set it to a secret reference: env:NAME or file:PATH") from None
            if isinstance(value, SecretRef):
                return value
        elif is_reference(raw):
            return SecretRef(raw, base=self.root)
        raise ParamsError([f"{what} must be a secret reference (env:NAME, file:PATH), or name one in params"],
                          hint=f"{raw.strip('{}') if whole else 'the params key'}: env:NAME in params")

    def _pages(self, pages: str | Mapping[str, str]) -> dict[str, str]:
        """``{path: marker}`` as given, or the params mapping a template names (``{smoke.web_pages}``)."""
        found: Any = pages
        if isinstance(pages, str):
            whole = _WHOLE.match(pages.strip())
            try:
                found = lookup(self.env, whole.group(1)) if whole else None
            except KeyError:
                found = None
            if found is None:
                raise ParamsError([f"pages={pages!r} names no params mapping of page -> marker"],
                                  hint='list the pages under smoke.web_pages: {"/": "marker"}')
        if not isinstance(found, Mapping) or not found:
            raise ParamsError([f"{pages} is empty: no page to check"],
                              hint="list the Web UI pages and a marker each must contain under smoke.web_pages")
        return {str(k): str(v) for k, v in found.items()}

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
        for name, value in (want.get("headers") or {}).items():
            wanted, got = self._fill(value, values), result.headers.get(name.lower())
            if got != wanted:
                problems.append(f"header {name} is {got!r}, expected {wanted!r}" if got is not None else
                                f"no {name} header (expected {wanted!r})")
            else:
                seen.append(f"{name}: {got}")
        if "contains" in want:
            needle = self._fill(want["contains"], values)
            if needle not in result.text:
                problems.append(f"{'output' if result.exit is not None else 'body'} does not contain {needle!r}")
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

    def _tool_env(self, values: Mapping[str, Any], extra: Mapping[str, str] | None,
                  program: str = "") -> dict[str, str]:
        """The tool's environment: ``tools.env`` when the program is one of the Stella Ops CLIs
        (``tools.env_for``), the program's own ``tools.program_env``, and the cell's ``env``, secrets
        resolved now; ``tools.path`` appended to ``PATH``."""
        tools = self.env.tools
        ours = {os.path.basename(p) for p in (*tools.env_for, tools.stellaops_cli)}
        out: dict[str, str] = {}
        base = tools.env if os.path.basename(program) in ours else {}
        own = tools.program_env.get(os.path.basename(program), {})
        for name, raw in {**base, **own, **(extra or {})}.items():
            out[name] = self._env_value(name, raw, values)
        if self.env.tools.path:
            extra_path = os.pathsep.join(str(self.path(p)) for p in self.env.tools.path)
            out["PATH"] = os.environ.get("PATH", "") + os.pathsep + extra_path
        return out

    def _env_value(self, name: str, raw: Any, values: Mapping[str, Any]) -> str:
        if isinstance(raw, SecretRef):
            return raw.resolve()
        text = str(raw)
        if is_reference(text):
            return SecretRef(text, base=self.root).resolve()
        whole = _WHOLE.match(text.strip())
        if whole:
            try:
                value = lookup(self.env, whole.group(1), values)
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
            from ..adapters.http import Http

            client = Http(timeout=self.env.timeouts.http.total_seconds(), verify=self.env.tls_verify)
            self._client = client
            weakref.finalize(self, client.close)
        return client

