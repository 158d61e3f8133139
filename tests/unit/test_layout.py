"""The tool and the lab are separate: the production package never imports the lab, and holds none
of the lab's internals (its routes, metric names, table names, page markers) -- those come from
params or live in ``lab/``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "cutover_lib"

#: what only the lab knows: if one of these appears in the tool, the tool is wrong against a real Stella Ops
LAB_INTERNALS = [
    "stellaops_lab", "lab_http_", "lab.sqlite3", "LAB_FAULTS", "/-/audit", "/api/v1/queue/health",
    "/api/v1/runtime/events", "/api/v1/signer/", "/api/v1/attestations", "/api/v1/scans", 'id="dashboard"',
    "policy-view", "runtime_events ORDER BY", "FROM runtime_events", "dockerlab", "cutover lab up",
    # metric names are the site's PromQL in params (monitoring.promql), never the tool's
    "http_server_request_duration", "stellaops_scanner_queue_depth", "_requests_total", "ALERTS{",
]


def tool_sources() -> list[Path]:
    return sorted(p for p in TOOL.rglob("*.py"))


@pytest.mark.parametrize("needle", LAB_INTERNALS)
def test_no_lab_internals_in_the_tool(needle: str) -> None:
    hits = [f"{p.relative_to(REPO)}:{n}" for p in tool_sources()
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if needle in line]
    assert not hits, f"{needle!r} belongs in params or lab/: {hits}"


def test_the_tool_never_imports_the_lab() -> None:
    """Import every module of the tool (and run its CLI's plug-in discovery without using it): the
    lab's package is not loaded."""
    modules = sorted(".".join(("cutover_lib", *p.relative_to(TOOL).with_suffix("").parts)).removesuffix(".__init__")
                     for p in TOOL.rglob("*.py") if p.stem != "__main__")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            "print(sorted(n for n in sys.modules if n.startswith('stellaops_lab')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    # cutover_lib.cli.app adds the plug-in commands: the lab's CLI module (and only it) may load there
    loaded = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list
    assert set(loaded) <= {"stellaops_lab", "stellaops_lab._cli"}, loaded


def test_the_lab_plugs_in_by_entry_point_only() -> None:
    from cutover_lib.adapters.plugins import names

    assert names("deploy") == ["lab"] and names("backup") == ["lab"] and names("commands") == ["lab"]
    text = (REPO / "lab" / "pyproject.toml").read_text()
    for group in ("stellaops_cutover.deploy_modes", "stellaops_cutover.backup_modes", "stellaops_cutover.commands"):
        assert group in text
    assert not re.search(r"^\s*\"?(tornado|pyjwt)", (REPO / "pyproject.toml").read_text(), re.M), \
        "the lab's dependencies are declared by the lab"


def test_an_unknown_deploy_or_backup_mode_is_a_params_error(tmp_path: Path) -> None:
    from cutover_lib.errors import ParamsError
    from cutover_lib.config.params import load_environment, parse_overrides

    with pytest.raises(ParamsError, match="deploy.mode 'nomad' is not compose, helm or an installed plug-in's"):
        load_environment("local", REPO / "params", parse_overrides(["deploy.mode=nomad"]))
    with pytest.raises(ParamsError, match="'tape' is not tools or an installed plug-in's backup mode"):
        load_environment("local", REPO / "params", parse_overrides(["backup.mode=tape"]))
    with pytest.raises(ParamsError, match="deploy.nomad: unknown key"):
        load_environment("local", REPO / "params", parse_overrides(["deploy.nomad={a: 1}"]))


LAYERS = ("config", "engine", "evidence", "adapters", "runbook", "cli")
#: what each layer may import of the others (besides the top-level errors and lazy): the runbook's
#: steps and the CLI sit on top, nothing below them imports them; params know no steps or evidence
MAY_IMPORT = {
    "config": {"adapters"},  # plug-in names of deploy/backup modes; a kubernetes secret store's reader
    "engine": {"config", "evidence", "adapters"},
    "evidence": {"config", "engine", "adapters"},
    "adapters": {"config", "engine", "evidence"},
    "runbook": {"config", "engine", "evidence", "adapters"},
    "cli": {"config", "engine", "evidence", "adapters", "runbook"},
}


def test_layers_are_folders_and_each_imports_only_what_lies_below_it() -> None:
    top = sorted(p.name for p in TOOL.glob("*.py"))
    assert top == ["__init__.py", "errors.py", "lazy.py"], "every module but the API, the error tree and lazy.py " \
                                                          f"lives in a layer folder: {top}"
    assert sorted(p.name for p in TOOL.iterdir() if p.is_dir() and (p / "__init__.py").is_file()) == sorted(LAYERS)
    wrong = []
    for layer in LAYERS:
        for p in sorted((TOOL / layer).glob("*.py")):
            text = p.read_text(encoding="utf-8")
            used = set(re.findall(r"^\s*from \.\.(\w+)(?:\.\w+)? import", text, re.M)) - {"errors", "lazy"}
            used |= set(re.findall(r"\bcutover_lib\.(\w+)\.", text)) - {layer, "errors", "lazy"}
            wrong += [f"{layer}/{p.name} imports {u}" for u in sorted(used - MAY_IMPORT[layer])]
    assert not wrong, wrong


def test_each_module_is_under_400_lines() -> None:
    long = {str(p.relative_to(TOOL)): n for p in tool_sources() if (n := len(p.read_text().splitlines())) >= 400}
    assert not long, long
