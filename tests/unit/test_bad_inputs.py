"""The bad-input table (README "Troubleshooting"): each bad input gives one clear line saying what
is wrong and how to fix it, the documented exit code, no traceback, and no evidence lost."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cutover_lib.errors import CutoverError, EvidenceError, SecretError, StepFailed, ToolMissing
from cutover_lib.evidence.evidence import RunFolder, atomic_write
from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.engine.steps import Runbook
from cutover_lib.cli.app import app

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output
    return res


def edit(project: Path, name: str, old: str, new: str) -> None:
    f = project / "params" / name
    text = f.read_text()
    assert old in text
    f.write_text(text.replace(old, new))


# --------------------------------------------------------------------------- CLI-level inputs
CLI_CASES = [
    # id, file edit (file, old, new) or None, argv (ROOT substituted), exit code, the one line's text
    ("malformed-yaml", ("prod.yaml", "tier: prod", "tier: [prod"), ["params", "check", "--env", "prod"], 2,
     "params/prod.yaml: line 4, column 3: malformed YAML: expected ',' or ']'"),
    ("unknown-environment", None, ["params", "check", "--env", "prood"], 2,
     "unknown environment 'prood': params/prood.yaml does not exist (known environments:"),
    ("unknown-key", ("prod.yaml", "kube_context: stellaops-prod", "kube_context: stellaops-prod\n    atomik: true"),
     ["params", "check", "--env", "prod"], 2,
     "params/prod.yaml: deploy.helm.atomik: unknown key (remove it or check its spelling)"),
    ("wrong-type", ("dev.yaml", "tier: dev", "tier: dev\nslo: {scan: [1, 2]}"), ["params", "check", "--env", "dev"], 2,
     'params/dev.yaml: slo.scan: expected a duration like 15m, got "[1, 2]"'),
    ("bad-duration", ("prod.yaml", "timeout: 15m", "timeout: fifteen"), ["params", "check", "--env", "prod"], 2,
     'params/prod.yaml: deploy.helm.timeout: expected a duration like 15m, got "fifteen"'),
    ("bad-secret-reference", ("_base.yaml", "uri: env:MONGO_BACKUP_URI", "uri: mongodb://u:p@db/"),
     ["params", "check", "--env", "prod"], 2, "backup.mongo.uri: expected a secret reference like env:NAME"),
    ("bad-url", ("prod.yaml", "https://scanner.prod.stella-ops.internal", "scanner.prod"),
     ["params", "check", "--env", "prod"], 2, 'services.scanner: expected a base URL like https://scanner.example'),
    # a plug-in deploy mode's settings are checked with the params, before the run (not in its deploy step)
    ("bad-plug-in-setting", ("local.yaml", "port_base: 18080", "port_base: 80"),
     ["run", "--env", "local", "--phase", "cutover"], 2,
     "params/local.yaml: deploy.lab.port_base: expected an integer >= 1024"),
    ("bad-override", None, ["params", "check", "--env", "prod", "-p", "slo.scan"], 2,
     "-p slo.scan: expected KEY=VALUE with a dotted key"),
    ("unknown-phase", None, ["run", "--env", "local", "--phase", "launch"], 2,
     "unknown phase 'launch' (choose one of: readiness, t-24h, t-12h, t-6h, rehearsal, t-30m, cutover, smoke-decision, "
     "rollback, post, or a slot: T-24h, T-12h, T-6h, T-2h, T-30m, T0, T+45m, T+4h (notebooks/phases.yaml))"),
    ("unknown-gate", None, ["approve", "--env", "prod", "--gate", "go", "--role", "cto", "--name", "A", "--record",
                            "CHG-1"], 2, "unknown gate 'go' for prod (gates: plan, t0, post-smoke, rollback, go-no-go)"),
    ("approver-name-too-long", None, ["approve", "--env", "prod", "--gate", "plan", "--role", "cto", "--name", "x" * 121,
                                      "--record", "CHG-1"], 2, "an approver's name is at most 120 characters (this one "
     "has 121)"),
    ("wrong-role", None, ["approve", "--env", "prod", "--gate", "plan", "--role", "intern", "--name", "A", "--record",
                          "CHG-1"], 2, "role 'intern' does not approve gate plan"),
    ("prod-override-of-a-service", None, ["run", "--env", "prod", "--phase", "cutover", "-p",
                                          "services.scanner=https://scanner.elsewhere.example"], 2,
     "-p services.scanner: refused: prod's approvals are not waivable, so -p may change only run-time settings"),
    ("prod-override-of-approvals", None, ["plan", "--env", "prod", "--phase", "cutover", "-p",
                                          "approvals.waivable=true"], 2, "-p approvals.waivable: refused"),
    ("prod-override-of-the-name", None, ["params", "check", "--env", "prod", "-p", "name=stage"], 2,
     "-p name: refused"),
    ("accept-param-changes-without-resume", None, ["run", "--env", "local", "--phase", "cutover",
                                                   "--accept-param-changes"], 2,
     "--accept-param-changes goes with --resume RUN_ID"),
    ("resume-unknown-run", None, ["run", "--env", "local", "--phase", "cutover", "--resume", "20200101T000000Z-x"], 2,
     "cannot resume 20200101T000000Z-x: no such run under executed/local/"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(project, case):
    _, change, argv, code, text = case
    if change:
        edit(project, *change)
    res = cli(*argv, "--root", str(project))
    assert res.exit_code == code, res.output
    first = res.output.strip().splitlines()[0]
    assert first.startswith("error: ") and text in first, first
    assert not (project / "executed").exists() or not any((project / "executed").glob("*/2*"))


def test_missing_notebook(project):
    (project / "notebooks" / "07_smoke.ipynb").unlink()
    res = cli("run", "--env", "local", "--phase", "cutover", "--root", str(project))
    assert res.exit_code == 2 and "notebooks/07_smoke.ipynb of phase cutover is missing (restore it from git" in res.output


def test_extends_cycle(project):
    (project / "params" / "_base.yaml").write_text("extends: dev.yaml\n")
    res = cli("params", "check", "--env", "dev", "--root", str(project))
    assert res.exit_code == 2 and "extends: cycle through" in res.output


def test_one_person_two_roles(project):
    assert cli("approve", "--env", "stage", "--gate", "plan", "--role", "cto", "--name", "Ada", "--record", "CHG-1",
               "--root", str(project)).exit_code == 0
    res = cli("approve", "--env", "stage", "--gate", "plan", "--role", "devops-lead", "--name", "Ada", "--record",
              "CHG-1", "--root", str(project))
    assert res.exit_code == 2 and "one person cannot fill two roles of the same gate" in res.output


def test_lock_held(project):
    lock = project / "executed" / "local" / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "user": "ops", "run_id": "R1"}))
    res = cli("run", "--env", "local", "--phase", "readiness", "--root", str(project))
    assert res.exit_code == 4 and "environment local is locked by run R1" in res.output


def test_tampered_evidence_is_named_and_left_as_is(tmp_path):
    run = RunFolder.create(tmp_path, "prod", "cutover", run_id="20260101T000000Z-prod-cutover")
    run.write_manifest({"env": "prod"})
    run.append({"kind": "step", "step_id": "5.x", "outcome": "passed"})
    atomic_write(run.path / "artifacts" / "a.log", "x")
    run.seal({"outcome": "passed"})
    (run.path / "artifacts" / "a.log").write_text("y")
    before = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    res = cli("verify", str(run.path))
    assert res.exit_code == 1 and "TAMPERED" in res.output and "changed: artifacts/a.log" in res.output
    assert {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()} == before


def test_verify_not_a_run(tmp_path):
    """A folder without its ledger and manifest may be a run whose evidence was removed: exit 1.
    A path that is no folder at all is a typo: a usage error, exit 2."""
    res = cli("verify", str(tmp_path))
    assert res.exit_code == 1 and "is not a run folder" in res.output
    res = cli("verify", str(tmp_path / "20261130T101127Z-local-readnis"))
    assert res.exit_code == 2 and res.output.splitlines() == [
        f"error: {tmp_path / '20261130T101127Z-local-readnis'}: no such folder (pass the run folder that "
        f"`cutover run` printed, e.g. executed/local/<run-id>)"]
    (tmp_path / "manifest.json").write_text("{}")
    res = cli("verify", str(tmp_path / "manifest.json"))
    assert res.exit_code == 2 and f"{tmp_path / 'manifest.json'}: not a folder" in res.output


def test_disk_full_while_writing_evidence(tmp_path, monkeypatch):
    run = RunFolder.create(tmp_path, "local", "x")
    run.append({"kind": "step", "step_id": "1.a", "outcome": "passed"})
    before = run.ledger_path.read_bytes()

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(EvidenceError) as ei:
        run.append({"kind": "step", "step_id": "1.b", "outcome": "passed"})
    monkeypatch.undo()
    assert "disk full while writing evidence" in ei.value.message and ei.value.exit_code == 1
    assert run.ledger_path.read_bytes() == before  # nothing already written is lost


# --------------------------------------------------------------------------- run-time inputs
class _Stand(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in that answers like a broken or misconfigured Stella Ops service."""

    def log_message(self, *a):
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/.well-known/openid-configuration":
            doc = {"issuer": "https://evil.example", "jwks_uri": host + "/jwks", "token_endpoint": host + "/token",
                   "authorization_endpoint": host + "/a", "response_types_supported": ["code"],
                   "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["ES256"]}
            self._send(200, json.dumps(doc).encode())
        elif self.path == "/healthz" and self.server.mode == "html":  # type: ignore[attr-defined]
            self._send(200, b"<html>login</html>", "text/html")
        else:
            self._send(500, b'{"error":"boom"}')

    def do_POST(self):
        self._send(200, json.dumps({"ok": False, "reason": "signature does not verify"}).encode())


@pytest.fixture
def stand() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stand)
    srv.mode = "500"  # type: ignore[attr-defined]
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def rb_for(tmp_path: Path, *extra: str, **services: str) -> Runbook:
    """A run view on the local params with ``services`` moved, the lab's stand-in CLIs on the path."""
    from stellaops_lab._standins import install_standins

    install_standins(tmp_path / "bin")
    secret = tmp_path / "client-secret"  # (the lab's own secret stores exist only once a lab ran)
    secret.write_text("client-secret-for-tests")
    ov = [f"services.{k}={v}" for k, v in services.items()] + [
        "timeouts.http=1s", "timeouts.health=1s", f"tools.path=[{tmp_path / 'bin'}]",
        f"credentials.authority_client_secret=file:{secret}", *extra]
    env = load_environment("local", REPO / "params", parse_overrides(ov))
    return Runbook(env, RunFolder.create(tmp_path / "executed", "local", "t"), root=REPO, notebook="t")


def failed_message(rb: Runbook, notebook: str, step_id: str) -> str:
    """Run the committed notebook cell of ``step_id`` and return its failure message."""
    from nb_helpers import run_cells

    try:
        run_cells(rb, notebook, step_id)
    except StepFailed:
        pass
    rec = [r for r in rb.run.read_ledger() if r.get("step_id") == step_id][-1]
    assert rec["outcome"] == "failed"
    return rec["message"]


SMOKE, VALIDATION = "07_smoke.ipynb", "06_validation.ipynb"


def test_unreachable_host(tmp_path, closed_port):
    msg = failed_message(rb_for(tmp_path, scanner=f"http://127.0.0.1:{closed_port}"), SMOKE, "5.api-health")
    assert msg.startswith('expected HTTP 200; json status = "Healthy"; observed GET http://127.0.0.1:')
    assert "connection refused (the service is down or the port is wrong)" in msg


def test_dns_failure(tmp_path):
    msg = failed_message(rb_for(tmp_path, scanner="http://scanner.nowhere.invalid"), SMOKE, "5.api-health")
    assert "DNS lookup failed for scanner.nowhere.invalid (check the host name in services.*" in msg


def test_tls_failure(tmp_path, stand):
    msg = failed_message(rb_for(tmp_path, scanner=f"https://127.0.0.1:{stand.server_address[1]}"), SMOKE,
                         "5.api-health")
    assert "TLS handshake failed" in msg


def test_timeout(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)  # accepts, never answers
    try:
        msg = failed_message(rb_for(tmp_path, notify=f"http://127.0.0.1:{s.getsockname()[1]}"), VALIDATION,
                             "4.4.notify-legacy")
    finally:
        s.close()
    assert "no answer within 1s" in msg


def test_non_json_health_body(tmp_path, stand):
    stand.mode = "html"
    msg = failed_message(rb_for(tmp_path, scanner=f"http://127.0.0.1:{stand.server_address[1]}"), SMOKE,
                         "5.api-health")
    assert "observed no JSON in the answer (got '<html>login</html>')" in msg


def test_http_500(tmp_path, stand):
    msg = failed_message(rb_for(tmp_path, scanner=f"http://127.0.0.1:{stand.server_address[1]}"), VALIDATION,
                         "4.4.scanner-queue")
    assert msg.startswith("expected exit 0; observed exit 1 (last output: ")
    assert "HTTP 500" in msg


def test_wrong_issuer(tmp_path, stand):
    base = f"http://127.0.0.1:{stand.server_address[1]}"
    msg = failed_message(rb_for(tmp_path, authority=base), VALIDATION, "4.4.oidc-metadata")
    assert f'observed issuer is "https://evil.example", expected "{base}"' in msg


def test_bad_signature(tmp_path, stand):
    msg = failed_message(rb_for(tmp_path, signer=f"http://127.0.0.1:{stand.server_address[1]}"), VALIDATION,
                         "4.4.signer-verify")
    assert "expected exit 0; json ok = true; observed exit 1; ok is false, expected true" in msg


def test_missing_sample_file(tmp_path, closed_port):
    rb = rb_for(tmp_path, "samples.sbom=samples/sbom/nope.json", scanner=f"http://127.0.0.1:{closed_port}")
    msg = failed_message(rb, SMOKE, "5.scan-submit")
    assert msg.startswith("expected exit 0; json status = \"completed\", report.url present; within 5m; "
                          "report.dsse is a DSSE signed by a trusted signer key; observed exit ")
    assert "samples/sbom/nope.json" in msg


@pytest.mark.parametrize("kind", ["env", "file"])
def test_missing_secret(tmp_path, kind, monkeypatch):
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    ref = "env:NO_SUCH_SECRET" if kind == "env" else f"file:{tmp_path}/nope"
    env = load_environment("local", REPO / "params", parse_overrides([f"credentials.authority_client_secret={ref}"]))
    rb = Runbook(env, RunFolder.create(tmp_path / "executed", "local", "t"), root=REPO, notebook="t")
    with pytest.raises(SecretError) as ei:
        rb.step("4.1.use-secret", "use", owner="o", expect="resolves",
                action=lambda ctx: env.credentials["authority_client_secret"].resolve())
    assert ei.value.exit_code == 2
    hint = "export NO_SUCH_SECRET=" if kind == "env" else "create it (mode 0600)"
    assert hint in ei.value.one_line()
    assert rb.run.read_ledger()[-1]["outcome"] == "failed"  # recorded before it propagated


def test_docker_not_running(tmp_path):
    from cutover_lib.adapters import compose as dc

    with pytest.raises(CutoverError) as ei:
        with dc.engine_client("node-1", f"unix://{tmp_path}/docker.sock", timeout=2):
            pass
    line = ei.value.one_line()
    assert "node-1" in line and f"unix://{tmp_path}/docker.sock" in line


def test_compose_file_missing(tmp_path):
    from nb_helpers import run_cells

    env = load_environment("dev", REPO / "params", parse_overrides(["deploy.compose.file=deploy/compose/nope.yaml"]))
    rb = Runbook(env, RunFolder.create(tmp_path / "executed", "dev", "t"), root=tmp_path, notebook="t")
    with pytest.raises(StepFailed):
        run_cells(rb, "05_apply.ipynb", "4.2.pull")
    rec = [r for r in rb.run.read_ledger() if r.get("step_id") == "4.2.pull"][-1]
    assert rec["outcome"] == "failed"
    assert "deploy/compose/nope.yaml (compose.file) not found" in rec["message"]


def test_helm_missing(tmp_path, monkeypatch):
    """helm not on PATH: the 4.3 cell says which program is missing and how to fix it (exit 2)."""
    from nb_helpers import run_cells

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    env = load_environment("prod", REPO / "params")
    rb = Runbook(env, RunFolder.create(tmp_path / "executed", "prod", "t"), root=REPO, notebook="t")
    with pytest.raises(ToolMissing) as ei:
        run_cells(rb, "05_apply.ipynb", "4.3.helm-upgrade")
    assert ei.value.exit_code == 2 and ei.value.one_line().startswith("helm is not installed")
    assert "install helm or put it on PATH" in ei.value.one_line()


@pytest.mark.parametrize("argv", [["approvals", "--env", "stage"],
                                  ["approve", "--env", "stage", "--gate", "plan", "--role", "cto", "--name", "Bo",
                                   "--record", "CHG-1"],
                                  ["run", "--env", "stage", "--phase", "cutover"]])
def test_a_hand_edited_approvals_file_is_one_line_exit_1_and_kept(project, argv):
    for role, name in (("devops-lead", "Ada"), ("cto", "Bob")):
        assert cli("approve", "--env", "stage", "--gate", "plan", "--role", role, "--name", name, "--record", "CHG-1",
                   "--root", str(project)).exit_code == 0
    store = next((project / "executed" / "_approvals" / "stage").glob("*.jsonl"))
    store.write_text(store.read_text().replace('"name":"Ada"', '"name":"Eve"'))  # the first of two lines
    before = store.read_bytes()
    assert b'"name":"Eve"' in before
    res = cli(*argv, "--root", str(project))
    assert res.exit_code == 1, res.output
    first = res.output.strip().splitlines()[0]
    assert first.startswith(f"error: executed/_approvals/stage/{store.name} line 2: broken chain link"), first
    assert "changed outside cutover" in first, first
    assert store.read_bytes() == before
