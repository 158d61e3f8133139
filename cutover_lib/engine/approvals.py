"""Section 8: the approval matrix, approvals per change, gates, waivers, and the widget form.

Approvals are stored **per change** (``executed/_approvals/<env>/<change-ticket>.jsonl``, a
hash chain like the run ledger), so a plan approval given the day before applies to the T0
run.  A gate is two cells in a notebook:

* ``approvals.gate(rb, "t0")`` shows who has approved so far (plain HTML) and, when stepping
  through in JupyterLab, a form (name, role, record, comment; Approve / Reject).  The form's
  callbacks only *record* a decision; the cell never waits for a click -- a kernel cannot
  process widget messages while a cell runs.
* ``approvals.require(rb, "t0")`` is the step that enforces it: every required role approved
  (copied into the run's ledger as evidence), or waived where the environment allows it, or
  the run stops with :class:`GateNotApproved` (exit 3) naming the missing roles and the exact
  ``cutover approve`` command.
"""

from __future__ import annotations

import getpass
import html
import json
import shlex
import socket
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.params import Environment
from ..errors import EvidenceError, GateNotApproved, UsageError
from ..evidence.evidence import HashChain, RunFolder, _disk_error, iso, utc_now
from .lock import checked_name
from .steps import Runbook, StepContext, Waived

__all__ = ["ApprovalStore", "GateForm", "gate", "gate_status", "pending_approvals", "person", "require"]


#: the longest approver's name accepted
NAME_LIMIT = 120


def person(name: str) -> str:
    """Who a name denotes, for comparing approvers: Unicode NFKC (full-width and compatibility forms
    folded), case-folded, invisible characters (zero-width, bidi controls) removed, spaces collapsed
    -- so one person cannot fill two roles by spelling their name another way."""
    folded = unicodedata.normalize("NFKC", name)
    visible = "".join(ch for ch in folded if unicodedata.category(ch) not in ("Cf", "Cc", "Co", "Cs"))
    return " ".join(visible.casefold().split())


def _store_path(root: Path, env: Environment) -> Path:
    return root / "executed" / "_approvals" / env.name / f"{env.change_ticket}.jsonl"


@dataclass
class GateStatus:
    gate: str
    required: list[str]
    approved: dict[str, dict[str, Any]]  # role -> latest approving record
    rejected: list[dict[str, Any]]

    @property
    def missing(self) -> list[str]:
        return [r for r in self.required if r not in self.approved]

    @property
    def satisfied(self) -> bool:
        return not self.missing and not self.rejected


class ApprovalStore:
    """The approvals of one change in one environment."""

    def __init__(self, root: Path, env: Environment) -> None:
        self.env, self.root = env, root
        self.path = _store_path(root, env)

    def records(self) -> list[dict[str, Any]]:
        """The decisions recorded for this environment and change, read only through their hash
        chain: a line written, edited, removed or reordered by hand stops every gate (exit 1)."""
        label = f"executed/_approvals/{self.env.name}/{self.env.change_ticket}.jsonl"
        records = HashChain(self.path).read_verified(label, hint=(
            f"restore {label} from its backup, or move it aside and record the approvals again with cutover approve"))
        return [r for r in records if r.get("env") == self.env.name and r.get("change") == self.env.change_ticket]

    def record(self, *, gate: str, role: str, name: str, record: str, comment: str = "",
               decision: str = "approve", plan_run: str | None = None, plan_digest: str | None = None,
               via: str = "cli", run: str | None = None) -> dict[str, Any]:
        """Validate and store one decision; raise :class:`UsageError` (exit 2) when it is not allowed.
        A gate with ``after`` (post-smoke) approves one ``run``, once that step passed in it."""
        env = self.env
        gates = env.approvals.gates
        if gate not in gates:
            raise UsageError(f"unknown gate {gate!r} for {env.name}", hint=f"gates: {', '.join(gates)}")
        g = gates[gate]
        if g.after and not run:
            raise UsageError(f"gate {gate} ({g.title}) approves one run's results ({g.after}): name the run",
                             hint=approve_command(env, gate, role, run="RUN_ID")
                             + " (the run id `cutover run` printed)")
        if run and not g.after:
            raise UsageError(f"gate {gate} ({g.title}) is not approved per run", hint="leave out --run")
        bound = passed_step(self.root, env, run, g.after) if run and g.after else None
        if role not in g.roles:
            raise UsageError(f"role {role!r} does not approve gate {gate} ({g.title})",
                             hint=f"gate {gate} needs: {' + '.join(g.roles)}")
        name = " ".join(name.split())
        if not person(name):
            raise UsageError("an approval needs the approver's name", hint="pass --name 'First Last'")
        if len(name) > NAME_LIMIT:  # (it is shown in every record, gate line and bridge post)
            raise UsageError(f"an approver's name is at most {NAME_LIMIT} characters (this one has {len(name)})",
                             hint="pass --name 'First Last'")
        allowed = env.approvals.approvers.get(role)
        if allowed and person(name) not in {person(a) for a in allowed}:
            raise UsageError(f"{name} is not an approver for role {role} in {env.name}",
                             hint=f"approvers for {role}: {', '.join(allowed)} (params approvals.approvers)")
        if not record.strip():
            raise UsageError("an approval needs its record location", hint=f"pass --record {env.change_ticket} "
                             f"(the ticket id or channel: {g.record})")
        for prev in self._latest(gate, run).values():
            if person(prev["name"]) == person(name) and prev["role"] != role and prev["decision"] == "approve":
                raise UsageError(f"{name} already approved gate {gate} as {prev['role']}; one person cannot fill "
                                 f"two roles of the same gate", hint=f"ask the {role} to approve")
        if decision not in ("approve", "reject"):
            raise UsageError(f"decision must be approve or reject, got {decision!r}")
        rec = {"kind": "approval" if decision == "approve" else "rejection", "gate": gate, "gate_title": g.title,
               "env": env.name, "change": env.change_ticket, "role": role, "name": name, "decision": decision,
               "at": iso(utc_now()), "record": record, "comment": comment, "via": via,
               "recorded_by": f"{getpass.getuser()}@{socket.gethostname()}"}
        if plan_run:
            rec.update({"plan_run": plan_run, "plan_digest": plan_digest})
        if bound is not None:
            rec.update({"run": run, "after": g.after, "after_at": bound.get("ended")})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:  # a read-only or full disk: one line, nothing recorded
            raise _disk_error(self.path.parent, exc) from None
        return HashChain(self.path).append(rec)

    def _latest(self, gate: str, run: str | None = None, after_at: str | None = None, *, every_run: bool = False
                ) -> dict[tuple[str, str], dict[str, Any]]:
        """The latest decision of each person for ``gate``; for a gate approved per run, only those
        naming ``run`` and recorded after ``after_at`` (when its step passed there; the same
        millisecond is not after)."""
        bound = self.env.approvals.gates[gate].after if gate in self.env.approvals.gates else None
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for r in self.records():
            if r.get("gate") != gate or r.get("env") != self.env.name:
                continue
            if bound and not every_run and (r.get("run") != run or after_at is None or str(r.get("at", "")) <= after_at):
                continue
            latest[(r["role"], person(r["name"]))] = r
        return latest

    def decisions(self, gate: str) -> list[dict[str, Any]]:
        """Each person's latest decision on ``gate``, whatever run it names (what a ticket shows)."""
        return list(self._latest(gate, every_run=True).values())

    def status(self, gate: str, run: str | None = None, after_at: str | None = None) -> GateStatus:
        g = self.env.approvals.gates[gate]
        approved: dict[str, dict[str, Any]] = {}
        rejected: list[dict[str, Any]] = []
        for (role, _), r in self._latest(gate, run, after_at).items():
            if r["decision"] == "approve":
                approved.setdefault(role, r)
            else:
                rejected.append(r)
        return GateStatus(gate, list(g.roles), approved, rejected)


def gate_status(rb: Runbook, gate_name: str) -> GateStatus:
    g = rb.env.approvals.gates[gate_name]
    if not g.after:
        return ApprovalStore(rb.root, rb.env).status(gate_name)
    passed = [r for r in rb.run.read_ledger()
              if r.get("kind") == "step" and r.get("step_id") == g.after and r.get("outcome") == "passed"]
    return ApprovalStore(rb.root, rb.env).status(gate_name, rb.run.run_id, passed[-1]["ended"] if passed else None)


def passed_step(root: Path, env: Environment, run_id: str, step_id: str) -> dict[str, Any]:
    """The record of ``step_id`` passing in run ``run_id`` of ``env``; :class:`UsageError` naming why not."""
    checked_name("run id", run_id, f"pass a run folder's name, e.g. --run 20261027T140000Z-{env.name}-cutover")
    folder = root / "executed" / env.name / run_id
    if not (folder / "ledger.jsonl").is_file():
        raise UsageError(f"no run {run_id} under executed/{env.name}/",
                         hint="pass the run id `cutover run` printed (its evidence folder's name)")
    records = [r for r in RunFolder(folder).read_ledger() if r.get("kind") == "step" and r.get("step_id") == step_id]
    passed = [r for r in records if r.get("outcome") == "passed"]
    if passed:
        return passed[-1]
    if records:
        raise UsageError(f"run {run_id}: {step_id} {records[-1].get('outcome')}, so there is nothing to approve",
                         hint="a failed smoke decision goes to the rollback gate, not this one")
    raise UsageError(f"run {run_id} has no {step_id} result yet: approve once it has passed",
                     hint=f"wait for {step_id} in that run, then approve")


def approve_command(env: Environment, gate_name: str, role: str, run: str | None = None) -> str:
    record = env.approvals.gates[gate_name].record
    where = (shlex.quote(record) if record.startswith("#") else  # a channel: the go/no-go is said on the bridge
             env.change_ticket if gate_name != "rollback" else (env.incident_ticket or "INC-..."))
    return (f"cutover approve --env {env.name} --gate {gate_name} --role {role} --name 'NAME' --record {where}"
            + (f" --run {run}" if run else ""))


def _status_html(st: GateStatus, title: str) -> str:
    e = html.escape
    rows = []
    for role in st.required:
        r = st.approved.get(role)
        if r:
            rows.append(f"<tr><td>{e(role)}</td><td style='color:#1a7f37'><b>approved</b></td><td>{e(r['name'])}</td>"
                        f"<td>{e(r['at'])}</td><td>{e(r['record'])}</td><td>{e(r.get('comment', ''))}</td></tr>")
        else:
            rows.append(f"<tr><td>{e(role)}</td><td style='color:#cf222e'><b>missing</b></td><td></td><td></td>"
                        f"<td></td><td></td></tr>")
    for r in st.rejected:
        rows.append(f"<tr><td>{e(r['role'])}</td><td style='color:#cf222e'><b>REJECTED</b></td><td>{e(r['name'])}</td>"
                    f"<td>{e(r['at'])}</td><td>{e(r['record'])}</td><td>{e(r.get('comment', ''))}</td></tr>")
    return (f"<div style='font-family:sans-serif;font-size:13px'><b>Gate {e(st.gate)} — {e(title)}</b>"
            f"<table style='border-collapse:collapse'><tr><th>Role</th><th>Decision</th><th>Name</th><th>UTC</th>"
            f"<th>Record</th><th>Comment</th></tr>{''.join(rows)}</table></div>")


def gate(rb: Runbook, gate_name: str) -> Any:
    """Show the gate's approvals; in JupyterLab the approval form instead, which holds the same
    table and refreshes it after each decision.  Never blocks."""
    g = rb.env.approvals.gates[gate_name]
    try:
        st = gate_status(rb, gate_name)
    except EvidenceError as exc:  # shown here; the gate's step (approvals.require) fails on it
        rb.show_html(f"<p style='color:#cf222e'><b>Gate {html.escape(gate_name)}:</b> {html.escape(exc.one_line())}</p>",
                     f"gate {gate_name}: {exc.one_line()}")
        return None
    if not rb.interactive or not rb._display:
        rb.show_html(_status_html(st, g.title), f"gate {gate_name}: missing {', '.join(st.missing) or 'none'}")
        return None
    return approval_form(rb, gate_name)


class GateForm:
    """A gate's approval form as :func:`approval_form` shows it (once): its buttons, fields and
    status table, for code that fills it in.  As a cell's value it shows nothing more."""

    def __init__(self, widget: Any, approve: Any, reject: Any, fields: dict[str, Any], status: Any) -> None:
        self.widget, self.approve_button, self.reject_button = widget, approve, reject
        self.fields, self.status = fields, status

    def _ipython_display_(self) -> None:
        pass  # (displayed by approval_form; the cell's value would show it a second time)


def approval_form(rb: Runbook, gate_name: str) -> GateForm:
    """The ipywidgets form with the gate's status table on top.  Its callbacks record the decision
    and refresh the table, nothing else."""
    import ipywidgets as w
    from IPython.display import display

    g = rb.env.approvals.gates[gate_name]
    status = w.HTML(_status_html(gate_status(rb, gate_name), g.title))
    name = w.Text(description="Name")
    role = w.Dropdown(options=list(g.roles), description="Role")
    record = w.Text(description="Record", value=g.record if g.record.startswith("#") else
                    rb.env.change_ticket if gate_name != "rollback" else (rb.env.incident_ticket or ""))
    comment = w.Textarea(description="Comment")
    approve_b = w.Button(description="Approve", button_style="success")
    reject_b = w.Button(description="Reject", button_style="danger")
    out = w.HTML()
    store = ApprovalStore(rb.root, rb.env)

    def decide(decision: str) -> None:
        try:
            rec = store.record(gate=gate_name, role=role.value, name=name.value, record=record.value,
                               comment=comment.value, decision=decision, via="notebook",
                               run=rb.run.run_id if g.after else None)
        except UsageError as exc:
            out.value = f"<span style='color:#cf222e'>{html.escape(exc.one_line())}</span>"
            return
        rb.record(rec["kind"], **{k: v for k, v in rec.items() if k not in ("kind", "seq", "ts", "prev", "sha256")})
        status.value = _status_html(gate_status(rb, gate_name), g.title)
        out.value = (f"<span style='color:#1a7f37'>{html.escape(decision)}d by {html.escape(rec['name'])} as "
                     f"{html.escape(rec['role'])}; run the next cell to continue</span>")

    approve_b.on_click(lambda _b: decide("approve"))
    reject_b.on_click(lambda _b: decide("reject"))
    form = w.VBox([status, w.HTML(f"<b>Approve gate {html.escape(gate_name)}: {html.escape(g.title)}</b> "
                                  f"(needs {html.escape(' + '.join(g.roles))})"), name, role, record, comment,
                   w.HBox([approve_b, reject_b]), out])
    display(form)
    return GateForm(form, approve_b, reject_b, {"name": name, "role": role, "record": record, "comment": comment},
                    status)


def require(rb: Runbook, gate_name: str, *, section: str | None = None) -> dict[str, Any]:
    """The gate step: approved (evidence copied into the run), waived, or stop with exit 3."""
    g = rb.env.approvals.gates[gate_name]
    sec = section or g.section

    def act(ctx: StepContext) -> str:
        st = gate_status(rb, gate_name)  # a tampered approvals file fails this step (exit 1)
        for role, rec in st.approved.items():
            rb.record("approval", **{k: v for k, v in rec.items() if k not in ("kind", "seq", "ts", "prev", "sha256")})
        ctx.artifact(f"approvals-{gate_name}.json", json.dumps(
            {"gate": gate_name, "approved": st.approved, "rejected": st.rejected, "missing": st.missing}, indent=2))
        if st.rejected:
            who = "; ".join(f"{r['name']} ({r['role']}): {r.get('comment') or 'no comment'}" for r in st.rejected)
            raise GateNotApproved(f"gate {gate_name} ({g.title}) was rejected by {who}",
                                  hint="resolve the objection, then record a new approval")
        run = rb.run.run_id if g.after else None
        if not st.missing:
            return "approved by " + ", ".join(f"{r['name']} ({role}, {r['record']})" for role, r in st.approved.items())
        if gate_name in rb.waive or "all" in rb.waive:
            if not rb.env.approvals.waivable:
                raise GateNotApproved(f"gate {gate_name} cannot be waived in {rb.env.name} ({rb.env.tier}); missing "
                                      f"{', '.join(st.missing)}",
                                      hint=approve_command(rb.env, gate_name, st.missing[0], run))
            rb.record("waiver", gate=gate_name, missing=st.missing, by=f"{getpass.getuser()}@{socket.gethostname()}",
                      reason=f"--waive {gate_name} in {rb.env.tier}")
            raise Waived(f"missing {', '.join(st.missing)} waived by the operator (--waive) in {rb.env.tier}")
        where = "the approval form in the cell above, or " if rb.interactive else ""
        raise GateNotApproved(
            f"gate {gate_name} ({g.title}) lacks approval from {', '.join(st.missing)}",
            hint=f"record it with {where}" + " ; ".join(approve_command(rb.env, gate_name, r, run) for r in st.missing))

    return rb.step(f"{sec}.gate-{gate_name}", f"Gate: {g.title}", owner="Approvals",
                   expect=f"approved by {' + '.join(g.roles)} (recorded in {g.record})", action=act)


def pending_approvals(root: Path, env: Environment, gate_name: str, run: str | None = None,
                      after_at: str | None = None) -> list[str]:
    """The ``cutover approve`` commands a gate still needs, one per missing role (``--run`` for a
    gate approved per run)."""
    bound = run if env.approvals.gates[gate_name].after else None
    return [approve_command(env, gate_name, role, bound)
            for role in ApprovalStore(root, env).status(gate_name, run, after_at).missing]


def plan_digest_of(root: Path, env: Environment, plan_run: str) -> str:
    """The digest of a plan run's planned commands (``manifest.json: plan_digest``)."""
    manifest = root / "executed" / env.name / plan_run / "manifest.json"
    try:
        m = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise UsageError(f"no plan run {plan_run} under executed/{env.name}/",
                         hint=f"make one with: cutover plan --env {env.name} --phase cutover") from None
    if not m.get("dry_run") or not m.get("plan_digest"):
        raise UsageError(f"run {plan_run} is not a sealed plan (cutover plan)",
                         hint=f"make one with: cutover plan --env {env.name} --phase cutover")
    return str(m["plan_digest"])
