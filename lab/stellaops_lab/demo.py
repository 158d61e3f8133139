"""``make demo``: the whole runbook on the local lab, then the path of the HTML record.

1. start the lab (``cutover lab up``) unless it is already running;
2. record the demo approvals of the Section 8 gates (named demo approvers, so the record shows
   how approvals look; a real change records them with ``cutover approve``);
3. run the phases ``readiness``, ``rehearsal``, ``cutover`` and ``post`` on ``local``;
4. stop the lab if this command started it, and print where each run's ``index.html`` is.

``--fault`` bakes a lab fault into release 2025.09.2 (``make demo-rollback`` uses
``runtime.ingest_error``): the runtime-ingest smoke test fails, the rollback phase runs and
brings the lab back on 2025.09.1, and the record shows why.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cutover_lib.engine.phases import find_root

from .settings import lab_settings

#: Section 2 in order: T-24h .. T-6h together (readiness), the T-2h rehearsal, T-30m, T0, T+45m, T+4h
PHASES = ["readiness", "rehearsal", "t-30m", "cutover", "smoke-decision", "post"]
DEMO_APPROVERS = {
    "plan": [("cto", "Avery Chen"), ("devops-lead", "Sam Okafor")],
    "go-no-go": [("cutover-lead", "Sam Okafor"), ("authority", "Mina Haddad"), ("scanner", "Priya Raman"),
                 ("storage", "Tomas Varga"), ("observability", "Lena Brandt")],
    "t0": [("devops-lead", "Sam Okafor"), ("module-reps", "Priya Raman")],
    "post-smoke": [("devops-lead", "Sam Okafor"), ("product-owner", "Jordan Lee")],
    "rollback": [("devops-lead", "Sam Okafor"), ("cto", "Avery Chen")],
}


def _record_demo_approvals(root: Path, env_name: str) -> None:
    from cutover_lib.config.params import load_environment
    from cutover_lib.engine.approvals import ApprovalStore

    env = load_environment(env_name, root / "params")
    store = ApprovalStore(root, env)
    for gate, people in DEMO_APPROVERS.items():
        if env.approvals.gates[gate].after:  # post-smoke approves one run's smoke results: after them
            continue
        st = store.status(gate)
        for role, name in people:
            if role in st.missing:
                record = env.incident_ticket if gate == "rollback" else env.change_ticket
                store.record(gate=gate, role=role, name=name, record=record or env.change_ticket,
                             comment="make demo (demo approver)", via="demo")


def _approve_smoke_results(root: Path, env_name: str, run_id: str) -> bool:
    """At the post-smoke gate of ``run_id``: the demo approvers approve that run's smoke results."""
    from cutover_lib.config.params import load_environment
    from cutover_lib.engine.approvals import ApprovalStore
    from cutover_lib.errors import UsageError

    env = load_environment(env_name, root / "params")
    store = ApprovalStore(root, env)
    recorded = False
    for gate, g in env.approvals.gates.items():
        try:
            for role, name in DEMO_APPROVERS.get(gate, []) if g.after else []:
                store.record(gate=gate, role=role, name=name, record=g.record if gate == "go-no-go" else
                             env.change_ticket, run=run_id, comment="make demo (demo approver)", via="demo")
                recorded = True
        except UsageError:  # (not stopped at that gate: its step has not passed in this run)
            continue
    return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--fault", action="append", default=[],
                        help="lab fault baked into the release being launched, e.g. runtime.ingest_error")
    parser.add_argument("--env", default="local")
    args = parser.parse_args(argv)
    root = find_root()

    from cutover_lib.config.params import load_environment
    from cutover_lib.engine.runner import run_phase
    from cutover_lib.errors import CutoverError

    from . import LabConfig, down, monitoring_green, status, up

    env = load_environment(args.env, root / "params")
    assert env.deploy.mode == "lab", "make demo runs against an environment in deploy mode lab"
    lab = lab_settings(env)
    cfg = LabConfig.from_port_base(root / lab.data_dir, lab.port_base)
    started_here = not any(row["running"] for row in status(cfg).values())
    # Section 2 compressed: T0 a minute from now, so T0 and the T+45m deadline are judged on the clock
    t0 = (datetime.now(timezone.utc) + timedelta(minutes=1)).replace(microsecond=0)
    overrides = [f"t0={t0.isoformat().replace('+00:00', 'Z')}"]
    if args.fault:
        faults = {f: True for f in args.fault}
        overrides.append("deploy.lab.release_faults=" + json.dumps({env.release: faults}))
    results = []
    try:
        print(f"lab: {'starting' if started_here else 'already running'} ({cfg.data_dir}); T0 for this demo: "
              f"{t0:%H:%M:%S} UTC (Section 2 compressed: the slots run one after another)")
        up(cfg)
        _record_demo_approvals(root, args.env)
        for phase in PHASES:
            print()
            if phase == "t-30m":  # Section 2 compressed: what 90 minutes after the rehearsal would give
                monitoring_green(cfg)
            result = run_phase(args.env, phase, root=root, overrides=overrides, echo=print)
            if result.outcome == "blocked" and _approve_smoke_results(root, args.env, result.run_dir.name):
                print("\n(the demo's approvers record their decision for this run at its gate; resuming)")
                result = run_phase(args.env, phase, root=root, overrides=overrides, echo=print,
                                   resume=result.run_dir.name)
            results.append((phase, result))
            if result.exit_code:
                break
    except CutoverError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    finally:
        if started_here:
            stopped = down(cfg)
            print(f"lab: stopped {len(stopped)} processes this demo started")
    print()
    print("demo record (open in a browser; everything renders offline):")
    for phase, result in results:
        print(f"  {phase:15} {result.outcome:12} {result.index_html}")
        if result.outcome == "passed" and result.message:  # steps that failed without stopping the run
            print(f"  {'':15} {'':12} {result.message}")
    last = results[-1][1]
    print()
    print(f"HTML record: {last.index_html}")
    print(f"change page: {last.run_dir.parent / 'index.html'} (every run of the change, Section 2 drawn)")
    return 0 if not args.fault else (0 if last.outcome == "rolled-back" else 1)


if __name__ == "__main__":
    sys.exit(main())
