"""The CLI's exit codes and one-line errors, through typer's CliRunner."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cutover_lib.cli.app import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


@pytest.mark.parametrize("env", ["local", "dev", "stage", "prod", "airgap", "mirror"])
def test_params_check_all_environments(env):
    res = invoke("params", "check", "--env", env, "--root", str(REPO))
    assert res.exit_code == 0, res.output
    assert "deploy.mode" in res.output and "2025.09.2" in res.output


def test_params_check_bad_duration_one_line_exit_2(project):
    f = project / "params" / "prod.yaml"
    f.write_text(f.read_text().replace("timeout: 15m", "timeout: fifteen"))
    res = invoke("params", "check", "--env", "prod", "--root", str(project))
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[0] == \
        'error: params/prod.yaml: deploy.helm.timeout: expected a duration like 15m, got "fifteen" ' \
        '(fix the file, then run: cutover params check --env prod)'
    assert "Traceback" not in res.output


def test_unknown_phase_exit_2(project):
    res = invoke("run", "--env", "local", "--phase", "launch", "--root", str(project))
    assert res.exit_code == 2 and "unknown phase 'launch'" in res.output and "Traceback" not in res.output
    assert not (project / "executed").exists()


def test_missing_notebook_exit_2(project):
    (project / "notebooks" / "01_roles_and_timeline.ipynb").unlink()
    res = invoke("run", "--env", "local", "--phase", "readiness", "--root", str(project))
    assert res.exit_code == 2 and "notebooks/01_roles_and_timeline.ipynb of phase readiness is missing" in res.output


def test_verify_not_a_run_folder(tmp_path):
    res = invoke("verify", str(tmp_path))
    assert res.exit_code == 1 and "is not a run folder" in res.output


def test_timeline_prints_every_activity():
    res = invoke("timeline", "--env", "prod", "--root", str(REPO))
    assert res.exit_code == 0
    for label, utc in [("T-24h", "2025-10-26 14:00"), ("T0", "2025-10-27 14:00"), ("T+45m", "2025-10-27 14:45"),
                       ("T+4h", "2025-10-27 18:00")]:
        assert label in res.output and utc in res.output


def test_help_is_cheap():
    import subprocess
    import sys

    code = ("import sys, cutover_lib.cli.app; "
            "heavy = [m for m in ('papermill','nbconvert','docker','kubernetes','nbclient','httpx') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_top_level_help_is_typers_and_served_without_loading_it():
    import subprocess
    import sys

    from cutover_lib.cli.help import TOP_HELP, render

    assert TOP_HELP == render(), "the commands changed: regenerate with .venv/bin/python -m cutover_lib.cli.help"
    probe = "import sys; sys.argv = ['cutover'] + sys.argv[1:]; from cutover_lib.cli.entry import main; main()"
    helped = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True)
    assert (helped.returncode, helped.stdout, helped.stderr) == (0, TOP_HELP, "")
    bare = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert (bare.returncode, bare.stdout, bare.stderr) == (2, "", TOP_HELP)
    code = ("import sys; sys.argv = ['cutover', '--help']; from cutover_lib.cli import entry as _entry\n"
            "def leave(code):\n"
            "    print(sorted(m for m in ('typer', 'click', 'rich', 'pydantic') if m in sys.modules))\n"
            "    raise SystemExit(code)\n"
            "_entry.os._exit = leave\n"
            "_entry.main()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == TOP_HELP + "[]\n"


def test_subcommand_help_still_comes_from_typer():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['cutover', 'run', '--help']; "
                          "from cutover_lib.cli.entry import main; main()"], capture_output=True, text=True)
    assert res.returncode == 0 and "--phase" in res.stdout and "Usage: cutover run" in res.stdout


def test_public_api_names():
    import cutover_lib

    assert cutover_lib.__all__ == sorted(cutover_lib.__all__)
    for name in cutover_lib.__all__:
        assert getattr(cutover_lib, name) is not None
    # JupyterLab completes what dir() lists: the cell verbs' checks and the step modules
    listed = dir(cutover_lib)
    for name in ("Runbook", "ANY", "signed_dsse", "containers_healthy", "rollback_target", "backup", "approvals"):
        assert name in listed


def test_one_exit_code_table():
    """Every error class's exit code is the one the table in _errors says; an error raised in a notebook
    reaches the runner by name and maps through the same table."""
    from cutover_lib import errors as _errors

    table = {"UsageError": 2, "ParamsError": 2, "SecretError": 2, "ToolMissing": 2, "EvidenceError": 1,
             "EvidenceTampered": 1, "LockHeld": 4, "StepFailed": 1, "CommandFailed": 1, "CheckFailed": 1,
             "GateNotApproved": 3, "OutcomeUnknown": 1, "CutoverError": 1}
    for name, code in table.items():
        assert getattr(_errors, name).exit_code == code == _errors.exit_code_for(name), name
        assert f"{name} " in _errors.__doc__ and f"exit {code}" in _errors.__doc__
    assert _errors.exit_code_for("KeyError") == _errors.EXIT_FAILED == 1
    assert (_errors.EXIT_PASSED, _errors.EXIT_USAGE, _errors.EXIT_GATE, _errors.EXIT_LOCK) == (0, 2, 3, 4)
    # `cutover lab ...` exits by the same table: a bad argument is usage, a lab that cannot start or is
    # not healthy after `lab up` (issue 12) is a failed check
    from stellaops_lab import _errors as lab_errors

    lab_table = {"LabConfigError": _errors.EXIT_USAGE, "LabError": _errors.EXIT_FAILED,
                 "LabUnhealthy": _errors.EXIT_FAILED}
    for name, code in lab_table.items():
        assert getattr(lab_errors, name).exit_code == code, name
        assert f"{name} " in lab_errors.__doc__ and f"exit {code}" in lab_errors.__doc__


def test_params_check_warns_about_unset_secrets_and_a_t0_in_the_past(monkeypatch):
    """Valid params can still fail at T0: an unset secret variable, a T0 long gone (issue 14, item 6)."""
    monkeypatch.delenv("JIRA_API_TOKEN", raising=False)
    res = CliRunner().invoke(app, ["params", "check", "--env", "prod", "--root", str(REPO)])  # (T0 2025-10-27)
    assert res.exit_code == 0 and res.stdout.startswith("params/prod.yaml: valid")
    warnings = res.stderr.splitlines()
    assert "warning: ticket.token: env:JIRA_API_TOKEN is not set in this shell (export JIRA_API_TOKEN=... " \
           "before the run)" in warnings
    assert any(w.startswith("warning: t0: 2025-10-27T14:00Z is ") and "days in the past" in w for w in warnings)
    monkeypatch.setenv("JIRA_API_TOKEN", "x")
    res = CliRunner().invoke(app, ["params", "check", "--env", "prod", "--root", str(REPO)])
    assert not [w for w in res.stderr.splitlines() if "JIRA_API_TOKEN" in w]


def test_progress_lines_are_coloured_on_a_terminal_and_plain_with_no_color(monkeypatch):
    """Issue 14, item 6: FAILED in red, PASSED in green on a terminal; NO_COLOR (and a pipe) plain."""
    import io

    from rich.console import Console

    from cutover_lib.engine.progress import styled as _styled

    def shown(**kw):
        out = io.StringIO()
        Console(file=out, force_terminal=True, color_system="standard", **kw).print(
            _styled("    22:50:31Z [FAILED ] 5.signing Smoke: signing (0.01s) expected x; observed y"))
        return out.getvalue()

    assert "\x1b[1;31m[FAILED ]\x1b[0m" in shown()
    monkeypatch.setenv("NO_COLOR", "1")
    assert "31m" not in shown() and "[FAILED ]" in shown()  # (no colour; bold is not a colour)
    assert [str(s.style) for s in _styled("outcome: rolled-back - x").spans] == ["bold yellow"]


# ------------------------------------------------------- `params check` without typer (issue 13, goal 2)
CUTOVER = str(Path(__import__("sys").executable).with_name("cutover"))


@pytest.mark.parametrize("argv", [
    ["--env", "prod"], ["-e", "local", "-p", "t0=2026-12-01T10:00Z"], ["--env=stage", "--param=slo.scan=4m"],
    [], ["--env", "prood"], ["--env", "prod", "-p", "slo.scan"], ["--env", "prod", "-p", "name=stage"],
])
def test_params_check_answers_as_the_full_cli_does_without_loading_typer(argv, monkeypatch):
    """The console script answers the plain forms of ``params check`` itself (no typer, no click):
    the same stdout, stderr and exit code as the typer command, and typer (or pydantic) is never imported."""
    import subprocess

    full = CliRunner().invoke(app, ["params", "check", *argv, "--root", str(REPO)])
    fast = subprocess.run([CUTOVER, "params", "check", *argv, "--root", str(REPO)], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPROFILEIMPORTTIME": "1"}, timeout=60)
    imports = [ln for ln in fast.stderr.splitlines() if ln.startswith("import time:")]
    # nor pydantic: the params structs are msgspec's, built in milliseconds
    assert imports and not [ln for ln in imports if ln.rstrip().endswith((" typer", " click", " pydantic"))]
    assert "cutover_lib.config.models" in "".join(imports)  # (the check really ran)
    assert (fast.returncode, fast.stdout) == (full.exit_code, full.stdout)
    assert [ln for ln in fast.stderr.splitlines() if not ln.startswith("import time:")] == full.stderr.splitlines()


@pytest.mark.parametrize("argv", [["--help"], ["--env"], ["--bogus"], ["--env", "a", "--env", "b"], ["-e", "a", "x"]])
def test_anything_but_a_plain_params_check_goes_to_the_full_cli(argv):
    """``--help``, an unknown or repeated option, a missing value: click's own help and usage errors."""
    import subprocess

    from cutover_lib.cli.params_check import fast_args

    assert fast_args(argv) is None
    res = subprocess.run([CUTOVER, "params", "check", *argv], capture_output=True, text=True, timeout=60, cwd=REPO)
    full = CliRunner().invoke(app, ["params", "check", *argv])
    assert res.returncode == full.exit_code and "Traceback" not in res.stderr
    assert ("Usage: cutover params check" in res.stdout + res.stderr) == ("Usage:" in full.output)


def test_a_closed_pipe_ends_params_check_quietly():
    import subprocess

    res = subprocess.run(f"'{CUTOVER}' params check --env prod --root '{REPO}' | head -1", shell=True,
                         capture_output=True, text=True, timeout=60, executable="/bin/bash")
    assert res.stdout.startswith("params/prod.yaml: valid") and "Traceback" not in res.stderr
