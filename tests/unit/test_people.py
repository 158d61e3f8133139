"""Sections 1 and 8 as the 01 notebook's cells run them: the roles and the gates the runbook
requires (the cells' ``required=[...]``) must be in params, each complete."""

from __future__ import annotations

from pathlib import Path

import pytest
from nb_helpers import notebook_cells

from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.config.schema import replace
from cutover_lib.engine.steps import Runbook
from cutover_lib.errors import StepFailed
from cutover_lib.evidence.evidence import RunFolder

REPO = Path(__file__).resolve().parents[2]


def _runbook(tmp_path: Path, *overrides: str) -> Runbook:
    env = load_environment("local", REPO / "params", parse_overrides(list(overrides)))
    return Runbook(env, RunFolder.create(tmp_path / "executed", "local", "t"), root=REPO,
                   notebook="01_roles_and_timeline.ipynb")


def run_cell(rb: Runbook, call: str) -> None:
    """The 01 notebook's own cell that calls ``call``, run with ``rb``."""
    setup, cells = notebook_cells("01_roles_and_timeline.ipynb")
    (cell,) = [c for c in cells if call in c]
    ns = {"rb": rb}
    exec(compile(setup + "\n" + cell, "01_roles_and_timeline.ipynb", "exec"), ns)


def _steps(rb: Runbook) -> dict[str, dict]:
    return {r["step_id"]: r for r in rb.run.read_ledger() if r.get("kind") == "step"}


def test_the_roles_and_gates_of_params_pass(tmp_path: Path) -> None:
    rb = _runbook(tmp_path)
    run_cell(rb, "people.roles_and_channels(")
    run_cell(rb, "people.approval_matrix(")
    steps = _steps(rb)
    assert steps["1.roles"]["outcome"] == "passed" and "Scanner / Queue" in steps["1.roles"]["expect"]
    assert steps["8.matrix"]["outcome"] == "passed" and "post-smoke" in steps["8.matrix"]["expect"]
    assert (rb.run.path / "artifacts" / "1.roles.csv").read_text().count("\n") == 7


def test_a_role_the_runbook_names_missing_from_params_fails_naming_it(tmp_path: Path) -> None:
    rb = _runbook(tmp_path, 'roles=[{"role": "Cutover lead", "primary": "a", "backup": "b", "contact": "c"}]')
    with pytest.raises(StepFailed, match="roles missing from params: Authority stack, Scanner / Queue, Storage"):
        run_cell(rb, "people.roles_and_channels(")


def test_a_gate_the_runbook_names_missing_from_params_fails_naming_it(tmp_path: Path) -> None:
    rb = _runbook(tmp_path)
    gates = {k: g for k, g in rb.env.approvals.gates.items() if k != "rollback"}  # a params file without it
    rb.env = replace(rb.env, approvals=replace(rb.env.approvals, gates=gates))
    with pytest.raises(StepFailed, match="gates missing from approvals.gates: rollback"):
        run_cell(rb, "people.approval_matrix(")
