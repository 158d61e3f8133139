"""``rb.sh`` and ``rb.http``: a runbook line in a cell, turned into a step.

The cell holds the runbook's own command or request and its expected result::

    rb.http("5.api-health", "GET {services.scanner}/healthz",
            expect={"status": 200, "json": {"status": "Healthy"}})
    scan = rb.sh("5.scan-submit",
                 "{tools.stellaops_cli} scan submit --profile {tools.profile} --sbom {samples.sbom} --output json",
                 expect={"exit": 0, "json": {"status": "completed"}, "within": "{slo.scan}"},
                 then=[signed_dsse(at="report.dsse")])

The library does the rest: fills the template from params (:mod:`.template`), gives the
tool its environment (``tools.env``, secrets resolved only here) and ``PATH`` (``tools.path``),
runs it with a timeout (``within`` or ``timeouts.command``), or plans it in a dry run,
compares what it saw with ``expect`` (:mod:`.expect`) and with each ``then`` check (small
functions named as the runbook words them, e.g. "signed DSSE"), and records the step.
The returned :class:`Result` hands later cells what this one produced: ``scan["attestation.uuid"]``.
"""


from __future__ import annotations

import json as _json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..adapters.shell import render
from ..config.secrets import mask
from ..config.template import NotNeeded, render_args, render_text
from ..errors import CheckFailed, OutcomeUnknown, ParamsError, StepFailed, ToolMissing
from .cellmech import CellMechanics
from .result import (
    _WHOLE,
    Check,
    Result,
    _clock,
    _host,
    _item_name,
    _keep,
    _no_credentials_in,
    _observed,
    _safe,
    _seconds,
    _title,
)

if TYPE_CHECKING:  # pragma: no cover
    from .steps import StepContext

__all__ = ["Actions", "Check", "Result"]


class Actions(CellMechanics):
    """Mixed into :class:`~cutover_lib.Runbook`: the cell-level verbs ``sh`` and ``http``."""

    # ------------------------------------------------------------------ commands
    def sh(self, step_id: str, command: str, *, title: str | None = None, owner: str | None = None,
           expect: Mapping[str, Any] | None = None, then: Sequence[Check] = (), mutating: bool = False,
           required: bool = True, env: Mapping[str, str] | None = None, vars: Mapping[str, Any] | None = None,
           inside: str | None = None, parse: str | None = None, mode: str | None = None, on: str | None = None,
           each: Mapping[str, Any] | None = None, after_change: bool = False, also_ok: str | None = None,
           needs_files: Sequence[str] = (), new_paths: Sequence[str] = (), on_failure: str | None = None,
           watch: str | None = None,
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
        exists"); ``needs_files`` are files (templates) that must exist before anything runs,
        ``new_paths`` paths that must not (a backup never writes into an earlier one);
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
        if not items:  # (each= over an empty list)
            not_here = not_here or f"{next(iter((each or {}).values()))} is empty: nothing to run"
        if not_here:
            return self._not_applicable(step_id, title, owner, want, shown or command, result, not_here)

        def run_one(ctx: "StepContext", r: Result, node: Any, argv: list[str], log_name: str | None,
                    fds: tuple[int, ...] = ()) -> list[str]:
            tool_env = {**self._tool_env(values, env, program=argv[len(prefix)]), **prefix_env,
                        **(_host(node) if node else {})}
            cwd = self.path(self.env.deploy.compose.project_dir) if node and self.env.deploy.compose else None
            try:
                res = ctx.sh(argv, timeout=watched or within or self.env.timeouts.command.total_seconds(), env=tool_env,
                             check=False, capture_stdout=parse is not None, cwd=cwd, log_name=log_name, pass_fds=fds)
            except ToolMissing as exc:  # a program params name ({tools.stellaops_cli}): say which key
                key = _WHOLE.match(command.split(maxsplit=1)[0]) if not prefix else None
                if key is None or exc.program is None:
                    raise
                raise ToolMissing(exc.message, hint=f"install {exc.program}, or set {key.group(1)} in params to "
                                                    f"the program's path", program=exc.program) from None
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
                from ..adapters.compose import map_cli_failure  # engine down, compose plugin missing: named per node

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
            self._require_new(new_paths, values)
            if not on:
                return on_target(ctx, None)
            from ..adapters.compose_steps import run_on_nodes

            return run_on_nodes(ctx, self.env.deploy.compose, lambda node: on_target(ctx, node))

        expected = self._describe(want, then, values) + (f" (or the output says {also_ok!r})" if also_ok else "") \
            + (f"; watched for {watch}, then stopped" if watch else "")
        try:
            result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                      expect=expected, command=shown, action=act, mutating=mutating,
                                      required=required)
        except OutcomeUnknown:
            raise  # interrupted earlier and not confirmed: nothing ran now, nothing to roll back
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
             mutating: bool = False, required: bool = True, wait: bool = False, auth: str | None = None,
             files: Mapping[str, Sequence[str | tuple[str, str]]] | None = None,
             when: Mapping[str, Any] | None = None) -> Result:
        """Make the runbook's request ``"METHOD URL"`` (a template over params) as step ``step_id``.

        ``expect`` (default ``{"status": 200}``) may hold ``json`` (a subset of the answer),
        ``contains`` (text the body must contain), ``headers`` (response headers and their values,
        e.g. a registry's ``Docker-Content-Digest``) and ``within`` (a duration).  ``wait`` repeats
        the request until it meets ``expect`` or ``timeouts.health`` runs out (a service that is
        still starting).  ``auth`` (``"{ticket.token}"``: a params secret reference) is sent as
        ``Authorization: Bearer``, resolved only now and never shown; ``files`` (part name -> paths,
        or (file name, path) pairs) makes it a multipart upload (a ticket's attachments); ``when``
        as for ``rb.sh``."""
        want = dict(expect or {"status": 200})
        want.setdefault("status", 200)
        result = Result(step_id)
        values = dict(vars or {})
        unmet = self._unmet(when)
        if unmet:
            return self._not_applicable(step_id, title, owner, want, request, result, unmet)
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
        token = None
        if auth is not None:
            try:
                token = self._secret_param(auth, what="the auth token")
            except ParamsError as exc:
                return self._failed_step(step_id, title, owner, want, request, exc, mutating, required, result)

        def once(ctx: "StepContext") -> str:
            sent = dict(headers or {})
            if token is not None:
                sent["Authorization"] = f"Bearer {token.resolve()}"  # (registered for masking as resolved)
            upload = None
            if files is not None:
                named = [(part, *((Path(f).name, Path(f)) if isinstance(f, str) else (f[0], Path(f[1]))))
                         for part, given in files.items() for f in given]
                if not named:
                    from .steps import NotApplicable

                    raise NotApplicable("no file to send (the step that keeps them kept none)")
                try:
                    upload = [(part, (name, path.read_bytes())) for part, name, path in named]
                except OSError as exc:
                    raise CheckFailed(f"cannot read {exc.filename} to send it: {exc.strerror}") from None
                ctx.data["uploaded"] = [name for _, name, _ in named]
            r = self._http_client().request(method, url, json=json, headers=sent, files=upload)
            result.status, result.elapsed_s, result.text = r.status, r.elapsed_s, r.text
            result.headers = {k.lower(): v for k, v in r.headers.items()}
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
            from ..adapters.http import wait_until

            return wait_until(lambda: once(ctx), deadline_s=self.env.timeouts.health.total_seconds(),
                              what=f"{method} {url}")

        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner,
                                  expect=self._describe(want, then, values), command=f"{method} {url}", action=act,
                                  mutating=mutating, required=required)
        return self._restored(result)

    # ------------------------------------------------------------------ a browser
    def browse(self, step_id: str, url: str, *, login: Mapping[str, str], pages: str | Mapping[str, str],
               within: str, title: str | None = None, owner: str | None = None, required: bool = True) -> Result:
        """In a real browser (Chromium, ``smoke.browser``), log in at ``url`` + ``login["path"]`` as
        ``login["user"]`` with ``login["password"]`` (a secret reference, resolved now), then load each
        page of ``pages`` (``{path: marker}``, or a template naming such a params mapping): each must show
        its marker (text its HTML contains) within ``within``.  The form's selectors (``user_field``,
        ``password_field``, ``submit``) come from ``login`` or else ``smoke.web_login``.  A screenshot of
        each page is kept as ``<step>.<page>.png``; ``result["pages./"]`` is a page's seconds."""
        from ..adapters.browser import LoginForm, PageSeen, visit

        result = Result(step_id)
        form = self.env.smoke.web_login
        try:
            base = render_text(url, self.env).rstrip("/")
            _no_credentials_in(base, url)
            fields = {k: render_text(login[k], self.env) if k in login else getattr(form, k)
                      for k in ("path", "user", "user_field", "password_field", "submit")}
            secret = self._secret_param(login.get("password", ""))
            wanted = self._pages(pages)
            budget = self._duration(within, {})
        except (ParamsError, CheckFailed, KeyError) as exc:
            error = exc if not isinstance(exc, KeyError) else ParamsError([f"login={{...}} has no {exc}"])
            return self._failed_step(step_id, title, owner, {}, f"browse {url}", error, False, required, result)
        budget_s = float(budget or 0)
        shown = f"browse {base}: log in at {fields['path']} as {fields['user']}; open " + \
            ", ".join(f"{p} (marker {m!r})" for p, m in wanted.items())
        expect = f"logged in; every page shows its marker within {_seconds(budget_s)}"

        def act(ctx: "StepContext") -> str:
            password = secret.resolve()  # (registered for masking before anything can show it)
            form_ = LoginForm(base + fields["path"], fields["user"], password, fields["user_field"],
                              fields["password_field"], fields["submit"])

            def keep(name: str, png: bytes) -> None:
                ctx.artifact(f"{step_id}.{name}.png", png)

            seen: list[PageSeen] = visit(base, form_, wanted, executable=self.env.smoke.browser,
                                         timeout_s=self.env.timeouts.http.total_seconds(), keep=keep)
            ctx.data["pages"] = [{"path": s.path, "marker": s.marker, "seconds": round(s.seconds, 3),
                                  "problem": s.problem, "reloaded": s.reloaded} for s in seen]
            result.json = {"pages": {s.path: round(s.seconds, 3) for s in seen}}
            problems = [f"{s.path}: {s.problem}" if s.problem else
                        f"{s.path} shows {s.marker!r} after {s.seconds:.2f}s, over {_seconds(budget_s)}"
                        for s in seen if s.problem or s.seconds > budget_s]
            if problems:
                raise CheckFailed(f"expected {ctx.expect}; observed " + "; ".join(problems))
            return f"logged in as {fields['user']}; " + ", ".join(
                f"{s.path} {s.seconds:.2f}s" + (" (loaded twice: the host's network changed)" if s.reloaded else "")
                for s in seen) + \
                f" (< {_seconds(budget_s)}); {len(seen)} screenshots kept"

        result.record = self.step(step_id, title or _title(step_id), owner=owner or self.owner, expect=expect,
                                  command=shown, action=act, required=required)
        return result

