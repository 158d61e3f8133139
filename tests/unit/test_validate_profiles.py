"""T-12h: ``deploy/tools/validate-profiles.sh`` run by the notebook cell, with the runbook's tools as
stand-ins on PATH (a docker CLI that answers ``compose config``; tests/standins/helm for lint and
template -- no helm binary installs here)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cutover_lib.errors import StepFailed
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.engine.steps import Runbook
from nb_helpers import run_cells

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "deploy/tools/validate-profiles.sh"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A checkout's deploy/ tree (the script validates what is there)."""
    shutil.copytree(REPO / "deploy", tmp_path / "root" / "deploy")
    return tmp_path / "root"


def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, helm: bool = True, failing: str = "",
          library: bool = True) -> Path:
    """PATH with a docker CLI stand-in (``compose version`` and ``compose config``; ``config`` of the
    file named ``failing`` fails as docker compose does) and, with ``helm``, the helm stand-in.
    Without ``library`` the cell's python (``sys.executable``, passed as PYTHON) is one that lacks
    the Helm library, so helm profiles without a helm CLI are skipped."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not library:
        bare = bin_dir / "python-without-helm"
        bare.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'helm_python'\" >&2\nexit 1\n")
        bare.chmod(0o755)
        monkeypatch.setattr(sys, "executable", str(bare))
    docker = bin_dir / "docker"
    docker.write_text(f"""#!/bin/sh
echo "docker $*" >> "{tmp_path}/calls.log"
case "$*" in
  "compose version") echo "Docker Compose version v2.29.0"; exit 0;;
  *{failing or 'no-such-file'}*config) echo "services.web.ports: invalid ip address" >&2; exit 15;;
  *config) echo "name: stellaops"; exit 0;;
esac
exit 1
""")
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    if helm:
        shutil.copy(REPO / "tests" / "standins" / "helm", bin_dir / "helm")
        (bin_dir / "helm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("HELM_STANDIN_LOG", str(tmp_path / "helm.log"))
    return bin_dir


def rb_for(root: Path, env: str, *overrides: str) -> Runbook:
    environment = load_environment(env, REPO / "params", parse_overrides(list(overrides)))
    return Runbook(environment, RunFolder.create(root / "executed", env, "t"), root=root, notebook="t")


def record(rb: Runbook, step_id: str = "2.t-12h.validate-profiles") -> dict:
    return [r for r in rb.run.read_ledger() if r.get("step_id") == step_id][-1]


def test_the_script_reports_one_line_per_profile(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tools(tmp_path, monkeypatch)
    out = subprocess.run([str(root / SCRIPT)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"validate-profiles: {f}: ok" for f in (
        "deploy/compose/docker-compose.airgap.yaml", "deploy/compose/docker-compose.dev.yaml",
        "deploy/compose/docker-compose.mirror.yaml", "deploy/compose/docker-compose.prod.yaml",
        "deploy/compose/docker-compose.stage.yaml", "deploy/helm/stellaops/values-prod.yaml",
        "deploy/helm/stellaops/values-stage.yaml")]
    calls = (tmp_path / "calls.log").read_text()
    assert "docker compose --env-file deploy/compose/prod.env -f deploy/compose/docker-compose.prod.yaml config" in calls
    for profile in ("dev", "airgap", "mirror"):  # every profile has its env file (issue 17)
        assert f"docker compose --env-file deploy/compose/{profile}.env -f deploy/compose/docker-compose.{profile}.yaml " \
               f"config" in calls


def test_the_cell_passes_when_every_profile_is_ok_and_keeps_the_log(root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch):
    tools(tmp_path, monkeypatch)
    rb = rb_for(root, "prod")
    run_cells(rb, "02b_t-12h.ipynb", "2.t-12h.validate-profiles")
    rec = record(rb)
    assert rec["outcome"] == "passed" and rec["command"] == SCRIPT
    assert rec["observed"].endswith("7 profiles: 7 ok")
    assert {p["status"] for p in rec["data"]["profiles"].values()} == {"ok"}
    log = (rb.run.path / "artifacts" / "2.t-12h.validate-profiles.log").read_text()
    assert "→ helm lint deploy/helm/stellaops -f deploy/helm/stellaops/values-prod.yaml" in log


def test_a_skipped_profile_fails_in_prod_and_passes_named_where_allowed(root: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    tools(tmp_path, monkeypatch, helm=False, library=False)
    rb = rb_for(root, "prod")
    with pytest.raises(StepFailed):
        run_cells(rb, "02b_t-12h.ipynb", "2.t-12h.validate-profiles")
    rec = record(rb)
    assert "prod-helm (helm is not installed): skipped, and every profile must be validated here" in rec["message"]
    assert "install the missing tool" in rec["message"]
    lab = rb_for(root, "local")  # tools.validate_profiles_may_skip: true
    run_cells(lab, "02b_t-12h.ipynb", "2.t-12h.validate-profiles")
    rec = record(lab)
    assert rec["outcome"] == "passed"
    assert "5 ok, skipped: stage-helm (helm is not installed), prod-helm (helm is not installed)" in rec["observed"]


def test_a_failing_profile_fails_the_step_naming_it(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tools(tmp_path, monkeypatch, failing="docker-compose.airgap.yaml")
    rb = rb_for(root, "prod")
    with pytest.raises(StepFailed):
        run_cells(rb, "02b_t-12h.ipynb", "2.t-12h.validate-profiles")
    msg = record(rb)["message"]
    assert msg.startswith("expected exit 0; every profile of deploy.profiles validated; observed exit 1")
    assert "observed exit 1; airgap: FAILED (docker compose config: services.web.ports: invalid ip address)" in msg


def test_a_profile_params_name_but_the_script_never_saw_fails(root: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    tools(tmp_path, monkeypatch)
    (root / "deploy" / "compose" / "docker-compose.mirror.yaml").unlink()
    rb = rb_for(root, "prod")
    with pytest.raises(StepFailed):
        run_cells(rb, "02b_t-12h.ipynb", "2.t-12h.validate-profiles")
    assert "mirror (deploy/compose/docker-compose.mirror.yaml): not reported by the script" in record(rb)["message"]


HELM_PROFILES = ("deploy/helm/stellaops/values-prod.yaml", "deploy/helm/stellaops/values-stage.yaml")


def test_without_a_helm_cli_the_helm_library_validates_the_helm_profiles(root: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("helm_python")
    bin_dir = tools(tmp_path, monkeypatch, helm=False)
    assert shutil.which("helm", path=os.environ["PATH"]) is None
    out = subprocess.run([str(root / SCRIPT)], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHON": sys.executable, "VALIDATE_PROFILES_OUT": str(tmp_path / "r")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == [f"validate-profiles: {f}: ok (Helm library)" for f in HELM_PROFILES]
    assert f"→ helm-validate.py deploy/helm/stellaops {HELM_PROFILES[0]} --out {tmp_path / 'r'} (Helm library, " \
           f"{sys.executable})" in out.stderr
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["prod.yaml", "stage.yaml"]
    assert not (bin_dir / "helm").exists() and not (tmp_path / "helm.log").exists()


def test_whether_the_helm_library_is_installed_is_asked_without_importing_it(root: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch):
    """The script's probe for the Helm library asks the import system where the modules are; it
    does not import them (importing kubernetes_validate loads jsonschema: ~1.5 s, in every T-12h
    run).  Each Python the script starts records, at exit, which of them it had loaded."""
    pytest.importorskip("helm_python")
    tools(tmp_path, monkeypatch, helm=False)
    hooks, log = tmp_path / "hooks", tmp_path / "loaded.log"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import atexit, json, os, sys\n"
        "def _record():\n"
        "    with open(os.environ['LOADED_LOG'], 'a') as log:\n"
        "        heavy = ('helm_python', 'kubernetes_validate', 'jsonschema')\n"
        "        log.write(json.dumps([sys.argv[0], [m for m in heavy if m in sys.modules]]) + '\\n')\n"
        "atexit.register(_record)\n")
    pythonpath = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH")) if p)
    out = subprocess.run([str(root / SCRIPT)], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": pythonpath,
                              "LOADED_LOG": str(log)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == [f"validate-profiles: {f}: ok (Helm library)" for f in HELM_PROFILES]
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [loaded for argv0, loaded in runs if argv0 == "-c"] == [[]]
    assert [loaded for argv0, loaded in runs if argv0.endswith("helm-validate.py")] == \
        [["helm_python", "kubernetes_validate", "jsonschema"]] * len(HELM_PROFILES)


def test_without_a_helm_cli_the_cell_passes_with_the_library_and_keeps_the_renderings(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("helm_python")
    tools(tmp_path, monkeypatch, helm=False)
    rb = rb_for(root, "prod")
    run_cells(rb, "02b_t-12h.ipynb", "2.t-12h.validate-profiles")
    rec = record(rb)
    assert rec["outcome"] == "passed"
    assert rec["observed"].endswith("7 profiles: 7 ok, Helm library: stage-helm, prod-helm")
    assert rec["data"]["profiles"]["prod-helm"] == {"file": HELM_PROFILES[0], "status": "ok", "why": "Helm library"}
    arts = rb.run.path / "artifacts"
    for profile in ("prod", "stage"):
        name = f"2.t-12h.validate-profiles.{profile}.yaml"
        assert f"artifacts/{name}" in rec["artifacts"]
        assert f"secretName: stellaops-{profile}-core" in (arts / name).read_text()
    log = (arts / "2.t-12h.validate-profiles.log").read_text()
    assert "helm-validate: deploy/helm/stellaops/values-prod.yaml: helm v4." in log


def test_a_helm_profile_the_library_rejects_fails_the_step_naming_it(root: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("helm_python")
    tools(tmp_path, monkeypatch, helm=False)
    values = root / HELM_PROFILES[1]
    values.write_text(values.read_text().replace("web:              {replicas: 1,", "web:              {replicas: one,"))
    rb = rb_for(root, "prod")
    with pytest.raises(StepFailed):
        run_cells(rb, "02b_t-12h.ipynb", "2.t-12h.validate-profiles")
    rec = record(rb)
    assert "observed exit 1; stage-helm: FAILED (kubernetes schema: templates/deployment.yaml: Deployment " \
           "stellaops-web: spec.replicas: 'one' is not of type 'integer', 'null' (Kubernetes 1.37))" in rec["message"]
    assert "prod-helm" not in rec["message"]
    assert "artifacts/2.t-12h.validate-profiles.stage.yaml" in rec["artifacts"]  # (what was rejected, kept)
