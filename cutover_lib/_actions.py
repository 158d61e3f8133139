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
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._errors import CheckFailed, ParamsError, StepFailed
from ._expect import describe, mismatches
from ._params import parse_duration
from ._secrets import SecretRef, mask
from ._shell import render
from ._template import Missing, NotNeeded, lookup, render_args, render_text

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
        self.node: Any = None  # the compose node a per-node check is looking at
        self.values: dict[str, Any] = {}  # what a then-check derived for later cells (e.g. rollback_to)
        self.vars: dict[str, Any] = {}  # the names the cell's template was filled with ({now}, vars=...)

    @property
    def outcome(self) -> str:
        return str(self.record.get("outcome", "not run"))

    @property
    def ok(self) -> bool:
        return self.outcome in ("passed", "skipped", "waived")

    def __getitem__(self, path: str) -> Any:
        """A value of the parsed output by dotted path; :class:`Missing` (which fails any step that
        uses it, naming this one) when this step produced none."""
        if path in self.values:
            return self.values[path]
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
        dry_run: bool

        def step(self, step_id: str, title: str, *, owner: str, expect: str,
                 action: Callable[[StepContext], str | None] | None = None, command: str | None = None,
                 mutating: bool = False, required: bool = True) -> dict[str, Any]: ...

        def path(self, rel: str) -> Path: ...

        def record(self, kind: str, **fields: Any) -> dict[str, Any]: ...

    # ------------------------------------------------------------------ commands
    def sh(self, step_id: str, command: str, *, title: str | None = None, owner: str | None = None,
           expect: Mapping[str, Any] | None = None, then: Sequence[Check] = (), mutating: bool = False,
           required: bool = True, env: Mapping[str, str] | None = None, vars: Mapping[str, Any] | None = None,
           inside: str | None = None, parse: str | None = None, mode: str | None = None, on: str | None = None,
           each: Mapping[str, Any] | None = None, after_change: bool = False, also_ok: str | None = None,
           needs_files: Sequence[str] = (), on_failure: str | None = None, watch: str | None = None,
           when: Mapping[str, Any] | None = None, secret_files: Mapping[str, str] | None = None) -> Result:
        """Run the runbook's command ``command`` (a template over params) as step ``step_id``.

        ``expect`` (default ``{"exit": 0}``) may also hold ``json`` (with ``parse="json"``, a subset
        of the parsed standard output) and ``within`` (a duration: the command is stopped there).
        ``inside`` runs it inside that service's container (``docker exec`` in compose mode,
        ``kubectl exec`` in helm mode).  ``env`` adds environment variables (templates or secret
        references).  ``vars`` fills names the template takes from earlier cells.
        ``mode`` (``"compose"``, ``"helm"``, ...) runs the cell only in that deploy mode (otherwise
        it is recorded as not applicable); ``on="each node"`` runs it on every compose node
        (``DOCKER_HOST`` per node, at most ``compose.parallelism`` at a time, in the compose
        project folder); ``each={"name": "{params.list}"}`` runs it once per value.
        ``after_change`` marks a read that checks what a mutating step changed: a dry run skips it.
        ``also_ok`` is output that makes a failed exit pass (``docker network create``: "already
        exists"); ``needs_files`` are files (templates) that must exist before anything runs;
        ``on_failure="rollback"`` records the rollback decision when the step fails (Section 6).
        ``watch`` (a duration) is for a command that runs until stopped (``kubectl get pods --watch``):
        it is stopped after that long, which passes; ending early with a failed exit fails.
        ``when={"backup.mode": "tools"}`` runs the cell only when those params have those values.
        ``secret_files={"name": "uri: {backup.mongo.uri}"}`` writes a 0600 file (removed afterwards)
        whose text may hold secrets, and passes its path as ``{name}``: how a secret reaches a tool
        that reads a config file (``mongodump --config``), never through argv.
        ``{now}`` (``date -Iseconds``, UTC) and ``{now_minute}`` (``date +%Y%m%d%H%M``) name the time."""
        want = dict(expect or {"exit": 0})
        want.setdefault("exit", 0)
        if "json" in want:
            parse = parse or "json"
        if on is not None and on != "each node":
            raise ValueError(f'on={on!r}: only on="each node" (the compose nodes) is known')
        mode = "compose" if on else mode
        result = Result(step_id)
        values = {**_clock(), **dict(vars or {})}
        files = {name: f"secret-file:{name}" for name in secret_files or {}}  # (a 0600 file at run time)
        values.update(files)
        result.vars = values
        not_needed = next((v for v in values.values() if isinstance(v, NotNeeded)), None)
        other_mode = mode is not None and self.env.deploy.mode != mode
        unmet = None if other_mode else self._unmet(when)
        not_here = not_needed.what if not_needed is not None else \
            f"deploy mode is {self.env.deploy.mode}, this is the {mode} path" if other_mode else unmet if unmet else \
            "dry run: nothing was changed, so there is nothing new to check" if after_change and self.dry_run else None
        try:
            items = self._each(each, values)
            argvs = [render_args(command, self.env, {**values, **item}) for item in items]
            prefix, prefix_env = self._inside(inside)
            argvs = [prefix + argv for argv in argvs]
            nodes = self._nodes() if on else [None]
            shown = " ; ".join(render(argv, {**prefix_env, **(_host(n) if n else {})}) for n in nodes for argv in argvs)
            within = self._duration(want.get("within"), values)
            watched = self._duration(watch, values)
        except (ParamsError, CheckFailed) as exc:
            if not_here:  # (another deploy mode's params need not be complete here)
                return self._not_applicable(step_id, title, owner, want, command, result, not_here)
            return self._failed_step(step_id, title, owner, want, command, exc, mutating, required, result)
        if not_here:
            return self._not_applicable(step_id, title, owner, want, shown, result, not_here)

        def run_one(ctx: "StepContext", r: Result, node: Any, argv: list[str], log_name: str | None,
                    fds: tuple[int, ...] = ()) -> list[str]:
            tool_env = {**self._tool_env(values, env, program=argv[len(prefix)]), **prefix_env,
                        **(_host(node) if node else {})}
            cwd = self.path(self.env.deploy.compose.project_dir) if node and self.env.deploy.compose else None
            res = ctx.sh(argv, timeout=watched or within or self.env.timeouts.command.total_seconds(), env=tool_env,
                         check=False, capture_stdout=parse is not None, cwd=cwd, log_name=log_name, pass_fds=fds)
            r.exit, r.elapsed_s, r.text = res.returncode, res.duration_s, res.stdout or ""
            if res.timed_out and watched:
                return [f"watched for {_seconds(watched)} ({len(res.tail)} lines kept)"]
            if res.timed_out:
                limit = f"within {_seconds(within)}" if within else \
                    f"within timeouts.command ({_seconds(self.env.timeouts.command.total_seconds())})"
                raise CheckFailed(_observed(ctx, node, f"no result {limit}: stopped after {res.duration_s:.1f}s"))
            seen = [f"exit {res.returncode} in {res.duration_s:.1f}s"]
            problems = [] if res.returncode == want["exit"] else [f"exit {res.returncode}"]
            if problems and also_ok and any(also_ok in line for line in res.tail):
                problems, seen = [], [f"exit {res.returncode}: {also_ok} (passes)"]
            if parse == "json":
                try:
                    r.json = self._parse_json(r.text)
                    _keep(ctx, r, node.name if node else None)
                except CheckFailed:
                    if not problems:
                        raise
            if problems and node is not None and argv[0] == "docker":
                from ._compose import map_cli_failure  # engine down, compose plugin missing: named per node

                raise map_cli_failure(node.name, node.docker_host, res.command, res.returncode, res.tail,
                                      res.timed_out)
            if not (problems and r.json is None):  # a failed tool without output: its exit says it
                problems += self._compare(want, r, values, seen)
            if problems and res.returncode != want["exit"] and r.text:
                problems += self._then_problems(ctx, r, then)  # what the checks see says more than the exit
            if problems:
                last = " | ".join(res.tail[-2:])
                raise CheckFailed(_observed(ctx, node, "; ".join(problems) + (
                    f" (last output: {last})" if last and res.returncode != want["exit"] else "")))
            return seen

        def on_target(ctx: "StepContext", node: Any) -> str:
            r = result if node is None else Result(step_id)  # nodes run in parallel: one Result each
            r.node, r.vars = node, values
            seen: list[str] = []
            with self._secret_files(secret_files, values) as (paths, fds):
                runs = [[paths.get(a, a) for a in argv] for argv in argvs]
                for i, argv in enumerate(runs):
                    parts = [step_id, _safe(node.name) if node else "", _safe(_item_name(items[i])) if each else ""]
                    log_name = ".".join(p for p in parts if p) + ".log" if (node or each) else None
                    seen = run_one(ctx, r, node, argv, log_name, fds)
            return self._finish(ctx, r, result, node, seen, then)

        def act(ctx: "StepContext") -> str:
            self._require_files(needs_files, values, bool(on))
            if not on:
                return on_target(ctx, None)
            from ._compose_steps import run_on_nodes

            return run_on_nodes(ctx, self.env.deploy.compose, lambda node: on_target(ctx, node))

        expected = self._describe(want, then, values) + (f" (or the output says {also_ok!r})" if also_ok else "") \
            + (f"; watched for {watch}, then stopped" if watch else "")
        try:
            result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                      expect=expected, command=shown, action=act, mutating=mutating,
                                      required=required)
        except StepFailed as exc:
            self._decide(on_failure, step_id, exc.message)
            raise
        if result.outcome == "failed":
            self._decide(on_failure, step_id, str(result.record.get("message", "")))
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
            method, _, url = render_text(request.strip(), self.env, values).partition(" ")
            url = url.strip()
            if method.upper() not in ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH") or not url:
                raise ParamsError([f"`{request}` is not a request like `GET {{services.scanner}}/healthz`"])
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
    def _finish(self, ctx: "StepContext", r: Result, result: Result, node: Any, seen: list[str],
                then: Sequence[Check]) -> str:
        if node is not None:
            result.exit, result.text, result.json = r.exit, r.text, r.json  # (the last node's, for later cells)
        notes = self._then(ctx, r, then)
        if r.values:
            result.values.update(r.values)
            ctx.data["values"] = {k: v for k, v in r.values.items() if isinstance(v, (str, int, float, bool))}
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
                    result.values.update((rec.get("data") or {}).get("values") or {})
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
        from ._steps import NotApplicable

        def act(ctx: "StepContext") -> str:
            raise NotApplicable(why)

        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                  expect=describe(want), command=template, action=act)
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
        if not isinstance(items, (list, tuple)) or not items:
            raise ParamsError([f"each {name}: {source} is not a non-empty list"])
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

    def _tool_env(self, values: Mapping[str, Any], extra: Mapping[str, str] | None,
                  program: str = "") -> dict[str, str]:
        """The tool's environment: ``tools.env`` when the program is one of the Stella Ops CLIs
        (``tools.env_for``), and the cell's ``env``, secrets resolved now; ``tools.path`` appended to
        ``PATH``."""
        tools = self.env.tools
        ours = {os.path.basename(p) for p in (*tools.env_for, tools.stellaops_cli)}
        out: dict[str, str] = {}
        base = tools.env if os.path.basename(program) in ours else {}
        for name, raw in {**base, **(extra or {})}.items():
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
_WHOLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_.-]*)\}$")


_SECRET_FIELD = re.compile(r"\{[A-Za-z_][A-Za-z0-9_.-]*\}")


def _clock() -> dict[str, str]:
    """The time names a cell may use: ``{now}`` as ``date -Iseconds`` (UTC), ``{now_minute}`` as
    ``date +%Y%m%d%H%M`` (UTC)."""
    import time

    t = time.gmtime()
    return {"now": time.strftime("%Y-%m-%dT%H:%M:%SZ", t), "now_minute": time.strftime("%Y%m%d%H%M", t)}


def _word(value: Any) -> str:
    return "true" if value is True else "false" if value is False else "unset" if value is None else str(value)


def _observed(ctx: "StepContext", node: Any, text: str) -> str:
    """A step's failure names expected and observed; on a node, the node's part names only what it saw
    (the step then says "expected ...; observed node NAME: ...")."""
    return text if node is not None else f"expected {ctx.expect}; observed {text}"


def _host(node: Any) -> dict[str, str]:
    return {"DOCKER_HOST": node.docker_host}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def _item_name(item: Mapping[str, Any]) -> str:
    return "-".join(str(v) for v in item.values())


def _keep(ctx: "StepContext", result: Result, node: str | None = None) -> None:
    """Parsed output goes into the step's record (masked, like all of it) when small enough, so a
    resumed run can hand it on; always into an artifact (one per node on compose nodes)."""
    if result.json is None:
        return
    text = _json.dumps(result.json, indent=2, default=str)
    ctx.artifact(f"{ctx.step_id}{'.' + _safe(node) if node else ''}.json", text)
    if len(text) <= _KEEP_BYTES and node is None:
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

