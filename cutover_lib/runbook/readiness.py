"""Section 2's readiness activities (T-24h .. T-30m) and the T+45m decision that are more than one
command, request or bridge message (those are cells: ``rb.sh``, ``rb.http``, ``rb.bridge``), as steps."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from ..adapters.bridge import post_checked
from ..config.params import SecretStore
from ..engine.steps import Runbook, StepContext
from ..errors import CheckFailed
from ..evidence.evidence import utc_now
from ..evidence.report import latest_steps

__all__ = ["announce_smoke", "every_passed", "go_no_go", "secret_stores", "smoke_deadline"]


def _dir_store(rb: Runbook, name: str, store: SecretStore) -> str:
    assert store.path
    folder = rb.path(store.path)
    if not folder.is_dir():
        raise CheckFailed(f"secret store {name} not found at {store.path}",
                          hint=f"mount the secret volume at {store.path}, or fix secret_stores.{name}.path in params")
    present = {p.name for p in folder.iterdir() if p.is_file() and p.stat().st_size > 0}  # names and sizes only
    missing = [k for k in store.keys if k not in present]
    if missing:
        raise CheckFailed(f"expected keys {', '.join(store.keys)}; observed {name} lacks {', '.join(missing)}")
    return f"{name}: all {len(store.keys)} keys present ({', '.join(store.keys)})"


def secret_stores(rb: Runbook, section: str = "4.1") -> None:
    """Every secret store holds every required key -- key names only, values are never read."""
    prefix = "2.t-24h" if section.startswith("2") else section
    for name, store in rb.env.secret_stores.items():
        if store.backend == "dir":
            rb.step(f"{prefix}.secret-{name}", f"Secret store {name} holds its keys", owner="DevOps lead",
                    expect=f"keys {', '.join(store.keys)} present", command=f"ls {store.path}",
                    action=lambda ctx, n=name, s=store: _dir_store(rb, n, s))
        else:
            from ..adapters.helm_steps import secret_store_keys

            secret_store_keys(rb, name, store, step_prefix=prefix)


def every_passed(rb: Runbook, step_id: str, title: str, *, steps: list[str], owner: str) -> dict[str, Any]:
    """The verdict over checks that each run to the end (``required=False``, so every one is
    checked and reported): passed when the latest record of every step of this run whose id is one
    of ``steps`` (or starts with one ending in ``-``) passed; otherwise failed, naming each."""
    def mine(sid: str) -> bool:
        return any(sid == p or (p.endswith("-") and sid.startswith(p)) for p in steps)

    def act(ctx: StepContext) -> str:
        latest = {sid: r for sid, r in latest_steps(rb.run.read_ledger()).items() if mine(sid)}
        ctx.check(bool(latest), f"none of {', '.join(steps)} ran in this run")
        bad = [f"{sid} {r['outcome']}" for sid, r in latest.items() if r["outcome"] not in ("passed", "skipped")]
        ctx.check(not bad, "; ".join(bad))
        return f"all {len(latest)} passed: {', '.join(latest)}"

    return rb.step(step_id, title, owner=owner, expect=f"every one of {', '.join(steps)} passed", action=act)


_READINESS = "2.t-30m.readiness"  # the verdict's step (its own earlier NO-GO is not an item)


def go_no_go(rb: Runbook) -> dict[str, Any]:
    """T-30m, before the guild leads decide: each earlier slot of Section 2 (T-24h .. T-2h) has a
    passed run of this release, and every step of this run so far passed (the cells above it: the
    dashboards, each service's health endpoint) -- its latest attempt.  Every red item is named;
    any red item is a NO-GO."""
    from ..engine.slots import slot_runs

    def act(ctx: StepContext) -> str:
        red: list[str] = []
        rows = slot_runs(rb.root, rb.env)
        for slot, run in ((i["slot"], i["run"]) for i in rows if i["slot"].offset < timedelta(minutes=-30)):
            where = (rb.env.rehearsal.env or rb.env.name) if slot.phase == "rehearsal" else rb.env.name
            if run is None:
                red.append(f"{slot.label}: no run of release {rb.env.release} in {where} "
                           f"(cutover run --env {where} --phase {slot.name})")
            elif run["outcome"] != "passed":
                red.append(f"{slot.label}: {run['run']} {run['outcome']}")
            elif not run["sealed"]:
                red.append(f"{slot.label}: {run['run']} is not sealed")
            elif (datetime.fromisoformat(run["started"]) if run.get("started") else slot.planned) < \
                    slot.planned - timedelta(hours=24):  # an earlier attempt's, not this change window's
                red.append(f"{slot.label}: the newest run {run['run']} started more than a day before the slot's "
                           f"hour ({slot.planned:%Y-%m-%d %H:%M} UTC): run it again "
                           f"(cutover run --env {where} --phase {slot.name})")
        mine = {sid: r for sid, r in latest_steps(rb.run.read_ledger()).items()  # the latest attempt of each,
                if sid != _READINESS}  # this verdict's own earlier NO-GO aside
        if not mine:
            red.append("no step ran before this one in this run: nothing says the dashboards and the services "
                       "are green")
        red += [f"{r['step_id']} ({r['outcome']}: {r.get('observed') or r.get('message') or ''})".replace(": )", ")")
                for r in mine.values() if r["outcome"] == "failed"]
        ctx.artifact(f"{_READINESS}.json", json.dumps({"red": red, "slots": [
            {"slot": i["slot"].label, "run": i["run"]} for i in rows]}, indent=2))
        ctx.check(not red, "NO-GO: " + "; ".join(red))
        return f"green: T-24h .. T-2h passed; this run's {len(mine)} steps passed"

    return rb.step(_READINESS, "Readiness green: earlier slots, dashboards, services", owner="Cutover lead",
                   expect="every earlier slot passed; every step above (dashboards, health endpoints) passed",
                   action=act)


def smoke_deadline(rb: Runbook) -> dict[str, Any]:
    """T+45m (Section 2): "smoke tests complete (Section 5)" -- the newest T0 run of this release
    recorded its smoke decision by T0 + ``slo.smoke_deadline``, and it was GO.  Otherwise the
    step fails naming what happened (no T0 run, still running and where, rollback decided, late)."""
    from ..engine.slots import slot_runs
    from ..evidence.evidence import RunFolder

    deadline = rb.env.t0 + rb.env.slo.smoke_deadline
    limit = f"T+{int(rb.env.slo.smoke_deadline.total_seconds() // 60)}m"

    def act(ctx: StepContext) -> str:
        t0_run = next((i["run"] for i in slot_runs(rb.root, rb.env) if i["slot"].label == "T0"), None)
        ctx.check(t0_run is not None, f"no T0 run of release {rb.env.release} in {rb.env.name}: nothing to decide")
        assert t0_run is not None
        ctx.data["t0_run"] = t0_run
        folder = RunFolder.open(rb.root / "executed" / rb.env.name / t0_run["run"])
        decisions = [r for r in folder.read_ledger() if r.get("kind") == "decision"]
        if not decisions:
            from ..adapters.notify import ledger_status

            running = ledger_status(folder)[0] or "between steps"
            ctx.check(False, f"no smoke decision in {t0_run['run']} ({t0_run['outcome']}; at {running}) "
                             f"at {(utc_now() - rb.env.t0).total_seconds() / 60:.0f} min after T0")
        last = decisions[-1]
        at = datetime.fromisoformat(last["ts"])
        ctx.data["decision"] = {"decision": last.get("decision"), "reason": last.get("reason"), "at": last["ts"],
                                "minutes_since_t0": round((at - rb.env.t0).total_seconds() / 60, 1)}
        since = f"T+{(at - rb.env.t0).total_seconds() / 60:.0f}m"
        ctx.check(last.get("decision") == "go", f"{last.get('decision')} decided at {since} in {t0_run['run']}: "
                                                f"{last.get('reason', '')}")
        ctx.check(at <= deadline, f"GO decided at {since}, after the {limit} deadline ({t0_run['run']})")
        return f"GO decided at {since} (deadline {limit}) in {t0_run['run']}: {last.get('reason', '')}"

    return rb.step("2.t45m.smoke-decision", f"Smoke tests complete by {limit}", owner="Cutover lead",
                   expect=f"the T0 run's smoke decision is GO, recorded by {deadline:%H:%M} UTC ({limit})",
                   action=act, required=False)


def announce_smoke(rb: Runbook, result: dict[str, Any]) -> dict[str, Any]:
    """T+45m: "announce success or trigger rollback" -- on the bridge, from the decision step's result."""
    run = (result.get("data") or {}).get("t0_run") or {}
    if result.get("outcome") == "passed":
        text = (f":tada: **Success**: release {rb.env.release} is live on {rb.env.name} ({rb.env.change_ticket}); "
                f"{result.get('observed', '')}")
    else:
        text = (f":rotating_light: **Trigger rollback** (Section 6) of {rb.env.name}: "
                f"{result.get('message') or 'no GO'}."
                f" Cutover lead: cutover run --env {rb.env.name} --phase rollback"
                + (f" (once {run['run']} has stopped)" if run.get("outcome") == "running" else ""))
    def act(ctx: StepContext) -> str:
        posted = post_checked(rb.env, ctx, text, "t45m")
        # the slot fails with its decision: a T+45m without a GO is a failed slot, announced
        ctx.check(result.get("outcome") == "passed",
                  f"announced 'trigger rollback' ({posted}): {result.get('message')}")
        return f"success announced ({posted})"

    return rb.step("2.t45m.announce", "Announce success or trigger rollback", owner="Cutover lead",
                   expect="success announced on the bridge (else 'trigger rollback' announced, and this slot fails)",
                   mutating=True, command=f"POST #{rb.env.bridge.channel}: {text[:60]}…", action=act)
