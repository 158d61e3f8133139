"""Deploy mode ``compose``: the mechanics behind the compose cells of the notebooks.

The runbook's compose lines are cells (``rb.sh(..., on="each node")`` in ``04_preflight``,
``05_apply`` and ``08_rollback``).  This module gives them what they need: :func:`run_on_nodes`
runs a cell's command on every node of ``deploy.compose.nodes`` -- concurrently, at most
``deploy.compose.parallelism`` at a time, one log artifact per node and command, a per-node
outcome in the step's ``data.nodes``; when a node fails, nodes not yet started are not started,
the running ones finish, and the step fails naming the node -- and :func:`containers_healthy`
checks the engine's own healthchecks after ``docker compose ps``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..config.params import ComposeDeploy, ComposeNode, parse_duration
from ..engine.steps import NotApplicable, Runbook, StepContext
from ..errors import CheckFailed, CutoverError, StepFailed
from ..evidence.evidence import iso, utc_now
from . import compose as dc

__all__ = ["containers_healthy", "run_on_nodes"]

OWNER = "DevOps engineer"


def _compose(rb: Runbook) -> ComposeDeploy:
    c = rb.env.deploy.compose
    if c is None:
        raise NotApplicable(f"deploy mode is {rb.env.deploy.mode}; there are no compose nodes")
    return c


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
        config_error: CutoverError | None = None
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
                    if exc.exit_code == 2 and config_error is None:
                        config_error = exc  # the tool or the params are wrong, not the node: exit 2
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
        if config_error is not None:
            raise config_error
        if failures:
            skipped = [n for n, r in self.report.items() if r["outcome"] == "not started"]
            more = f" (not started: {', '.join(skipped)})" if skipped else ""
            raise StepFailed("; ".join(failures) + more)
        if len(self.report) == 1:
            return next(iter(self.report.values()))["observed"]
        return f"{len(self.report)} nodes: " + "; ".join(f"{n}: {r['observed']}" for n, r in self.report.items())


class _NotStarted(Exception):
    pass


def run_on_nodes(ctx: StepContext, c: ComposeDeploy | None, work: Callable[[ComposeNode], str]) -> str:
    """``work(node)`` on every compose node, at most ``parallelism`` at a time; a failed node stops
    the nodes not yet started, the running ones finish; per-node outcomes in the step's data."""
    if c is None:
        raise NotApplicable("there are no compose nodes (deploy.compose is missing)")
    return _Nodes(ctx, c).run(work)


def containers_healthy(within: str = "{compose.health_timeout}") -> Any:
    """A check for the cell that runs ``docker compose ... ps --format json`` on each node: every
    service of ``compose.services`` has a running, healthy container on the node (the engine's own
    healthchecks, polled with backoff until ``within``); the containers are kept as an artifact."""
    from ..config.template import render_text
    from ..engine.result import NamedCheck as _Check

    def check(ctx: StepContext, result: Any) -> str:
        rb, node = ctx.rb, result.node
        c = _compose(rb)
        if node is None:
            raise CheckFailed("containers_healthy needs the cell to run on=\"each node\"")
        timeout = parse_duration(render_text(within, rb.env)).total_seconds()
        rows = dc.parse_ps(result.text)
        project = next((r.get("Project") for r in rows if r.get("Project")), None) or _project_name(rb, c.file)
        polls, t0 = 0, time.monotonic()
        with dc.engine_client(node.name, node.docker_host, rb.env.timeouts.http.total_seconds()) as client:
            def probe() -> list[dc.ContainerHealth]:
                nonlocal polls
                polls += 1
                return dc.project_health(client, project)

            ok, last, problems = dc.wait_healthy(probe, list(c.services), timeout)
        ctx.artifact(f"{ctx.step_id}.{_safe(node.name)}.containers.json", json.dumps(
            {"node": node.name, "docker_host": node.docker_host, "project": project, "healthy": ok, "polls": polls,
             "containers": [r.as_dict() for r in last]}, indent=2))
        row = (ctx.data.get("nodes") or {}).get(node.name)
        if row is not None:  # (this node's own row of the step's per-node evidence)
            row["containers"] = {r.service: f"{r.state}/{r.health}" for r in last}
            row["images"] = sorted({r.image for r in last})
        if not ok:
            raise CheckFailed(f"not healthy after {time.monotonic() - t0:.0f}s (deadline {timeout:g}s): "
                              + "; ".join(problems))
        return f"{len(last)} containers running and healthy ({', '.join(sorted({r.image for r in last}))})"

    return _Check(f"every service of compose.services running and healthy within {within}", check)


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


