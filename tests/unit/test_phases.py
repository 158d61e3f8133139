"""Phases are data: ``notebooks/phases.yaml`` lists each phase's notebooks; a broken file is one
clear line (exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cutover_lib.errors import UsageError
from cutover_lib.engine.phases import PHASES_FILE, load_phases, load_slots, resolve_phase
from cutover_lib.cli.app import app

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_phases():
    phases = load_phases(REPO)
    assert list(phases) == ["readiness", "t-24h", "t-12h", "t-6h", "rehearsal", "t-30m", "cutover", "smoke-decision",
                            "rollback", "post"]
    assert phases["cutover"] == ["04_preflight.ipynb", "05_apply.ipynb", "06_validation.ipynb", "07_smoke.ipynb"]
    # readiness runs T-24h .. T-6h at once; T-30m is its own slot, decided 30 minutes before T0, not a day early
    assert phases["readiness"] == phases["t-24h"] + phases["t-12h"] + phases["t-6h"]
    assert not set(phases["t-30m"]) & set(phases["readiness"])


def test_every_section_2_activity_is_a_slot_of_its_own():
    slots = load_slots(REPO)
    assert slots == {"T-24h": "t-24h", "T-12h": "t-12h", "T-6h": "t-6h", "T-2h": "rehearsal", "T-30m": "t-30m",
                     "T0": "cutover", "T+45m": "smoke-decision", "T+4h": "post"}
    # `--phase` takes a slot as the runbook says it, in any case
    assert [resolve_phase(REPO, s) for s in ("t-12h", "T0", "t0", "t+45m", "T+4H", "t-2h", "post")] == \
        ["t-12h", "cutover", "cutover", "smoke-decision", "post", "rehearsal", "post"]


@pytest.mark.parametrize("text, words", [
    ("readiness: [01_a.ipynb]\nrollback: [08_a.ipynb]\nslots: {T-7h: readiness}\n", "not a Section 2 activity"),
    ("readiness: [01_a.ipynb]\nslots: {T0: nope}\n", "names phase 'nope'"),
    ("readiness: [01_a.ipynb]\nslots: [T0]\n", "not a mapping of slot: phase"),
])
def test_a_broken_slots_mapping_is_one_clear_error(project: Path, text: str, words: str):
    (project / PHASES_FILE).write_text(text)
    with pytest.raises(UsageError) as err:
        load_slots(project)
    assert words in err.value.one_line() and err.value.exit_code == 2


def test_adding_a_notebook_is_one_line(project: Path):
    f = project / PHASES_FILE
    f.write_text(f.read_text().replace("  - 10_rehearsal_log.ipynb\n",
                                       "  - 10_rehearsal_log.ipynb\n  - 11_extra.ipynb\n"))
    assert load_phases(project)["post"][-1] == "11_extra.ipynb"


@pytest.mark.parametrize("text, words", [
    ("", "not a mapping"),
    ("- a\n- b\n", "not a mapping"),
    ("readiness: 01_a.ipynb\n", "must list notebook file names"),
    ("readiness: []\n", "must list notebook file names"),
    ("readiness: [../../etc/passwd.ipynb]\n", "must list notebook file names"),
    ("readiness: [sub/01_a.ipynb]\n", "must list notebook file names"),
    ("readiness: [01_a.py]\n", "must list notebook file names"),
    ("'../x': [01_a.ipynb]\n", "not a plain name"),
    ("cutover: [04_preflight.ipynb]\n", "needs a rollback phase"),
    ("readiness: [01_a.ipynb\n", "cannot be read"),
])
def test_a_broken_phases_file_is_one_clear_error(project: Path, text: str, words: str):
    (project / PHASES_FILE).write_text(text)
    with pytest.raises(UsageError) as err:
        load_phases(project)
    assert words in err.value.one_line()
    assert err.value.exit_code == 2


def test_run_with_a_missing_phases_file_exits_2_with_one_line(project: Path):
    (project / PHASES_FILE).unlink()
    res = CliRunner().invoke(app, ["run", "--env", "local", "--phase", "readiness", "--root", str(project)])
    assert res.exit_code == 2, res.output
    assert "notebooks/phases.yaml is missing" in res.output
    assert "Traceback" not in res.output
    assert not (project / "executed" / "local").exists() or not any((project / "executed" / "local").iterdir())


def test_unknown_phase_names_the_phases_file(project: Path):
    res = CliRunner().invoke(app, ["run", "--env", "local", "--phase", "nope", "--root", str(project)])
    assert res.exit_code == 2
    assert "unknown phase 'nope'" in res.output and "notebooks/phases.yaml" in res.output
    assert "t+45m" in res.output.lower()  # the slots are offered too
