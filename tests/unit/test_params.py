from datetime import timedelta
from pathlib import Path

import pytest

from cutover_lib.errors import ParamsError
from cutover_lib.config.params import (available_environments, flatten, format_duration, load_environment,
                                 params_digest, parse_duration, parse_overrides)
from cutover_lib.config.secrets import SecretRef

REPO = Path(__file__).resolve().parents[2]
ENVS = ["local", "dev", "stage", "prod", "airgap", "mirror"]


@pytest.mark.parametrize("name", ENVS)
def test_every_environment_loads(name):
    env = load_environment(name, REPO / "params")
    assert env.release == "2025.09.2"
    assert env.slo.scan == timedelta(minutes=5)
    assert env.slo.ui == timedelta(seconds=2)
    assert env.slo.smoke_deadline == timedelta(minutes=45)
    assert set(env.approvals.gates) == {"plan", "go-no-go", "t0", "post-smoke", "rollback"}
    assert set(env.secret_stores) >= {"stellaops-prod-core"}


def test_available_environments_excludes_bases():
    assert set(ENVS) <= set(available_environments(REPO / "params"))
    assert "_base" not in available_environments(REPO / "params")


def test_prod_is_helm_as_the_runbook_says():
    env = load_environment("prod", REPO / "params")
    h = env.deploy.helm
    assert (env.deploy.mode, h.release, h.chart, h.namespace, h.kube_args) == (
        "helm", "stellaops", "deploy/helm/stellaops", "stellaops", ["--kube-context", "stellaops-prod"])
    assert h.values == "deploy/helm/stellaops/values-prod.yaml"
    assert format_duration(h.timeout) == "15m"
    assert set(env.secret_stores) == {"stellaops-prod-core", "stellaops-prod-mongo", "stellaops-prod-minio",
                                      "stellaops-prod-notify"}
    assert env.approvals.gates["plan"].roles == ["cto", "devops-lead"]
    assert env.approvals.waivable is False


def test_secrets_are_references_and_print_as_references(monkeypatch):
    env = load_environment("prod", REPO / "params")
    ref = env.backup.mongo.uri
    assert isinstance(ref, SecretRef) and str(ref) == "env:MONGO_BACKUP_URI"
    monkeypatch.setenv("MONGO_BACKUP_URI", "mongodb://backup:canary-pw-123@db/")
    rows = dict(flatten(env))
    assert rows["backup.mongo.uri"] == "env:MONGO_BACKUP_URI"
    assert "canary-pw-123" not in repr(env) + str(rows)


@pytest.mark.parametrize("text,seconds", [("15m", 900), ("2s", 2), ("500ms", 0.5), ("4h", 14400), (30, 30)])
def test_durations(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


def test_format_duration_round_trips():
    for s in ("15m", "2s", "4h", "45m", "500ms"):
        assert format_duration(parse_duration(s)) == s


def _write(tmp_path, name, text):
    d = tmp_path / "params"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return d


def _prod_with(tmp_path, old, new):
    d = tmp_path / "params"
    d.mkdir()
    for p in (REPO / "params").glob("*.yaml"):
        (d / p.name).write_text(p.read_text())
    text = (d / "prod.yaml").read_text()
    assert old in text
    (d / "prod.yaml").write_text(text.replace(old, new))
    return d


def test_bad_duration_names_file_path_and_value(tmp_path):
    d = _prod_with(tmp_path, "timeout: 15m", "timeout: fifteen")
    with pytest.raises(ParamsError) as ei:
        load_environment("prod", d)
    assert ei.value.problems == ['params/prod.yaml: deploy.helm.timeout: expected a duration like 15m, got "fifteen"']


def test_unknown_key_and_wrong_type_are_each_one_line(tmp_path):
    d = _prod_with(tmp_path, "kube_context: stellaops-prod", "kube_context: stellaops-prod\n    secrets_plugin: maybe\n    atomik: true")
    with pytest.raises(ParamsError) as ei:
        load_environment("prod", d)
    probs = ei.value.problems
    assert any(p.startswith("params/prod.yaml: deploy.helm.secrets_plugin:") for p in probs)
    assert "params/prod.yaml: deploy.helm.atomik: unknown key (remove it or check its spelling)" in probs


def test_every_problem_of_a_file_is_named_at_once_with_its_path(tmp_path):
    """msgspec stops at the first problem; params check names each one, inside mappings and lists too,
    in the file that sets it (prod's roles list replaces the base's: a key missing in it is prod's)."""
    d = _prod_with(tmp_path, "tier: prod", "tier: production\nroles: [{role: cto, primary: A}, 7]\n"
                   "secret_stores: {s: {keys: []}}\napprovals: {gates: {plan: {title: 1, roles: []}}}\n"
                   "slo: {scan: 5m, ui: 2x}")
    with pytest.raises(ParamsError) as ei:
        load_environment("prod", d)
    assert sorted(ei.value.problems) == sorted([
        "params/prod.yaml: tier: expected one of local, dev, stage, prod, airgap, mirror, got 'production'",
        "params/prod.yaml: roles.0.backup: required key is missing",
        "params/prod.yaml: roles.0.contact: required key is missing",
        "params/prod.yaml: roles.1: expected a mapping, got an integer",
        "params/prod.yaml: secret_stores.s.keys: expected a list of at least 1 item",
        "params/prod.yaml: approvals.gates.plan.title: expected a string, got an integer",
        "params/prod.yaml: approvals.gates.plan.roles: expected a list of at least 1 item",
        'params/prod.yaml: slo.ui: expected a duration like 15m, got "2x"',
    ])


def test_a_rule_across_keys_is_named_at_its_section(tmp_path):
    d = _prod_with(tmp_path, "  url: https://jira.stella-ops.internal\n", "")
    with pytest.raises(ParamsError) as ei:
        load_environment("prod", d)
    assert ei.value.problems == ["params/prod.yaml: ticket: ticket.system is set: give ticket.url and ticket.token "
                                 "(a secret reference) too"]


def test_problem_in_base_points_at_base(tmp_path):
    d = tmp_path / "params"
    d.mkdir()
    for p in (REPO / "params").glob("*.yaml"):
        (d / p.name).write_text(p.read_text())
    (d / "_base.yaml").write_text((d / "_base.yaml").read_text().replace("scan: 5m", "scan: soon"))
    with pytest.raises(ParamsError) as ei:
        load_environment("dev", d)
    assert ei.value.problems == ['params/_base.yaml: slo.scan: expected a duration like 15m, got "soon"']


def test_malformed_yaml_gives_line_and_column(tmp_path):
    d = _write(tmp_path, "x.yaml", "release: [\n")
    with pytest.raises(ParamsError) as ei:
        load_environment("x", d)
    assert ei.value.problems[0].startswith("params/x.yaml: line 2, column 1: malformed YAML")


def test_unknown_environment_lists_known_ones(tmp_path):
    with pytest.raises(ParamsError) as ei:
        load_environment("nope", REPO / "params")
    assert "unknown environment 'nope'" in ei.value.message
    assert "prod" in ei.value.hint


def test_bad_secret_reference(tmp_path):
    d2 = _prod_with(tmp_path, "tier: prod", "tier: prod")
    (d2 / "_base.yaml").write_text((d2 / "_base.yaml").read_text().replace(
        "webhook: env:LAUNCH_BRIDGE_WEBHOOK", "webhook: https://hooks.example/xyz"))
    with pytest.raises(ParamsError) as ei:
        load_environment("prod", d2)
    assert "bridge.webhook: expected a secret reference like env:NAME" in ei.value.problems[0]


def test_extends_cycle_is_reported(tmp_path):
    d = _write(tmp_path, "a.yaml", "extends: b.yaml\n")
    _write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ParamsError, match="cycle"):
        load_environment("a", d)


def test_overrides_win_and_are_validated():
    env = load_environment("dev", REPO / "params", parse_overrides(["slo.scan=2m", "deploy.compose.parallelism=4"]))
    assert env.slo.scan == timedelta(minutes=2) and env.deploy.compose.parallelism == 4
    # one key under a mapping merges into it: the rest of slo and of deploy.compose stay as the file says
    assert env.slo.ui == timedelta(seconds=2) and env.slo.smoke_deadline == timedelta(minutes=45)
    assert env.deploy.compose.file == "deploy/compose/docker-compose.dev.yaml" and env.deploy.compose.nodes
    with pytest.raises(ParamsError, match=r"-p: slo.scna: unknown key"):
        load_environment("dev", REPO / "params", parse_overrides(["slo.scna=2m"]))
    with pytest.raises(ParamsError, match="expected KEY=VALUE"):
        parse_overrides(["nonsense"])
    # an empty bridge call would be posted as "is open: ." at T-30m
    with pytest.raises(ParamsError, match=r"-p: bridge.call: expected a string of at least 1 character"):
        load_environment("dev", REPO / "params", parse_overrides(["bridge.call="]))


def test_digest_changes_with_content_not_with_secret_values(monkeypatch):
    a = params_digest(load_environment("prod", REPO / "params"))
    monkeypatch.setenv("MONGO_BACKUP_URI", "x" * 20)
    assert params_digest(load_environment("prod", REPO / "params")) == a
    b = params_digest(load_environment("prod", REPO / "params", parse_overrides(["slo.scan=4m"])))
    assert a != b


@pytest.mark.parametrize("pair, env, said", [
    ("services.scanner=https://admin:Sup3rSecret-77@scanner.example", "local",
     "services.scanner: a service URL must not hold credentials (user:password@)"),
    ("backup.mongo.uri=mongodb://backup:Sup3rSecret-77@db/x", "dev",
     "backup.mongo.uri: expected a secret reference like env:NAME"),
    ("deploy.compose.nodes=[{name: a, docker_host: 'http://ops:Sup3rSecret-77@node-a'}]", "dev",
     'deploy.compose.nodes.0.docker_host: expected a DOCKER_HOST like unix:///var/run/docker.sock or '
     'ssh://user@host, got "http://ops:***@node-a"'),
])
def test_a_credential_where_none_belongs_is_refused_without_echoing_it(pair, env, said):
    from typer.testing import CliRunner

    from cutover_lib.cli.app import app

    res = CliRunner().invoke(app, ["params", "check", "--env", env, "-p", pair, "--root", str(REPO)])
    assert res.exit_code == 2
    assert said in res.output
    assert "Sup3rSecret-77" not in res.output and "Traceback" not in res.output


# --------------------------------------------------------------------------- protected params (issue 12)
PROTECTED = ["name=stage", "tier=stage", "change_ticket=CHG-OTHER", "release=2099.01.1", "approvals.waivable=true",
             "approvals.gates.t0.roles=[devops-lead]", 'approvals.approvers={"cto": ["Mallory"]}',
             "services.scanner=https://scanner.elsewhere.example", "deploy.mode=compose",
             "deploy.helm.kube_context=someone-elses-cluster", "deploy.helm.namespace=other",
             "tools.stellaops_cli=/tmp/evil-cli", "tools.path=[/tmp/evil]", "trust.signer_keys=[/tmp/my-key.pem]",
             "credentials.authority_client_secret=env:OTHER", "backup.mongo.out_dir=/tmp/elsewhere",
             "smoke.web_pages={}", "tls_verify=false", "timeouts=5",
             # T0 moves the whole timeline: a -p t0=now would make any hour "on time" (--at-any-time says so instead)
             "t0=2026-12-01T10:00:00Z", "timeline.enforce=false", "timeline.late=30d"]


@pytest.mark.parametrize("pair", PROTECTED)
def test_prod_refuses_overrides_of_who_approves_what_where_and_whom_to_trust(pair):
    key = pair.split("=", 1)[0]
    with pytest.raises(ParamsError) as ei:
        load_environment("prod", REPO / "params", parse_overrides([pair]))
    assert ei.value.exit_code == 2
    (problem,) = ei.value.problems  # the key as given, or the first key under it
    assert problem.startswith(f"-p {key}") and ": refused: prod's approvals are not waivable, so -p may change " \
        "only run-time settings (timeouts.*, " in problem
    assert "edit params/prod.yaml instead" in ei.value.hint


@pytest.mark.parametrize("pair", ["timeouts.http=20s", "timeouts={command: 20m}",
                                  "slo.scan=3m", "monitoring.duration=2h", "bridge.heartbeat=5m",
                                  "deploy.helm.timeout=20m", "deploy.helm.watch=1m"])
def test_prod_accepts_run_time_overrides(pair):
    env = load_environment("prod", REPO / "params", parse_overrides([pair]))
    assert env.is_prod and env.name == "prod"


def test_every_protected_key_is_named_and_waivable_environments_take_any_override():
    with pytest.raises(ParamsError) as ei:
        load_environment("prod", REPO / "params", parse_overrides(["slo.scan=3m", "name=dev", "tools.path=[/x]"]))
    assert [p.split(":")[0] for p in ei.value.problems] == ["-p name", "-p tools.path"]
    stage = load_environment("stage", REPO / "params", parse_overrides(["services.scanner=https://s.example"]))
    assert stage.services.scanner == "https://s.example"


def test_the_kernel_refuses_them_too(tmp_path):
    """A notebook run by hand (papermill -p overrides ...) opens the run through the same loader."""
    from cutover_lib.engine.steps import Runbook

    with pytest.raises(ParamsError) as ei:
        Runbook.open("prod", overrides='["approvals.waivable=true"]', root=str(REPO))
    assert "-p approvals.waivable: refused" in ei.value.problems[0]


@pytest.mark.parametrize("pair, said", [
    ("t0=9999-12-31T23:59:59-14:00", "t0: expected a UTC time like 2025-10-27T14:00:00Z, got"),
    ("t0=0001-01-01T00:00:00+14:00", "t0: expected a UTC time like 2025-10-27T14:00:00Z, got"),
    ("slo.scan=99999999999d", 'slo.scan: expected a duration like 15m, got "99999999999d" (out of range)'),
    ("slo.scan=.inf", 'slo.scan: expected a duration like 15m, got "inf" (out of range)'),
    ("slo.scan=.nan", 'slo.scan: expected a duration like 15m, got "nan"'),
    ("roles=null", "roles: expected a list, got null"),
    ("change_ticket=yes", "change_ticket: expected a string, got a boolean"),
])
def test_a_value_out_of_range_is_a_params_problem_not_a_crash(pair, said):
    with pytest.raises(ParamsError) as ei:
        load_environment("dev", REPO / "params", parse_overrides([pair]))
    (problem,) = ei.value.problems
    assert problem.startswith(f"-p: {said}"), problem
