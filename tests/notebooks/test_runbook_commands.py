"""The notebooks are the runbook: every command and request the runbook spells out is in a code
cell of a committed notebook, as the runbook writes it (parameters as ``{params}`` names)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]


def code_cells() -> list[tuple[str, str]]:
    out = []
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        out += [(path.name, c.source) for c in nb.cells if c.cell_type == "code"]
    return out


# runbook section, the runbook's text, a pattern the cell must contain (whitespace-insensitive)
COMMANDS = [
    ("3", "docker network create stellaops_frontdoor || true", r'"docker network create {compose.network}"'),
    ("3", "helm upgrade stellaops deploy/helm/stellaops -f deploy/helm/stellaops/values-stage.yaml",
     r'"helm upgrade {helm.release} {helm.chart} -f {helm.values} --namespace'),
    ("3", "curl https://authority.stage.../healthz", r'"GET {services.authority}/healthz"'),
    ("3", "curl https://scanner.stage.../healthz", r'"GET {services.scanner}/healthz"'),
    ("3", "stellaops-cli scan submit --profile staging --sbom samples/sbom/demo.json",
     r'"{tools.stellaops_cli} scan submit --profile {tools.profile} --sbom {samples.sbom}'),
    ("4.1", "docker network create stellaops_frontdoor || true (each compose host)",
     r'"4.1.network", "docker network create {compose.network}", on="each node"'),
    ("4.1", 'mongodump --uri "$MONGO_BACKUP_URI" --out /backups/launch-$(date -Iseconds)',
     r'"mongodump --config {mongo_config} --out {backup.mongo.out_dir}/launch-{now}"'),
    ("4.1", "mc mirror --overwrite minio/stellaops minio-backup/stellaops-$(date +%Y%m%d%H%M)",
     r'"mc mirror --overwrite {backup.object_store.source} {backup.object_store.target_prefix}{now_minute}"'),
    ("4.2", "docker compose --env-file prod.env -f deploy/compose/docker-compose.prod.yaml pull",
     r'"docker compose --env-file {compose.env_file} -f {compose.file} pull", on="each node"'),
    ("4.2", "docker compose --env-file prod.env -f deploy/compose/docker-compose.prod.yaml up -d",
     r'"docker compose --env-file {compose.env_file} -f {compose.file} up -d", on="each node"'),
    ("4.2", "docker compose ps", r'"docker compose --env-file {compose.env_file} -f {compose.file} ps'),
    ("4.2", "docker logs <service> --tail 50", r'"docker logs stellaops-{service} --tail 50"'),
    ("4.3", "helm upgrade stellaops deploy/helm/stellaops -f deploy/helm/stellaops/values-prod.yaml --atomic "
            "--timeout 15m",
     r'"helm upgrade {helm.release} {helm.chart} -f {helm.values} --atomic --timeout {helm.timeout} "'),
    ("4.3", "kubectl get pods -n stellaops --watch", r'"kubectl get pods -n {helm.namespace} --watch'),
    ("4.3", "kubectl rollout status deployment/<service>", r'"kubectl rollout status deployment/{deployment}'),
    ("4.4", "curl https://authority.prod.../.well-known/openid-configuration",
     r'"GET {services.authority}/.well-known/openid-configuration"'),
    ("4.4", "stellaops-cli signer verify --base-url https://signer.prod... --bundle samples/dsse/demo.json",
     r'"{tools.stellaops_cli} signer verify --base-url {services.signer} --bundle {samples.dsse}'),
    ("4.4", "docker exec stellaops-scanner-web dotnet StellaOps.Scanner.WebService.dll health queue",
     r'"dotnet StellaOps.Scanner.WebService.dll health queue", inside="stellaops-scanner-web"'),
    ("4.4", "Notify (legacy) still accessible", r'"GET {services.notify}/healthz"'),
    ("5", "curl https://scanner.prod.../healthz", r'"5.api-health", "GET {services.scanner}/healthz"'),
    ("5", "stellaops-cli scan submit --profile prod --sbom samples/sbom/demo.json",
     r'"{tools.stellaops_cli} scan submit --profile {tools.profile} --sbom {samples.sbom} --output json"'),
    ("5", "Post sample event from Zastava observer fixture -> /runtime/events",
     r'"POST {services.runtime}/runtime/events", json=event'),
    ("5", "stellaops-cli signer sign --bundle demo.json", r'"{tools.stellaops_cli} signer sign --bundle {samples.dsse}'),
    ("5", "stellaops-cli attestor verify --uuid <uuid>", r'"{tools.stellaops_cli} attestor verify --uuid {uuid}'),
    ("5", "Web UI: manual login, verify dashboards render and latency within budget",
     r'"5.web-ui", "{services.web}",.* login={"path": "{smoke.web_login.path}", "user": "{smoke.web_login.user}", '
     r'"password": "{smoke.web_login.password}"}, pages="{smoke.web_pages}", within="{slo.ui}"'),
    ("6", "docker compose --env-file prod.env -f deploy/compose/docker-compose.prod.yaml down",
     r'"docker compose --env-file {compose.env_file} -f {compose.file} down", on="each node"'),
    ("6", "docker compose --env-file stage.env -f deploy/compose/docker-compose.stage.yaml up -d",
     r'"docker compose --env-file {compose.previous.env_file} -f {compose.previous.file} up -d",\s*on="each node"'),
    ("6", "helm rollback stellaops <previous-release-number> --namespace stellaops",
     r'"helm rollback {helm.release} {revision} --namespace {helm.namespace}'),
    ("6", 'mongorestore --uri "$MONGO_BACKUP_URI" --drop /backups/launch-<timestamp>',
     r'"mongorestore --config {mongo_config} --drop {snapshot}"'),
    ("6", "mc mirror minio-backup/stellaops-<timestamp> minio/stellaops", r'"mc mirror {mirror} {backup.object_store.source}"'),
    ("7", "Confirm audit trails: Authority tokens issued", r'"7.audit-tokens", "{audit.tokens_issued}"'),
    ("2", "Run deploy/tools/validate-profiles.sh; capture logs in ticket",
     r'"2.t-12h.validate-profiles", "{tools.validate_profiles}"'),
    ("3", "Run deploy/tools/validate-profiles.sh and archive output", r'"3.validate-profiles", "{tools.validate_profiles}"'),
    # (a directory: `kubectl apply -f secrets/stage/*.yaml` as typed hands kubectl one file and three
    # stray arguments, which real kubectl refuses)
    ("3", "kubectl apply -f secrets/stage/*.yaml", r'"kubectl apply --server-side -f {helm.stage_secrets}'),
]


@pytest.mark.parametrize("section, runbook, pattern", COMMANDS, ids=lambda v: v if len(str(v)) < 40 else None)
def test_the_runbook_command_is_in_a_code_cell(section: str, runbook: str, pattern: str) -> None:
    squash = re.compile(r"\s+")
    cells = [(name, squash.sub(" ", src)) for name, src in code_cells()]
    want = re.compile(squash.sub(" ", pattern).replace(r"\s*", r"\s*"))
    found = [name for name, src in cells if want.search(src)]
    assert found, f"Section {section}: `{runbook}` is in no code cell (looked for {pattern})"


def test_no_code_cell_hides_a_deploy_step_behind_a_library_call() -> None:
    """The old generated calls (deploy.apply for compose/helm, checks.smoke_*) are gone: what is left
    of ``deploy.*`` / ``backup.*`` in the cells is the plug-in hooks."""
    calls = {m for _, src in code_cells() for m in re.findall(r"\b(deploy|checks|backup)\.(\w+)\(", src)}
    assert calls <= {("deploy", "apply"), ("deploy", "rollback"), ("checks", "decision"), ("backup", "by_plugin"),
                     ("backup", "last_backup")}, calls


def _sh_calls(notebooks: list[str]) -> list[tuple[str, str, dict[str, str]]]:
    """(step id, program, keyword arguments as source text) of every ``rb.sh`` in those notebooks."""
    import ast

    out = []
    for name in notebooks:
        nb = nbformat.read(str(REPO / "notebooks" / name), as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "sh" \
                        and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                    kwargs = {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}
                    out.append((ast.unparse(node.args[0]).strip("'\""), node.args[1].value.split()[0], kwargs))
    return out


# programs a phase need not check: coreutils, and the project's own script (params check finds it)
_NOT_CHECKED = {"sha256sum", "{tools.validate_profiles}"}


@pytest.mark.parametrize("phase", ["rehearsal", "cutover", "rollback"])
def test_a_phase_checks_every_program_it_runs_before_it_changes_anything(phase: str) -> None:
    """Each program a cell of the phase runs on this host (for the cutover, its automatic rollback's too)
    is checked by a ``*.tool-*`` cell for the same deploy mode and backup mode, placed before the
    phase's first mutating command: a new cell with a new program fails here until the phase checks
    it first.  (``inside=`` runs in the service's container: docker / kubectl, checked per mode.)"""
    import yaml

    phases = yaml.safe_load((REPO / "notebooks" / "phases.yaml").read_text())
    calls = _sh_calls(phases[phase] + (phases["rollback"] if phase == "cutover" else []))

    def where(kw: dict[str, str]) -> tuple[str | None, bool]:  # (deploy mode, only when backup.mode is tools)
        return kw.get("mode") or ("'compose'" if kw.get("on") else None), "'backup.mode': 'tools'" in kw.get("when", "")

    first_change = next(i for i, (_, _, kw) in enumerate(calls) if kw.get("mutating") == "True")
    checked = {(program, *where(kw)) for sid, program, kw in calls[:first_change] if ".tool-" in sid}
    assert checked, f"no tool check before {calls[first_change][0]}"
    needed = set()
    for sid, program, kw in calls:
        if ".tool-" in sid or program in _NOT_CHECKED:
            continue
        if "inside" in kw:  # docker exec / kubectl exec in those modes
            needed |= {("docker", "'compose'", False), ("kubectl", "'helm'", False)}
        else:
            needed.add((program, *where(kw)))
    missing = {(p, m, tools) for p, m, tools in needed if (p, m, tools) not in checked and (p, m, False) not in checked}
    assert not missing, f"programs {phase} does not check first (program, mode, backup tools): " \
                        f"{sorted(map(str, missing))}"
