"""May this run start?  The checks a run passes before its first notebook, as strict on a resume
as on a first attempt: which runs can be resumed (and through which path), whether the params
changed since the run started, and -- before a production cutover -- the passed rehearsal of the
same release the runbook requires.  (The approved-plan check plans the run: it lives with the
runner.)"""

from __future__ import annotations

import datetime
import getpass
import socket
from pathlib import Path
from typing import Any

from ..config.params import Environment, format_duration, params_digest
from ..errors import GateNotApproved, UsageError
from ..evidence.evidence import RunFolder, utc_now
from ..evidence.tamper import verify_run
from .lock import checked_name

__all__ = ["open_for_resume", "params_changed", "passed_rehearsal"]


#: outcomes a run is finished with: its seal stands, a resume would rewrite what it proves
_FINAL = {"passed": "it passed", "rolled-back": "it was rolled back",
          "rollback-failed": "its rollback failed: resume the rollback, not the cutover"}


#: ledger records that mean a person stepped in during a run
_INTERVENTIONS = {"run-resume": "it was resumed", "waiver": "a gate was waived",
                  "params-changed": "its params were changed mid-run", "lock-taken-over": "its lock was taken over"}


def passed_rehearsal(env: Environment, executed: Path) -> dict[str, Any] | None:
    """The rehearsal a cutover here needs (params ``rehearsal``): the newest passed, sealed,
    untouched ``rehearsal`` run of this release in ``rehearsal.env``, ended within
    ``rehearsal.within``, with no manual intervention.  None when none is required; a cutover
    without one is refused (exit 3), naming why each candidate did not count."""
    need = env.rehearsal
    if not need.env:
        return None
    checked_name("environment", need.env, "set rehearsal.env to the name of a params/<env>.yaml, e.g. stage")
    now, why = utc_now(), []
    for path in sorted((executed / need.env).glob(f"*-{need.env}-rehearsal"), reverse=True):
        folder = RunFolder.open(path)
        m, records = folder.read_manifest(), folder.read_ledger()
        ended = m.get("ended") or ""
        try:
            age = now - datetime.datetime.fromisoformat(ended)
        except ValueError:
            age = None
        interventions = sorted({_INTERVENTIONS[r["kind"]] for r in records if r.get("kind") in _INTERVENTIONS} |
                               {"a step was confirmed by hand" for r in records
                                if r.get("kind") == "step" and r.get("confirmed")})
        problem = ("a plan, not a run" if m.get("dry_run") else
                   "not passed" if m.get("outcome") != "passed" else
                   "not sealed" if not m.get("sealed") else
                   f"release {m.get('release')}" if m.get("release") != env.release else
                   "ended too long ago" if age is None or age > need.within else
                   "; ".join(interventions) if interventions else
                   "changed since it was sealed" if verify_run(path, root=executed.parent) else "")
        if not problem:
            return {"env": need.env, "run": path.name, "release": m["release"], "ended": ended,
                    "ledger_head": m.get("ledger_head")}
        why.append(f"{path.name}: {problem}")
    raise GateNotApproved(
        f"no passed {need.env} rehearsal of release {env.release} within {format_duration(need.within)} "
        f"(\"rehearsal must complete without manual interventions before proceeding to production\")"
        + (f": {'; '.join(why[:3])}" if why else f": none under executed/{need.env}/"),
        hint=f"rehearse it: cutover run --env {need.env} --phase rehearsal")


def open_for_resume(executed: Path, env: str, run_id: str, phase: str) -> RunFolder:
    checked_name("run id", run_id, f"pass a run folder's name, e.g. --resume 20261027T140000Z-{env}-{phase}")
    path = executed / env / run_id
    if not path.is_dir():
        known = sorted(p.name for p in (executed / env).glob("*T*Z-*") if p.is_dir())[-3:]
        raise UsageError(f"cannot resume {run_id}: no such run under executed/{env}/",
                         hint=f"recent runs: {', '.join(known) or 'none'}")
    if path.is_symlink() or not path.resolve().is_relative_to((executed / env).resolve()):
        raise UsageError(f"cannot resume {run_id}: executed/{env}/{run_id} is a link out of executed/{env}/",
                         hint="resume a run folder this checkout wrote, by its name")
    run = RunFolder.open(path)
    m = run.read_manifest()
    if m.get("phase") not in (phase, None):
        raise UsageError(f"run {run_id} is a {m.get('phase')} run, not {phase}",
                         hint=f"resume it with --phase {m.get('phase')}")
    if m.get("dry_run"):
        raise UsageError(f"run {run_id} is a plan (dry run): there is nothing to resume",
                         hint=f"plan again: cutover plan --env {env} --phase {phase}")
    if m.get("sealed") and m.get("outcome") in _FINAL:
        hint = (f"cutover run --env {env} --phase rollback" if m["outcome"] == "rollback-failed"
                else f"start a new run: cutover run --env {env} --phase {phase}")
        if m["outcome"] == "passed" and (left := m.get("failed_not_blocking")):  # not the whole phase again
            hint = (f"what failed without stopping it ({', '.join(left)}) is in its record, "
                    f"executed/{env}/{run_id}/html/index.html: carry it out by hand and note it in the change "
                    f"ticket; or {hint}")
        raise UsageError(f"run {run_id} is sealed and cannot be resumed: {_FINAL[m['outcome']]}", hint=hint)
    return run


def params_changed(run: RunFolder, env: Environment, accept: bool) -> dict[str, Any] | None:
    """A resumed run keeps the params it started with (the same files and ``-p``): a change is
    refused (exit 2) unless ``--accept-param-changes``, and then recorded in the run's ledger."""
    before, now = run.read_manifest().get("params_sha256"), params_digest(env)
    if not before or before == now:
        return None
    if not accept:
        raise UsageError(f"the params of {env.name} changed since run {run.run_id} started (sha256 {before[:12]}… "
                         f"then, {now[:12]}… now)",
                         hint="resume with the params files and -p it started with, or pass --accept-param-changes "
                              "(recorded in the run)")
    return {"from_params_sha256": before, "to_params_sha256": now,
            "accepted_by": f"{getpass.getuser()}@{socket.gethostname()}",
            "text": "params changed between attempts; resumed with --accept-param-changes"}
