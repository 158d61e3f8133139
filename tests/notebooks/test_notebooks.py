"""The runbook notebooks: committed clean, executed end to end against the lab, and by nbval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nb_helpers import (REPO, approve_all, cutover, lab_config, run_dir_from, started_lab, steps_of,
                        through_post_smoke)
from stellaops_lab import monitoring_green
import forkrun  # tests/forkrun.py: cutover as a process forked from a warm one

pytestmark = pytest.mark.notebooks

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_clean_with_a_parameters_cell(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name} has outputs"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    src = "".join(tagged[0]["source"])
    for name in ("env", "run_dir", "dry_run", "resume", "notebook", "overrides", "confirm", "with_reads", "waive"):
        assert f"\n{name} = " in "\n" + src, f"{path.name}: parameter {name} missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_a_valid_notebook(path):
    """The notebooks are the one source (no generator): each must be a valid nbformat 4 notebook
    with cell ids, so JupyterLab, papermill and nbdime read it as committed."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.nbformat_minor >= 5, "cell ids need nbformat 4.5"
    ids = [c.get("id") for c in nb.cells]
    assert all(ids) and len(set(ids)) == len(ids), f"{path.name}: missing or repeated cell ids"


def test_every_phase_notebook_exists_and_every_notebook_is_in_a_phase():
    from cutover_lib.engine.phases import load_phases

    in_phases = {nb for nbs in load_phases(REPO).values() for nb in nbs}
    assert in_phases == {p.name for p in NOTEBOOKS}


def test_whole_runbook_on_the_lab(lab_project):
    """Section 2 in order -- readiness (T-24h .. T-6h), the T-2h rehearsal, T-30m (the guild leads' GO
    given for that run at its gate), T0, T+45m, T+4h -- headless, with recorded approvals: all pass,
    with T0 a minute ahead so the T+45m deadline is judged on the clock."""
    from datetime import datetime, timedelta, timezone

    approve_all(lab_project)
    seen: dict[str, dict] = {}
    runs: list[Path] = []
    t0 = (datetime.now(timezone.utc) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for phase in ("readiness", "rehearsal", "t-30m", "t0", "t+45m", "t+4h"):
        if phase == "t-30m":
            monitoring_green(lab_config(lab_project))  # (Section 2 compressed: what 90 minutes would give)
        res = cutover(lab_project, "run", "--env", "local", "--phase", phase, "-p", f"t0={t0}")
        assert res.returncode == 0, f"{phase}:\n{res.stdout}\n{res.stderr}"
        run = run_dir_from(res.stdout)
        runs.append(run)
        assert cutover(lab_project, "verify", str(run)).returncode == 0
        seen.update(steps_of(run))
        for nb_path in (run / "notebooks").glob("*.ipynb"):  # a step cell shows its card, not its record's repr
            values = [o for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "code"
                      for o in c.outputs if o.output_type == "execute_result"]
            assert not values, (nb_path.name, values[:1])
        index = (run / "html" / "index.html").read_text()
        for sid in steps_of(run):
            assert sid in index
        pictures = {"t0": "5.web-ui", "t+4h": "7.monitoring"}  # a screenshot, the monitoring chart
        if phase in pictures:
            assert f"<figcaption><code>{pictures[phase]}</code>" in index, phase
            assert "<img src='data:image/png;base64," in index  # on the page, offline
    change = (lab_project / "executed" / "local" / "index.html").read_text()  # the change page: every run
    for run in runs:
        assert f"<a href='{run.name}/html/index.html'>" in change
    assert "<svg" in change and "passed, on the hour" not in change.split("<svg", 1)[0]
    bad = {k: v["outcome"] for k, v in seen.items() if v["outcome"] not in ("passed", "skipped")}
    assert not bad, bad
    for sid in ("1.roles", "1.bridge", "2.timeline", "8.matrix", "2.t-24h.gate-plan", "2.t-24h.offline-kit",
                "2.t-6h.freeze", "2.t-30m.bridge-call", "2.t-30m.dashboards", "2.t-30m.readiness",
                "2.t-30m.health-scanner", "2.t-30m.gate-go-no-go", "2.t-30m.go-no-go", "2.t45m.smoke-decision", "2.t45m.announce", "3.scan-submit", "3.wall-time", "8.gate-plan", "4.gate-t0",
                "4.1.backup-mongo", "4.1.mirror-minio", "4.4.oidc-metadata", "4.4.signer-verify",
                "4.4.scanner-queue", "4.4.notify-legacy", "5.api-health", "5.scan-submit", "5.runtime-event",
                "5.signing", "5.attestor-verify", "5.web-ui", "5.decision", "5.gate-post-smoke", "7.monitoring",
                "7.audit-tokens", "7.audit-scans", "7.audit-attestations", "7.retrospective", "9.log"):
        assert sid in seen, sid
    assert seen["5.decision"]["observed"].startswith("GO")
    assert "decided at T+" in seen["5.decision"]["observed"]  # minutes since T0 in params, not the first step
    assert "(deadline T+45m)" in seen["5.decision"]["observed"]  # on time: T0 was a minute ahead
    assert seen["2.t45m.smoke-decision"]["observed"].startswith("GO decided at T+")
    assert seen["2.t-30m.dashboards"]["outcome"] == "passed"  # the lab's Prometheus: nothing red
    # Section 8's record locations, read back from the lab's Jira-shaped ticket stand-in
    fields = ticket_issue(lab_project, "CHG-2025-1027-LAUNCH")["fields"]
    bodies = "\n".join(c["body"] for c in fields["comment"]["comments"])
    for heading in ("h3. Approval: Production deployment plan", "h3. Section 5 smoke tests",
                    "h3. Approval: Post-smoke success", "h3. T+4h post-cutover review"):
        assert heading in bodies, heading
    assert "|5.web-ui|PASSED|" in bodies
    names = {a["filename"] for a in fields["attachment"]}
    cutover_run = next(r for r in runs if r.name.endswith("-cutover")).name
    assert {"5.web-ui.index.png", "5.web-ui.policy.png", "7.monitoring.png", f"{cutover_run}.html",
            "2.t-12h.validate-profiles.log"} <= names, names
    assert fields["status"]["name"] == "Done"  # the change ticket closed at T+4h
    assert "error_rate" in seen["7.monitoring"]["observed"] and "queue_depth" in seen["7.monitoring"]["observed"]


def ticket_issue(root: Path, key: str) -> dict:
    """An issue of the lab's ticket stand-in, as a test reads it back (the token from the lab's store)."""
    import httpx

    cfg = lab_config(root)
    token = (cfg.data_dir / "secrets" / "stellaops-ticket" / "api-token").read_text().strip()
    r = httpx.get(f"{cfg.url('notify')}/rest/api/2/issue/{key}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def fresh_lab(tmp_path):
    """A project and lab of the test's own (it bakes faults or edits notebooks), the approvals that
    precede a cutover recorded; the lab is stopped afterwards.  Yields ``(root, lab config)``."""
    with started_lab(tmp_path / "p") as root:
        approve_all(root)
        yield root, lab_config(root)


def insert_cell(root: Path, notebook: str, at: int | str, source: str) -> None:
    """A code cell put into the project's copy of ``notebook``, before cell ``at`` (an index, or
    the first cell whose source contains that text)."""
    path = root / "notebooks" / notebook
    nb = nbformat.read(path, as_version=4)
    index = at if isinstance(at, int) else next(i for i, c in enumerate(nb.cells) if at in c.source)
    nb.cells.insert(index, nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)


def test_a_release_that_comes_up_unhealthy_fails_the_health_step_and_rolls_back(fresh_lab):
    """The lab restarts on a release whose scanner is unhealthy: the restart is done (4.2.lab-upgrade),
    the health step names the scanner (4.2.lab-health) and the rollback restores 2025.09.1."""
    from stellaops_lab import status

    root, cfg = fresh_lab
    fault = json.dumps({"2025.09.2": {"scanner.unhealthy": True}})
    res = cutover(root, "run", "--env", "local", "--phase", "cutover", "-p", f"deploy.lab.release_faults={fault}",
                  "-p", "timeouts.health=5s")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "outcome: rolled-back" in res.stdout, res.stdout[-3000:]
    assert "\nfailed:   4.2.lab-health (" in res.stdout  # the closing summary names the root failure
    steps = steps_of(run_dir_from(res.stdout))
    assert steps["4.2.lab-upgrade"]["outcome"] == "passed", steps["4.2.lab-upgrade"]
    assert not steps["4.2.lab-upgrade"]["artifacts"] or not any(
        a.endswith(".traceback.txt") for a in steps["4.2.lab-upgrade"]["artifacts"])
    assert steps["4.2.lab-health"]["outcome"] == "failed"
    assert "scanner: healthy=False" in steps["4.2.lab-health"]["message"]
    assert {(row["version"], row["healthy"]) for row in status(cfg).values()} == {("2025.09.1", True)}
    # the incident ticket (Section 8: "Rollback (if invoked) | DevOps lead + CTO | Incident ticket")
    assert steps["6.incident-ticket"]["outcome"] == "passed", steps["6.incident-ticket"]
    incident = ticket_issue(root, "INC-1")["fields"]
    assert incident["issuetype"]["name"] == "Incident" and "|4.2.lab-health|" in incident["description"]
    assert "h3. Approval: Rollback (if invoked)" in incident["comment"]["comments"][0]["body"]


def test_a_smoke_cell_that_crashes_still_ends_in_a_decision_and_the_rollback(fresh_lab):
    """A cell of the smoke notebook raises (a bug, not a failed check) after the release was applied:
    the results are unknown, so the runner records the rollback decision and runs Section 6."""
    from stellaops_lab import status

    root, cfg = fresh_lab
    insert_cell(root, "07_smoke.ipynb", "5.web-ui", 'raise RuntimeError("the smoke cell broke")')
    res = cutover(root, "run", "--env", "local", "--phase", "cutover")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "rollback decided (the cutover stopped after the release was applied, before its go/rollback " \
           "decision (07_smoke.ipynb: RuntimeError: the smoke cell broke))" in res.stdout, res.stdout[-3000:]
    assert "outcome: rolled-back" in res.stdout
    steps = steps_of(run_dir_from(res.stdout))
    assert "5.web-ui" not in steps and "5.decision" not in steps
    assert steps["6.lab-rollback"]["outcome"] == "passed"
    assert {row["version"] for row in status(cfg).values()} == {"2025.09.1"}


def test_a_program_not_installed_stops_the_cutover_in_pre_flight_before_anything_changes(lab_project):
    """A mistyped ``tools.stellaops_cli`` (no such program here) is found by pre-flight's tool check,
    before the backup and the apply -- not by Section 4.4 after the release was applied, which
    would force a rollback: exit 2 (a configuration error), no rollback, the fix names the key."""
    from stellaops_lab import LabConfig, status

    approve_all(lab_project)
    cfg: LabConfig = lab_config(lab_project)
    before = {row["version"] for row in status(cfg).values()}
    res = cutover(lab_project, "run", "--env", "local", "--phase", "cutover",
                  "-p", "tools.stellaops_cli=stellaops-cli-mistyped")
    assert res.returncode == 2, res.stdout[-3000:] + res.stderr[-2000:]
    assert "outcome: failed" in res.stdout and "rollback decided" not in res.stdout, res.stdout[-3000:]
    assert "stellaops-cli-mistyped is not installed (needed for: stellaops-cli-mistyped --version) (install " \
           "stellaops-cli-mistyped, or set tools.stellaops_cli in params to the program's path)" in res.stdout
    steps = steps_of(run_dir_from(res.stdout))
    assert steps["4.1.tool-stellaops-cli"]["outcome"] == "failed"
    assert not [s for s in steps if s.startswith(("4.1.lab-", "4.2", "4.4", "5.", "6."))], sorted(steps)
    assert {row["version"] for row in status(cfg).values()} == before


def test_a_crash_before_the_apply_rolls_nothing_back(fresh_lab):
    """Nothing was applied (the pre-flight notebook broke): no decision, no rollback, just failed."""
    root, _ = fresh_lab
    insert_cell(root, "04_preflight.ipynb", 4, 'raise RuntimeError("pre-flight broke")')
    res = cutover(root, "run", "--env", "local", "--phase", "cutover")
    assert res.returncode == 1 and "outcome: failed" in res.stdout, res.stdout[-3000:]
    assert "rollback decided" not in res.stdout


def test_smoke_failure_rolls_back_and_the_record_shows_why(fresh_lab):
    """A fault baked into 2025.09.2 fails a smoke test; rollback restores 2025.09.1 (lab deploy mode)."""
    from stellaops_lab import status

    root, cfg = fresh_lab
    fault = json.dumps({"2025.09.2": {"runtime.ingest_error": True}})
    res = cutover(root, "run", "--env", "local", "--phase", "cutover", "-p", f"deploy.lab.release_faults={fault}")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "outcome: rolled-back" in res.stdout
    run = run_dir_from(res.stdout)
    steps = steps_of(run)
    assert steps["5.runtime-event"]["outcome"] == "failed"
    assert steps["5.runtime-event"]["message"].startswith("expected HTTP 202; the record is visible")
    assert "observed HTTP 500" in steps["5.runtime-event"]["message"]
    assert steps["5.decision"]["outcome"] == "failed"
    for sid in ("6.assess", "6.gate-rollback", "6.lab-rollback", "6.health-previous", "6.notify"):
        assert steps[sid]["outcome"] in ("passed", "skipped"), (sid, steps[sid])
    assert {row["version"] for row in status(cfg).values()} == {"2025.09.1"}
    # the bridge is told what the 6.notify cell says, with the failed steps 6.assess found
    assert steps["6.notify"]["command"] == (
        f"POST #launch-bridge: :rewind: Rolled back local to 2025.09.1 after 2 failed step(s): 5.runtime-event, "
        f"5.decision (evidence {run.name}). Incident INC-LAUNCH-ROLLBACK; root cause notes to follow.")
    assert "5.runtime-event" in (run / "artifacts" / "6.incident-notes.md").read_text()
    index = (run / "html" / "index.html").read_text()
    assert "rolled-back" in index and "smoke tests failed: 5.runtime-event" in index
    # the headline names the smoke test that failed (not the decision it led to), linked to its row
    assert '<td>Root failure</td><td><a href="#step-5.runtime-event"><code>5.runtime-event</code></a>' in index
    # the failed decision's card points to the rollback's record in this run, and to the run folder
    smoke_html = (run / "html" / "07_smoke.html").read_text()
    assert '<a href="08_rollback.html">Rollback (Section 6): 08_rollback</a>' in smoke_html
    assert '<a href="../">Run folder ' in smoke_html and (run / "html" / "08_rollback.html").is_file()
    assert cutover(root, "verify", str(run)).returncode == 0


def test_the_runbooks_cli_runs_with_the_runbooks_arguments(lab_project, tmp_path):
    """A recording stellaops-cli first on PATH (it then runs the lab's stand-in): the cutover phase
    calls it exactly as the runbook does -- profile, --sbom samples/sbom/demo.json, --bundle, and
    --uuid of the attestation the scan produced -- plus the output contract (--output json)."""
    from stellaops_lab import LabConfig

    approve_all(lab_project)
    cfg: LabConfig = lab_config(lab_project)
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "argv.jsonl"
    (fake / "stellaops-cli").write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"os.execv({str(cfg.bin_dir / 'stellaops-cli')!r}, ['stellaops-cli', *sys.argv[1:]])\n")
    (fake / "stellaops-cli").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}

    def call(*argv: str) -> subprocess.CompletedProcess[str]:
        return forkrun.run([*argv, "--root", str(lab_project)], cwd=lab_project, env=env, timeout=600)

    args = ("run", "--env", "local", "--phase", "cutover")
    res = through_post_smoke(call(*args), call, args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    run = run_dir_from(res.stdout)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    scan_out = json.loads((run / "artifacts" / "5.scan-submit.json").read_text())
    uuid = scan_out["attestation"]["uuid"]
    assert uuid and len(uuid) >= 8
    assert calls == [
        ["--version"],  # 4.1.tool-stellaops-cli: pre-flight finds it installed before anything changes
        ["signer", "verify", "--base-url", cfg.url("signer"), "--bundle", "samples/dsse/demo.json", "--output", "json"],
        ["scan", "submit", "--profile", "local", "--sbom", "samples/sbom/demo.json", "--output", "json"],
        ["signer", "sign", "--bundle", "samples/dsse/demo.json", "--output", "json"],
        ["attestor", "verify", "--uuid", uuid, "--output", "json"],
    ]
    steps = steps_of(run)
    assert steps["5.attestor-verify"]["command"].endswith(f"attestor verify --uuid {uuid} --output json")
    assert steps["5.scan-submit"]["command"].endswith(
        "scan submit --profile local --sbom samples/sbom/demo.json --output json")


def test_nbval_lax_runs_every_notebook(fresh_lab):
    """nbval executes the committed notebooks cell by cell (lax: outputs are not compared)."""
    root, _ = fresh_lab
    env = {**os.environ, "CUTOVER_ROOT": str(root)}
    # post-smoke and go-no-go are given for one run, at its gate: in JupyterLab a person clicks the
    # form the gate cell shows; nbval clicks nothing, so their require cells are skipped here (and what
    # follows them).  T-30m decides on the other slots' runs and T+45m on the T0 run: each notebook
    # nbval steps through is an interactive run of its own, with neither.
    skipped = {"07_smoke.ipynb": ['approvals.require(rb, "post-smoke")'],
               "02d_t-30m.ipynb": ["readiness.go_no_go(rb)", 'approvals.require(rb, "go-no-go")',
                                   'go = approvals.gate_status(rb, "go-no-go")'],
               "07b_smoke_deadline.ipynb": ["readiness.announce_smoke(rb, decision)"]}
    for name, sources in skipped.items():
        nb = nbformat.read(root / "notebooks" / name, as_version=4)
        cells = [c for c in nb.cells if any(c.source.strip().startswith(s) for s in sources)]
        assert len(cells) == len(sources), name
        for cell in cells:
            cell.metadata.setdefault("tags", []).append("nbval-skip")
        nbformat.write(nb, root / "notebooks" / name)
    order = [p for p in sorted((root / "notebooks").glob("*.ipynb")) if not p.name.startswith("08")]
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                          "-W", "ignore::DeprecationWarning", "-o", "addopts=", "-o", "filterwarnings=",
                          *map(str, order)], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout.splitlines()[-1]
