"""rb.sh / rb.http: a runbook line in a cell becomes a step -- templates from params, the tool's
environment, expected results, then-checks, dry run, resume hand-over, and no secret in argv."""

from __future__ import annotations

import json
import http.server
import os
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover_lib import ANY, same_payload_as, signed_dsse
from cutover_lib.errors import CheckFailed, ParamsError, StepFailed
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.engine.expect import describe, mismatches
from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.config.schema import replace
from nb_helpers import variant
from cutover_lib.config.secrets import mask
from cutover_lib.engine.steps import Runbook
from cutover_lib.config.template import Missing, render_args, render_text

REPO = Path(__file__).resolve().parents[2]
CANARY = "canary-actions-5d1f0b"


def env_with(**overrides: str):
    return load_environment("local", REPO / "params", parse_overrides([f"{k}={v}" for k, v in overrides.items()]))


@pytest.fixture
def make_rb(tmp_path: Path):
    def make(run: RunFolder | None = None, **kw):
        env = kw.pop("env", None) or load_environment("local", REPO / "params")
        run = run or RunFolder.create(tmp_path / "executed", "local", "t")
        return Runbook(env, run, root=kw.pop("root", REPO), notebook="nb.ipynb", **kw)
    return make


@pytest.fixture
def tool(tmp_path: Path) -> Path:
    """A recording fake program: writes its argv and selected environment to a file, then prints
    what $FAKE_OUT says and exits with $FAKE_RC."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    prog = bin_dir / "fake-cli"
    prog.write_text(f"""#!{sys.executable}
import json, os, sys, time
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in
             ("STELLAOPS_BACKEND_URL", "STELLAOPS_CLIENT_SECRET", "EXTRA")}}}}) + "\\n")
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
print(os.environ.get("FAKE_OUT", ""))
print("a line on stderr", file=sys.stderr)
sys.exit(int(os.environ.get("FAKE_RC", "0")))
""")
    prog.chmod(prog.stat().st_mode | stat.S_IEXEC)
    return prog


def calls(tmp_path: Path) -> list[dict]:
    log = tmp_path / "fake.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def fake_env(tmp_path: Path, tool: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "fake.log"))
    secret = tmp_path / "client-secret"
    secret.write_text(CANARY)
    return env_with(**{"tools.stellaops_cli": str(tool), "credentials.authority_client_secret": f"file:{secret}"})


# ----------------------------------------------------------------------------- templates

def test_template_fills_params_aliases_lists_and_quotes_each_value():
    env = env_with(**{"deploy.mode": "compose", "deploy.compose": json.dumps({
        "file": "deploy/compose/my file.yaml", "env_file": "prod.env", "nodes": [{"name": "a", "docker_host": "unix:///x"}],
        "services": ["authority", "scanner-web"], "previous": {"file": "p.yaml", "env_file": "s.env"}})})
    argv = render_args("docker compose --env-file {compose.env_file} -f {compose.file} pull {compose.services}", env)
    assert argv == ["docker", "compose", "--env-file", "prod.env", "-f", "deploy/compose/my file.yaml", "pull",
                    "authority", "scanner-web"]
    assert render_text("GET {services.scanner}/healthz", env) == "GET http://127.0.0.1:18081/healthz"
    assert render_args("x --timeout {slo.scan} --verify {tls_verify}", env) == ["x", "--timeout", "5m", "--verify", "false"]


@pytest.mark.parametrize("value", ["a; rm -rf /", "$(id)", "a b", "`id`", "x' 'y", "--flag"])
def test_a_params_value_can_never_add_words_or_operators(value):
    env = env_with(**{"samples.sbom": json.dumps(value)})
    assert render_args("tool --sbom {samples.sbom} --output json", env) == ["tool", "--sbom", value, "--output", "json"]


@pytest.mark.parametrize("template, words", [
    ("tool {services.nope}", "{services.nope} in `tool {services.nope}` is not set in params"),
    ("tool {nope}", "{nope} in `tool {nope}` is not set"),
    ("tool {services}", "is a mapping, not a value"),
    ("mongodump --uri {backup.mongo.uri}", "is a secret reference; a secret never goes into a command line"),
    ("tool {credentials.authority_client_secret}", "secret reference"),
])
def test_template_errors_name_the_key(template, words):
    with pytest.raises(ParamsError) as err:
        render_args(template, env_with())
    assert words in err.value.one_line()


def test_a_value_from_a_failed_step_fails_the_step_that_needs_it():
    with pytest.raises(CheckFailed, match="no value: step 5.scan-submit gave no attestation.uuid"):
        render_args("cli attestor verify --uuid {uuid}", env_with(),
                    {"uuid": Missing("step 5.scan-submit gave no attestation.uuid: it failed")})


# ----------------------------------------------------------------------------- expect

def test_subset_match_and_words():
    doc = {"status": "completed", "report": {"url": "u", "dsse": {}}, "n": [1, 2]}
    assert mismatches({"status": "completed", "report": {"url": ANY}}, doc) == []
    assert mismatches({"status": "failed"}, doc) == ['status is "completed", expected "failed"']
    assert mismatches({"report": {"uuid": ANY}}, doc) == ["report.uuid is missing"]
    assert mismatches({"n": [1]}, doc) == ["n is [1, 2], expected [1]"]
    assert mismatches({"a": 1}, [1]) == ["the document is [1], not an object"]
    assert describe({"status": 200, "json": {"status": "Healthy"}, "within": "2s"}) == \
        'HTTP 200; json status = "Healthy"; within 2s'
    assert describe({"exit": 0, "json": {"report": {"url": ANY}}}) == "exit 0; json report.url present"


# ----------------------------------------------------------------------------- rb.sh

def test_sh_runs_the_rendered_command_with_tool_env_and_parses_json(make_rb, fake_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", json.dumps({"status": "completed", "attestation": {"uuid": "u-1"}}))
    rb = make_rb(env=fake_env)
    res = rb.sh("5.scan-submit",
                "{tools.stellaops_cli} scan submit --profile {tools.profile} --sbom {samples.sbom} --output json",
                expect={"exit": 0, "json": {"status": "completed"}}, env={"EXTRA": "{services.signer}"})
    assert res.outcome == "passed" and res.exit == 0
    assert res["attestation.uuid"] == "u-1"
    (call,) = calls(tmp_path)
    assert call["argv"] == ["scan", "submit", "--profile", "local", "--sbom", "samples/sbom/demo.json",
                            "--output", "json"]
    assert call["env"]["STELLAOPS_BACKEND_URL"] == "http://127.0.0.1:18081"
    assert call["env"]["STELLAOPS_CLIENT_SECRET"] == CANARY  # the secret reaches the tool through its environment
    assert call["env"]["EXTRA"] == "http://127.0.0.1:18082"
    rec = res.record
    assert rec["command"].endswith("scan submit --profile local --sbom samples/sbom/demo.json --output json")
    assert rec["expect"] == 'exit 0; json status = "completed"'
    assert rec["data"]["output"]["attestation"]["uuid"] == "u-1"
    text = (rb.run.path / "ledger.jsonl").read_text()
    assert CANARY not in text


def test_sh_failure_names_expected_and_observed(make_rb, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", json.dumps({"status": "failed"}))
    monkeypatch.setenv("FAKE_RC", "1")
    rb = make_rb(env=fake_env)
    res = rb.sh("5.scan-submit", "{tools.stellaops_cli} scan submit --output json", required=False,
                expect={"exit": 0, "json": {"status": "completed"}})
    assert res.outcome == "failed" and not res.ok
    msg = res.record["message"]
    assert msg.startswith('expected exit 0; json status = "completed"; observed exit 1; status is "failed"')
    assert isinstance(res["attestation.uuid"], Missing)
    with pytest.raises(StepFailed):
        rb.sh("5.signing", "{tools.stellaops_cli} signer sign", expect={"exit": 0})


def test_sh_within_stops_a_slow_command(make_rb, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "5")
    rb = make_rb(env=fake_env)
    res = rb.sh("5.scan-submit", "{tools.stellaops_cli} scan submit", required=False,
                expect={"exit": 0, "within": "500ms"})
    assert res.outcome == "failed"
    assert "no result within 500ms: stopped after" in res.record["message"]
    assert res.record["duration_s"] < 4


def test_sh_not_json_is_one_clear_failure(make_rb, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", "Scan 42 completed")
    res = make_rb(env=fake_env).sh("5.scan-submit", "{tools.stellaops_cli} scan", required=False,
                                   expect={"exit": 0, "json": {"status": "completed"}})
    assert "printed no JSON on standard output (got 'Scan 42 completed')" in res.record["message"]


def test_sh_values_from_an_earlier_step(make_rb, fake_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", json.dumps({"ok": True}))
    rb = make_rb(env=fake_env)
    rb.sh("5.attestor-verify", "{tools.stellaops_cli} attestor verify --uuid {uuid} --output json",
          vars={"uuid": "9f0c"}, expect={"exit": 0, "json": {"ok": True}})
    assert calls(tmp_path)[-1]["argv"] == ["attestor", "verify", "--uuid", "9f0c", "--output", "json"]
    res = rb.sh("5.attestor-verify", "{tools.stellaops_cli} attestor verify --uuid {uuid}", required=False,
                vars={"uuid": Missing("step 5.scan-submit gave no attestation.uuid: it failed")})
    assert res.outcome == "failed" and "5.scan-submit" in res.record["message"]
    assert len(calls(tmp_path)) == 1  # not run


def test_a_params_error_in_a_template_is_recorded_and_exits_2(make_rb):
    rb = make_rb()
    with pytest.raises(ParamsError):
        rb.sh("4.4.x", "tool {services.nope}")
    rec = rb.run.read_ledger()[-1]
    assert rec["step_id"] == "4.4.x" and rec["outcome"] == "failed" and "services.nope" in rec["message"]


def test_dry_run_plans_a_mutating_command_without_running_it(make_rb, fake_env, tmp_path):
    rb = make_rb(env=fake_env, dry_run=True)
    res = rb.sh("4.2.pull", "{tools.stellaops_cli} pull --env-file {samples.sbom}", mutating=True)
    assert res.outcome == "planned" and calls(tmp_path) == []
    assert res.record["command"].endswith("pull --env-file samples/sbom/demo.json")
    assert isinstance(res["anything"], Missing) and "planned, not run" in res["anything"].what


def test_resume_hands_on_the_output_of_a_step_that_passed(make_rb, fake_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", json.dumps({"attestation": {"uuid": "u-7"}}))
    first = make_rb(env=fake_env)
    first.sh("5.scan-submit", "{tools.stellaops_cli} scan --output json", expect={"exit": 0, "json": {}})
    again = make_rb(env=fake_env, run=first.run, resume=True)
    res = again.sh("5.scan-submit", "{tools.stellaops_cli} scan --output json", expect={"exit": 0, "json": {}})
    assert res.outcome == "skipped" and res["attestation.uuid"] == "u-7"
    assert len(calls(tmp_path)) == 1


def test_path_from_params_is_appended(make_rb, tool, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "fake.log"))
    env = env_with(**{"tools.path": json.dumps([str(tool.parent)])})
    rb = make_rb(env=env)
    res = rb.sh("4.4.scanner-queue", "fake-cli health queue")
    assert res.outcome == "passed" and calls(tmp_path)[0]["argv"] == ["health", "queue"]


@pytest.mark.parametrize("mode, prefix", [
    ("compose", "DOCKER_HOST=unix:///n1.sock docker exec stellaops-scanner-web dotnet"),
    ("helm", "kubectl --context stellaops-prod exec -n stellaops deployment/stellaops-scanner-web -- dotnet"),
])
def test_inside_runs_the_command_in_the_service_container(make_rb, mode, prefix):
    env = variant("prod", f"deploy.mode={mode}", 'deploy.compose.nodes=[{"name": "n1", "docker_host": "unix:///n1.sock"}]')
    rb = make_rb(env=env, dry_run=True, with_reads=False)
    res = rb.sh("4.4.scanner-queue", "dotnet StellaOps.Scanner.WebService.dll health queue",
                inside="stellaops-scanner-web")
    assert res.record["command"] == prefix + " StellaOps.Scanner.WebService.dll health queue"


# ----------------------------------------------------------------------------- rb.http

class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[tuple[str, str], tuple[int, str]] = {}
    seen: list[tuple[str, str, bytes]] = []

    def _answer(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((method, self.path, body))
        status, text = self.routes.get((method, self.path), (404, "{}"))
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._answer("POST")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.routes, _Handler.seen = {}, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_http_checks_status_and_json(make_rb, server):
    _Handler.routes[("GET", "/healthz")] = (200, json.dumps({"status": "Healthy", "version": "2025.09.2"}))
    rb = make_rb(env=env_with(**{"services.scanner": server}))
    res = rb.http("5.api-health", "GET {services.scanner}/healthz", expect={"status": 200, "json": {"status": "Healthy"}})
    assert res.outcome == "passed" and res.status == 200 and res["version"] == "2025.09.2"
    assert res.record["command"] == f"GET {server}/healthz"
    assert res.record["expect"] == 'HTTP 200; json status = "Healthy"'
    _Handler.routes[("GET", "/healthz")] = (503, json.dumps({"status": "Unhealthy"}))
    bad = rb.http("5.api-health", "GET {services.scanner}/healthz", required=False,
                  expect={"status": 200, "json": {"status": "Healthy"}})
    assert bad.record["message"].startswith(
        'expected HTTP 200; json status = "Healthy"; observed HTTP 503; status is "Unhealthy", expected "Healthy"')


def test_http_posts_json_and_expects_params_values(make_rb, server):
    _Handler.routes[("POST", "/runtime/events")] = (202, "{}")
    _Handler.routes[("GET", "/.well-known/openid-configuration")] = (200, json.dumps({"issuer": server}))
    rb = make_rb(env=env_with(**{"services.runtime": server, "services.authority": server}))
    rb.http("5.runtime-event", "POST {services.runtime}/runtime/events", json={"eventId": "e1"}, expect={"status": 202})
    assert _Handler.seen[-1][:2] == ("POST", "/runtime/events") and json.loads(_Handler.seen[-1][2]) == {"eventId": "e1"}
    res = rb.http("4.4.oidc-metadata", "GET {services.authority}/.well-known/openid-configuration",
                  expect={"status": 200, "json": {"issuer": "{services.authority}"}})
    assert res.outcome == "passed" and server in res.record["expect"]


def test_http_refuses_credentials_in_a_url(make_rb):
    with pytest.raises(ParamsError) as err:  # in params: refused when they load (never echoed)
        env_with(**{"services.scanner": "http://admin:hunter2-pw@127.0.0.1:1"})
    assert "must not hold credentials" in err.value.one_line() and "hunter2-pw" not in err.value.one_line()
    rb = make_rb()
    with pytest.raises(ParamsError, match="puts credentials in the URL"):  # from a cell's own values
        rb.http("5.api-health", "GET {base}/healthz", vars={"base": "http://admin:hunter2-pw@127.0.0.1:1"})
    assert "hunter2-pw" not in (rb.run.path / "ledger.jsonl").read_text()


def test_then_checks_run_after_the_expected_result(make_rb, fake_env, tmp_path, monkeypatch):
    """signed_dsse and same_payload_as on a real DSSE envelope and the lab's demo bundle."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from cutover_lib.evidence.dsse import Envelope, sign_envelope
    from stellaops_lab._keys import public_pem

    key = ec.generate_private_key(ec.SECP256R1())
    bundle = json.loads((REPO / "samples" / "dsse" / "demo.json").read_text())
    payload = Envelope.from_dict(bundle).payload
    envelope = sign_envelope("application/vnd.in-toto+json", payload, key).to_dict()
    pem = tmp_path / "signer.pem"
    pem.write_text(public_pem(key))
    monkeypatch.setenv("FAKE_OUT", json.dumps({"envelope": envelope, "signer": {"keyid": "k"}}))
    env = replace(fake_env, trust=replace(fake_env.trust, signer_keys=[str(pem)]))
    rb = make_rb(env=env)
    res = rb.sh("5.signing", "{tools.stellaops_cli} signer sign --bundle {samples.dsse} --output json",
                expect={"exit": 0, "json": {"envelope": ANY, "signer": {"keyid": ANY}}},
                then=[same_payload_as("{samples.dsse}", at="envelope"), signed_dsse(at="envelope")])
    assert res.outcome == "passed", res.record["message"]
    assert "payload SHA256" in res.record["observed"] and "signed by trusted key" in res.record["observed"]
    assert "envelope is a DSSE signed by a trusted signer key" in res.record["expect"]
    other = tmp_path / "other.pem"
    other.write_text(public_pem(ec.generate_private_key(ec.SECP256R1())))
    env2 = replace(env, trust=replace(env.trust, signer_keys=[str(other)]))
    bad = make_rb(env=env2).sh("5.signing", "{tools.stellaops_cli} signer sign --output json", required=False,
                               expect={"exit": 0, "json": {}}, then=[signed_dsse(at="envelope")])
    assert bad.outcome == "failed" and "no trusted key verifies the signature" in bad.record["message"]


def test_mask_still_applies_to_tool_output(make_rb, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", f"token {CANARY}")
    rb = make_rb(env=fake_env)
    rb.sh("5.x", "{tools.stellaops_cli} print")  # resolving the client secret registers it with the masker
    assert mask(CANARY) == "***"
    for f in rb.run.path.rglob("*"):
        if f.is_file():
            assert CANARY not in f.read_text(errors="replace"), f
    assert os.environ.get("STELLAOPS_CLIENT_SECRET") != CANARY


def test_watch_stops_a_command_that_runs_until_stopped_and_passes(make_rb, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "30")
    rb = make_rb(env=fake_env)
    res = rb.sh("4.3.pods", "{tools.stellaops_cli} get pods --watch", watch="1s")
    assert res.outcome == "passed" and res.record["observed"].startswith("watched for 1s")
    assert res.record["duration_s"] < 10 and "watched for 1s, then stopped" in res.record["expect"]
    monkeypatch.setenv("FAKE_SLEEP", "0")
    monkeypatch.setenv("FAKE_RC", "1")
    bad = rb.sh("4.3.pods", "{tools.stellaops_cli} get pods --watch", watch="5s", required=False)
    assert bad.outcome == "failed" and "observed exit 1" in bad.record["message"]


def test_on_failure_rollback_records_the_decision(make_rb, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_RC", "3")
    rb = make_rb(env=fake_env)
    with pytest.raises(StepFailed):
        rb.sh("4.3.helm-upgrade", "{tools.stellaops_cli} upgrade", mutating=True, on_failure="rollback")
    decision = [r for r in rb.run.read_ledger() if r.get("kind") == "decision"][-1]
    assert decision["decision"] == "rollback" and decision["failed"] == ["4.3.helm-upgrade"]
    assert "exit 3" in decision["reason"]


def test_mode_marks_the_other_paths_cells_not_applicable(make_rb, fake_env, tmp_path):
    rb = make_rb(env=fake_env)  # local: deploy mode lab
    res = rb.sh("4.3.helm-upgrade", "helm upgrade {helm.release} {helm.chart}", mode="helm", mutating=True)
    assert res.outcome == "skipped" and res.record["observed"] == "not applicable: deploy mode is lab, this is the helm path"
    assert res.record["command"] == "helm upgrade {helm.release} {helm.chart}"  # (lab params have no helm section)
    assert calls(tmp_path) == []


def test_each_runs_once_per_value_with_its_own_log(make_rb, fake_env, tmp_path):
    env = replace(fake_env, smoke=replace(fake_env.smoke, web_pages={"/a": "x", "/b": "y"}))
    rb = make_rb(env=env)
    res = rb.sh("7.pages", "{tools.stellaops_cli} page {page}", each={"page": ["/a", "/b"]})
    assert res.outcome == "passed"
    assert [c["argv"] for c in calls(tmp_path)] == [["page", "/a"], ["page", "/b"]]
    assert {"artifacts/7.pages._a.log", "artifacts/7.pages._b.log"} <= set(res.record["artifacts"])


def test_secret_files_reach_the_tool_never_argv(make_rb, fake_env, tmp_path, monkeypatch):
    """mongodump --config FILE: the secret is in a 0600 file for the tool, masked everywhere, gone after."""
    monkeypatch.setenv("MONGO_URI_TEST", f"mongodb://backup:{CANARY}@db:27017/x")
    from cutover_lib.config.secrets import SecretRef

    env = replace(fake_env, backup=replace(fake_env.backup, mongo=replace(fake_env.backup.mongo,
                                                                          uri=SecretRef("env:MONGO_URI_TEST"))))
    prog = tmp_path / "bin" / "fake-cli"
    prog.write_text(f"""#!{sys.executable}
import json, os, stat, sys
cfg = sys.argv[sys.argv.index("--config") + 1]
mode = stat.S_IMODE(os.stat(cfg).st_mode)
open(os.environ["FAKE_LOG"], "a").write(json.dumps({{"argv": sys.argv[1:], "config": open(cfg).read(),
                                                     "mode": mode, "path": cfg}}) + "\\n")
""")
    rb = make_rb(env=env)
    res = rb.sh("4.1.backup-mongo", "{tools.stellaops_cli} --config {mongo_config} --out {backup.mongo.out_dir}/launch-{now}",
                secret_files={"mongo_config": "uri: {backup.mongo.uri}"}, mutating=True)
    assert res.outcome == "passed", res.record["message"]
    (call,) = calls(tmp_path)
    assert call["config"] == f"uri: mongodb://backup:{CANARY}@db:27017/x\n" and call["mode"] == 0o600
    assert all(CANARY not in a for a in call["argv"])  # never in argv (ps)
    assert call["path"].startswith("/dev/fd/")  # an anonymous memory file: never on a disk
    assert "--config secret-file:mongo_config --out .lab/backups/launch-" in res.record["command"]
    for f in rb.run.path.rglob("*"):
        if f.is_file():
            assert CANARY not in f.read_text(errors="replace")


def test_when_runs_a_cell_only_for_those_params(make_rb, fake_env, tmp_path):
    rb = make_rb(env=fake_env)  # local: backup.mode lab
    res = rb.sh("4.1.backup-mongo", "{tools.stellaops_cli} dump", when={"backup.mode": "tools"}, mutating=True)
    assert res.outcome == "skipped"
    assert res.record["observed"] == "not applicable: backup.mode is lab here; this cell is for backup.mode = tools"
    assert calls(tmp_path) == []


def test_secret_files_without_memfd_are_0600_files_removed_afterwards(make_rb, fake_env, tmp_path, monkeypatch):
    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setenv("MONGO_URI_TEST", f"mongodb://backup:{CANARY}@db:27017/x")
    from cutover_lib.config.secrets import SecretRef

    env = replace(fake_env, backup=replace(fake_env.backup, mongo=replace(fake_env.backup.mongo,
                                                                          uri=SecretRef("env:MONGO_URI_TEST"))))
    prog = tmp_path / "bin" / "fake-cli"
    prog.write_text(f"""#!{sys.executable}
import json, os, stat, sys
cfg = sys.argv[sys.argv.index("--config") + 1]
open(os.environ["FAKE_LOG"], "a").write(json.dumps({{"config": open(cfg).read(), "path": cfg,
    "mode": stat.S_IMODE(os.stat(cfg).st_mode), "dir": stat.S_IMODE(os.stat(os.path.dirname(cfg)).st_mode)}}) + "\\n")
""")
    res = make_rb(env=env).sh("4.1.backup-mongo", "{tools.stellaops_cli} --config {mongo_config}",
                              secret_files={"mongo_config": "uri: {backup.mongo.uri}"})
    assert res.outcome == "passed", res.record["message"]
    (call,) = calls(tmp_path)
    assert (call["mode"], call["dir"]) == (0o600, 0o700) and CANARY in call["config"]
    assert not Path(call["path"]).exists() and not Path(call["path"]).parent.exists()
