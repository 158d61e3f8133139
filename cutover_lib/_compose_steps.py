"""Deploy mode ``compose``: the runbook's compose lines as steps, on every compose node.

==============================  =====================================================================
step                            what runs, on each node of ``deploy.compose.nodes``
==============================  =====================================================================
``3.network`` / ``4.1.network``  ``docker network create stellaops_frontdoor`` (engine API; exists passes)
``2.t-12h.validate-<profile>``   ``docker compose -f FILE config`` (local; output archived)
``4.2.pull``                     ``docker compose --env-file prod.env -f docker-compose.prod.yaml pull``
``4.2.up``                       ``... up -d``
``4.2.health``                   ``... ps --all --format json``, then every container healthy (engine)
``4.2.logs``                     ``docker logs <container> --tail 50`` per service
``6.compose-down``               ``docker compose --env-file prod.env -f ...prod.yaml down``
``6.compose-up-previous``        ``docker compose --env-file stage.env -f ...stage.yaml up -d``
``6.health-previous``            as 4.2.health, on the previous release's files
==============================  =====================================================================

Nodes run concurrently, at most ``deploy.compose.parallelism`` at a time.  Each step
writes one log artifact per node and command (``4.2.pull.<node>.log``), lists every
command with its ``DOCKER_HOST`` in the ledger, and keeps a per-node outcome in the step's
``data.nodes``.  When a node fails, nodes not yet started are not started, the running ones
finish, the step records all of it and then fails naming the node: the phase stops there.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import _compose as dc
from ._errors import CutoverError, StepFailed, ToolMissing
from ._evidence import iso, utc_now
from ._params import ComposeDeploy, ComposeNode
from ._shell import render
from ._steps import NotApplicable, Runbook, StepContext

__all__ = ["ComposeSteps"]

OWNER = "DevOps engineer"


def _compose(rb: Runbook) -> ComposeDeploy:
    c = rb.env.deploy.compose
    if c is None:
        raise NotApplicable(f"deploy mode is {rb.env.deploy.mode}; there are no compose nodes")
    return c


def _cwd(rb: Runbook, c: ComposeDeploy) -> Path:
    return rb.path(c.project_dir)


def _host_env(node: ComposeNode) -> dict[str, str]:
    return {"DOCKER_HOST": node.docker_host}


def _per_node_command(c: ComposeDeploy, argv: list[str]) -> str:
    """What the step shows (and a dry run plans): the argv once per node, with its DOCKER_HOST."""
    return " ; ".join(render(argv, _host_env(n)) for n in c.nodes)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


class _Nodes:
    """Run ``work(node)`` on every node of a step, bounded, and keep per-node evidence."""

    def __init__(self, ctx: StepContext, c: ComposeDeploy) -> None:
        self.ctx, self.c = ctx, c
        self._lock = threading.Lock()
        self.report: dict[str, dict[str, Any]] = {n.name: {"docker_host": n.docker_host, "outcome": "not started"}
                                                  for n in c.nodes}
        ctx.data["nodes"] = self.report

    def note(self, node: ComposeNode, **fields: Any) -> None:
        with self._lock:
            self.report[node.name].update(fields)

    def run(self, work: Callable[[ComposeNode], str]) -> str:
        stop = threading.Event()

        def one(node: ComposeNode) -> str:
            if stop.is_set():
                raise _NotStarted()
            self.note(node, outcome="running", started=iso(utc_now()))
            try:
                return work(node)
            except BaseException:
                stop.set()  # nodes that have not started yet are not started
                raise
            finally:
                self.note(node, ended=iso(utc_now()))

        failures: list[str] = []
        workers = max(1, min(self.c.parallelism, len(self.c.nodes)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compose-node") as pool:
            futures: list[tuple[ComposeNode, Future[str]]] = [(n, pool.submit(one, n)) for n in self.c.nodes]
            for node, fut in futures:
                try:
                    observed = fut.result()
                except _NotStarted:
                    self.note(node, outcome="not started", observed="not started: an earlier node failed")
                    continue
                except CutoverError as exc:
                    text = exc.one_line()
                    self.note(node, outcome="failed", observed=text)
                    failures.append(f"node {node.name}: {text}")
                    continue
                except Exception as exc:  # noqa: BLE001 - reported per node, then the step fails
                    text = f"unexpected {type(exc).__name__}: {exc}"
                    self.note(node, outcome="failed", observed=text)
                    failures.append(f"node {node.name}: {text}")
                    continue
                self.note(node, outcome="passed", observed=observed)
        # machine output (ps --format json) stays in its log artifact, not in the status card
        self.ctx.lines[:] = [ln for ln in self.ctx.lines if not ln.lstrip().startswith(("{\"", "[{"))]
        for name, row in self.report.items():
            self.ctx.log(f"[{name}] {row['outcome']}: {row.get('observed', '')}")
        if failures:
            skipped = [n for n, r in self.report.items() if r["outcome"] == "not started"]
            more = f" (not started: {', '.join(skipped)})" if skipped else ""
            raise StepFailed("; ".join(failures) + more)
        if len(self.report) == 1:
            return next(iter(self.report.values()))["observed"]
        return f"{len(self.report)} nodes: " + "; ".join(f"{n}: {r['observed']}" for n, r in self.report.items())


class _NotStarted(Exception):
    pass


def _run_cli(ctx: StepContext, rb: Runbook, nodes: _Nodes, node: ComposeNode, argv: list[str],
             log_name: str) -> list[str]:
    """One CLI command on one node; failures mapped to one clear line naming the node."""
    result = ctx.sh(argv, env=_host_env(node), cwd=_cwd(rb, nodes.c), check=False, log_name=log_name)
    with nodes._lock:
        nodes.report[node.name].setdefault("commands", []).append(
            {"command": result.command, "rc": result.returncode, "duration_s": round(result.duration_s, 3),
             "log": log_name})
    if not result.ok:
        raise dc.map_cli_failure(node.name, node.docker_host, result.command, result.returncode,
                                 result.tail, result.timed_out)
    if result.log_path is not None:
        return result.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    return result.tail


def _files(rb: Runbook, c: ComposeDeploy, file: str, env_file: str) -> tuple[str, str]:
    return file, dc.resolve_env_file(_cwd(rb, c), file, env_file)


class ComposeSteps:
    """The deploy-mode protocol of :mod:`cutover_lib._deploy` for compose nodes."""

    # ------------------------------------------------------------------ 3 / 4.1
    def network(self, rb: Runbook, section: str) -> None:
        c = rb.env.deploy.compose
        name = c.network if c else "stellaops_frontdoor"
        shown = _per_node_command(c, dc.network_argv(name)) if c else render(dc.network_argv(name))

        def act(ctx: StepContext) -> str:
            comp = _compose(rb)
            nodes = _Nodes(ctx, comp)

            def work(node: ComposeNode) -> str:
                ctx.commands.append(render(dc.network_argv(name), _host_env(node)))
                with dc.engine_client(node.name, node.docker_host, rb.env.timeouts.http.total_seconds()) as client:
                    outcome = dc.ensure_network(client, name)
                said = "created" if outcome == "created" else "already exists (HTTP 409: passes)"
                nodes.note(node, network=outcome)
                return f"network {name} {said}"

            return nodes.run(work)

        rb.step(f"{section}.network", f"External reverse proxy network {name}", owner=OWNER,
                expect=f"network {name} present on each compose host (created, or already there)",
                action=act, command=shown, mutating=True)

    # ------------------------------------------------------------------ T-12h
    def validate_profile(self, rb: Runbook, profile: str, path: str) -> None:
        argv = dc.compose_argv(path, None, "config")
        step_id = f"2.t-12h.validate-{_safe(profile).lower()}"

        def act(ctx: StepContext) -> str:
            dc.require_file(rb.root, path, f"deploy.profiles.{profile}")
            try:
                result = ctx.sh(argv, cwd=rb.root, check=False, log_name=f"{step_id}.log")
                if not result.ok:
                    raise dc.map_cli_failure(None, "", result.command, result.returncode,
                                             result.tail, result.timed_out)
            except ToolMissing as exc:
                # the lab deploy mode can run without Docker; compose mode cannot
                if rb.env.deploy.mode != "compose":
                    raise NotApplicable(f"{exc.message}; deploy mode is {rb.env.deploy.mode}") from exc
                raise
            services = 0
            if result.log_path is not None:
                text = result.log_path.read_text(encoding="utf-8", errors="replace")
                services = _count_services(text)
            return f"profile {profile} renders: {services} services"

        rb.step(step_id, f"validate-profiles: {profile} ({path})", owner=OWNER,
                expect=f"`docker compose config` renders {path} without errors", action=act,
                command=render(argv))

    # ------------------------------------------------------------------ 3
    def stage_secrets(self, rb: Runbook) -> None:
        def act(ctx: StepContext) -> str:
            raise NotApplicable("compose mode: staging secrets come from each node's env file and secret "
                                "store, there is no cluster to kubectl apply to")

        rb.step("3.stage-secrets", "Apply staging secrets", owner=OWNER,
                expect="stellaops-stage credentials align with the stage configuration", action=act,
                command="kubectl apply -f secrets/stage/*.yaml")

    # ------------------------------------------------------------------ 4.2
    def apply(self, rb: Runbook, section: str) -> None:
        c = rb.env.deploy.compose
        if c is None:
            _not_compose(rb, f"{section}.pull", "Pull images on each compose node")
            return
        file, env_file = _files(rb, c, c.file, c.env_file)
        release = rb.env.release
        self._compose_cli(rb, f"{section}.pull", f"Pull images of release {release} on each compose node",
                          f"every image of release {release} pulled on every node", file, env_file, ["pull"])
        try:
            self._compose_cli(rb, f"{section}.up", f"Deploy release {release} (up -d) on each compose node",
                              f"every service created or recreated on {release}", file, env_file, ["up", "-d"])
            self._health(rb, f"{section}.health", f"Containers healthy on {release}", file, env_file)
        finally:
            self._logs(rb, f"{section}.logs", file, env_file)

    # ------------------------------------------------------------------ 6
    def rollback(self, rb: Runbook) -> None:
        c = rb.env.deploy.compose
        if c is None:
            _not_compose(rb, "6.compose-down", "Take the release down on each compose node")
            return
        file, env_file = _files(rb, c, c.file, c.env_file)
        prev_file, prev_env = _files(rb, c, c.previous.file, c.previous.env_file)
        previous = rb.env.previous_release
        self._compose_cli(rb, "6.compose-down", f"Take release {rb.env.release} down on each compose node",
                          "every container of the failed release removed (volumes and logs kept)",
                          file, env_file, ["down"])
        try:
            self._compose_cli(rb, "6.compose-up-previous", f"Bring the previous release {previous} up",
                              f"every service running on {previous}", prev_file, prev_env, ["up", "-d"])
            self._health(rb, "6.health-previous", f"Containers healthy on {previous}", prev_file, prev_env)
        finally:
            self._logs(rb, "6.logs-previous", prev_file, prev_env)

    # ------------------------------------------------------------------ shared
    def _compose_cli(self, rb: Runbook, step_id: str, title: str, expect: str, file: str, env_file: str,
                     args: list[str]) -> None:
        c = _compose(rb)
        argv = dc.compose_argv(file, env_file, *args)

        def act(ctx: StepContext) -> str:
            cwd = _cwd(rb, c)
            dc.require_file(cwd, file, "deploy.compose.file" if not step_id.startswith("6.compose-up")
                            else "deploy.compose.previous.file")
            dc.require_file(cwd, env_file, "deploy.compose.env_file" if not step_id.startswith("6.compose-up")
                            else "deploy.compose.previous.env_file")
            nodes = _Nodes(ctx, c)

            def work(node: ComposeNode) -> str:
                lines = _run_cli(ctx, rb, nodes, node, argv, f"{step_id}.{_safe(node.name)}.log")
                return _summary(args[0], lines)

            return nodes.run(work)

        rb.step(step_id, title, owner=OWNER, expect=expect, action=act,
                command=_per_node_command(c, argv), mutating=True)

    def _health(self, rb: Runbook, step_id: str, title: str, file: str, env_file: str) -> None:
        c = _compose(rb)
        argv = dc.compose_argv(file, env_file, "ps", "--all", "--format", "json")
        expected = list(c.services)

        def act(ctx: StepContext) -> str:
            if rb.dry_run:
                raise NotApplicable("dry run: nothing was deployed, so there is no new container to watch")
            nodes = _Nodes(ctx, c)

            def work(node: ComposeNode) -> str:
                log = f"{step_id}.{_safe(node.name)}"
                rows = dc.parse_ps("\n".join(_run_cli(ctx, rb, nodes, node, argv, f"{log}.ps.log")))
                project = next((r.get("Project") for r in rows if r.get("Project")), None) or _project_name(rb, file)
                polls, t0 = 0, time.monotonic()
                with dc.engine_client(node.name, node.docker_host, rb.env.timeouts.http.total_seconds()) as client:
                    def probe() -> list[dc.ContainerHealth]:
                        nonlocal polls
                        polls += 1
                        return dc.project_health(client, project)

                    ok, last, problems = dc.wait_healthy(probe, expected, c.health_timeout.total_seconds())
                ctx.artifact(f"{log}.json", json.dumps(
                    {"node": node.name, "docker_host": node.docker_host, "project": project, "healthy": ok,
                     "polls": polls, "containers": [r.as_dict() for r in last]}, indent=2))
                nodes.note(node, containers={r.service: f"{r.state}/{r.health}" for r in last},
                           images=sorted({r.image for r in last}))
                if not ok:
                    waited = time.monotonic() - t0
                    raise StepFailed(f"not healthy after {waited:.0f}s (deadline {c.health_timeout.total_seconds():g}s): "
                                     + "; ".join(problems))
                return f"{len(last)} containers running and healthy ({', '.join(sorted({r.image for r in last}))})"

            return nodes.run(work)

        shown = _per_node_command(c, argv)
        want = ", ".join(expected) if expected else "every service of the project"
        rb.step(step_id, title, owner=OWNER, expect=f"{want}: running and healthy on every node", action=act,
                command=shown)

    def _logs(self, rb: Runbook, step_id: str, file: str, env_file: str) -> None:
        c = _compose(rb)

        def act(ctx: StepContext) -> str:
            if rb.dry_run:
                raise NotApplicable("dry run: no new containers to read logs from")
            nodes = _Nodes(ctx, c)

            def work(node: ComposeNode) -> str:
                project = _project_name(rb, file)
                with dc.engine_client(node.name, node.docker_host, rb.env.timeouts.http.total_seconds()) as client:
                    rows = dc.project_health(client, project)
                if not rows:
                    return "no containers"
                for r in rows:
                    _run_cli(ctx, rb, nodes, node, dc.logs_argv(r.container),
                             f"{step_id}.{_safe(node.name)}.{_safe(r.service)}.log")
                return f"last {dc.LOG_TAIL} log lines of {len(rows)} containers kept"

            return nodes.run(work)

        rb.step(step_id, "Keep the last 50 log lines of every service", owner=OWNER,
                expect="docker logs --tail 50 archived for every container on every node", action=act,
                command=_per_node_command(c, dc.logs_argv("<service>")), required=False)


def _not_compose(rb: Runbook, step_id: str, title: str) -> None:
    def act(ctx: StepContext) -> str:
        raise NotApplicable(f"deploy mode is {rb.env.deploy.mode}; params have no deploy.compose section")

    rb.step(step_id, title, owner=OWNER, expect="compose nodes to act on", action=act)


def _project_name(rb: Runbook, file: str) -> str:
    """The compose project of ``file``: its top-level ``name:``, else its folder (compose's rule)."""
    import re

    import yaml

    path = rb.path(_compose(rb).project_dir) / file
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        data = {}
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or "$" in name:
        name = path.resolve().parent.name
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def _count_services(text: str) -> int:
    import yaml

    body = "\n".join(ln for ln in text.splitlines() if not ln.startswith(("$ ", "# exit")))
    try:
        data = yaml.safe_load(body)
    except yaml.YAMLError:
        return 0
    return len(data.get("services") or {}) if isinstance(data, dict) else 0


def _summary(verb: str, lines: list[str]) -> str:
    body = [ln for ln in lines if ln.strip() and not ln.startswith(("$ ", "# exit"))]
    if verb == "pull":
        pulled = sum(1 for ln in body if ln.strip().endswith("Pulled"))
        shared = sum(1 for ln in body if "Skipped - Image is already being pulled" in ln)
        return f"pull done ({pulled} image(s) pulled, {shared} service(s) share them)"
    if verb == "up":
        started = sum(1 for ln in body if ln.strip().endswith(("Started", "Running")))
        return f"up -d done ({started} containers started or running)"
    if verb == "down":
        removed = sum(1 for ln in body if ln.strip().endswith("Removed") and "Container" in ln)
        return f"down done ({removed} containers removed)"
    return f"{verb} done"
