"""The kubectl stand-in (tests/standins/bin/kubectl) running runbook Section 4.3's commands --
``kubectl rollout status deployment/<svc>`` and ``kubectl get pods -n stellaops --watch`` -- as an
operator types them, against the stand-in API server (tests/standins/kube_api.py: a stand-in
answering a subset of the Kubernetes REST API, not a cluster; rollouts progress only while a watch
is open).  The script runs as a subprocess found on PATH, with KUBECONFIG naming the stand-in."""

import base64
import importlib.machinery
import importlib.util
import json
import os
import shutil
import queue
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from standins.kube_api import kube_api, write_kubeconfig  # noqa: F401 - fixture

BIN = Path(__file__).resolve().parents[1] / "standins" / "bin"
DEPLOYS = "/apis/apps/v1/namespaces/stellaops/deployments"


def _env(kubeconfig, **extra):
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("STANDIN_ARGV_LOG", None)
    env.update(extra)
    return env


def kubectl(kubeconfig, *args, timeout=30, cwd=None, **extra):
    assert shutil.which("kubectl", path=_env(kubeconfig)["PATH"]) == str(BIN / "kubectl")
    return subprocess.run(["kubectl", *args], env=_env(kubeconfig, **extra), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def _module():
    loader = importlib.machinery.SourceFileLoader("kubectl_standin", str(BIN / "kubectl"))
    spec = importlib.util.spec_from_loader("kubectl_standin", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- rollout status

@pytest.mark.parametrize("argv", [
    ["rollout", "status", "deployment/stellaops-web", "-n", "stellaops", "--timeout", "15m",
     "--context", "stellaops-prod"],
    ["--context", "stellaops-prod", "rollout", "status", "--timeout=15m", "--namespace", "stellaops",
     "deployment/stellaops-web"],
    ["rollout", "status", "-n=stellaops", "deployments.apps/stellaops-web", "--timeout=20s"],
    ["rollout", "status", "deploy", "stellaops-web", "--timeout", "1h"],  # namespace from the context
], ids=["as-in-runbook", "flags-first", "equals-forms", "context-namespace"])
def test_rollout_status_converges_through_a_watch(kube_api, argv):
    kube_api.add_deployment("stellaops-web", converge_after=2)
    r = kubectl(kube_api.kubeconfig, *argv)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [
        "Waiting for deployment spec update to be observed...",
        'Waiting for deployment "stellaops-web" rollout to finish: 1 out of 2 new replicas have been updated...',
        'deployment "stellaops-web" successfully rolled out',
    ]
    # like kubectl: the GET, a LIST by name, then a WATCH from the list's resourceVersion
    calls = [(path, q) for m, path, q in kube_api.requests.log if m == "GET"]
    assert calls[0] == (f"{DEPLOYS}/stellaops-web", {})
    assert calls[1] == (DEPLOYS, {"fieldSelector": "metadata.name=stellaops-web", "limit": "500"})
    assert calls[2][0] == DEPLOYS and calls[2][1]["watch"] == "true"
    assert calls[2][1]["fieldSelector"] == "metadata.name=stellaops-web"
    assert calls[2][1]["resourceVersion"] and int(calls[2][1]["timeoutSeconds"]) >= 1


def test_rollout_status_already_rolled_out_needs_no_watch(kube_api):
    kube_api.add_deployment("stellaops-web", converge_after=0)
    r = kubectl(kube_api.kubeconfig, "rollout", "status", "deployment/stellaops-web", "-n", "stellaops")
    assert (r.returncode, r.stdout, r.stderr) == (0, 'deployment "stellaops-web" successfully rolled out\n', "")
    assert kube_api.requests.count("GET", DEPLOYS, watch=True) == 0


def test_rollout_status_stuck_deployment_times_out(kube_api):
    kube_api.add_deployment("stellaops-scanner", converge_after=None, stuck_reason="CrashLoopBackOff")
    t0 = time.monotonic()
    r = kubectl(kube_api.kubeconfig, "rollout", "status", "deployment/stellaops-scanner", "-n", "stellaops",
                "--timeout", "2s")
    elapsed = time.monotonic() - t0
    assert r.returncode == 1
    assert r.stderr == "error: timed out waiting for the condition\n"
    assert r.stdout.splitlines()[-1] == ('Waiting for deployment "stellaops-scanner" rollout to finish: '
                                         "1 out of 2 new replicas have been updated...")
    assert "successfully" not in r.stdout
    # the 2 s deadline, not sooner; and not the wait without one (forever): kubectl's start-up on a
    # machine busy with 4 test workers has taken over 2 s
    assert 2.0 <= elapsed < 10.0
    assert kube_api.requests.count("GET", DEPLOYS, watch=True) >= 1


def test_rollout_status_unknown_deployment(kube_api):
    r = kubectl(kube_api.kubeconfig, "rollout", "status", "deployment/stellaops-nope", "-n", "stellaops",
                "--timeout", "15m")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == 'Error from server (NotFound): deployments.apps "stellaops-nope" not found\n'


def test_rollout_status_bad_timeout_is_kubectls_flag_error(kube_api):
    kube_api.add_deployment("stellaops-web")
    r = kubectl(kube_api.kubeconfig, "rollout", "status", "deployment/stellaops-web", "--timeout", "15")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        'Error: invalid argument "15" for "--timeout" flag: time: missing unit in duration "15"',
        "See 'kubectl rollout status --help' for usage."]
    assert kube_api.requests.log == []


def test_go_durations():
    go_duration = _module().go_duration
    assert [go_duration(d) for d in ("15m", "20s", "1h", "1h30m", "1.5s", "0", "300ms")] == \
        [900, 20, 3600, 5400, 1.5, 0, 0.3]
    for bad, msg in (("15", 'time: missing unit in duration "15"'), ("15x", 'time: unknown unit "x" in duration "15x"'),
                     ("m", 'time: invalid duration "m"')):
        with pytest.raises(ValueError, match=msg):
            go_duration(bad)


# --------------------------------------------------------------------------- get pods

def test_get_pods_table_shows_the_waiting_reason(kube_api):
    kube_api.add_deployment("stellaops-scanner", converge_after=None, stuck_reason="ImagePullBackOff")
    kube_api.add_deployment("stellaops-web", converge_after=None, stuck_reason="CrashLoopBackOff")
    kube_api.advance("stellaops")  # one controller step: each new pod now waits in its reason
    r = kubectl(kube_api.kubeconfig, "get", "pods", "-n", "stellaops", "--context", "stellaops-prod")
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["stellaops-scanner-7d9c5b-new0"] == ["0/1", "ImagePullBackOff", "4", "<unknown>"]
    assert rows["stellaops-web-7d9c5b-new0"] == ["0/1", "CrashLoopBackOff", "4", "<unknown>"]
    assert rows["stellaops-web-7d9c5b-old0"] == ["1/1", "Running", "0", "<unknown>"]
    assert len(rows) == 6
    # kubectl's tabwriter: columns aligned, padded 3 past the widest cell
    for col in ("READY", "STATUS", "RESTARTS", "AGE"):
        at = lines[0].index(col)
        assert all(line[at - 1] == " " and line[at] != " " for line in lines)
    assert lines[0].index("STATUS") - lines[0].index("READY") == len("READY") + 3
    assert lines[0].index("RESTARTS") - lines[0].index("STATUS") == len("ImagePullBackOff") + 3


def test_get_pods_empty_namespace(kube_api):
    r = kubectl(kube_api.kubeconfig, "get", "pods", "-n", "stellaops")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "No resources found in stellaops namespace.\n")


def test_get_pods_watch_keeps_running_and_prints_changes(kube_api):
    kube_api.add_deployment("stellaops-web", converge_after=None, stuck_reason="CrashLoopBackOff")
    proc = subprocess.Popen(["kubectl", "get", "pods", "-n", "stellaops", "--watch"], env=_env(kube_api.kubeconfig),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stdout], daemon=True)
    reader.start()

    def take(n, within):
        got, end = [], time.monotonic() + within
        while len(got) < n:
            try:
                got.append(lines.get(timeout=max(0.0, end - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"only {got} within {within} s") from None
        return got

    try:
        table = take(3, 10)  # read through a pipe: the table arrives flushed, before the process ends
        assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert [line.split()[0] for line in table[1:]] == ["stellaops-web-7d9c5b-old0", "stellaops-web-7d9c5b-old1"]
        time.sleep(1.0)
        assert proc.poll() is None  # --watch keeps running after its table
        kube_api.advance("stellaops")  # a new pod appears, waiting in CrashLoopBackOff
        new = take(1, 6)  # the stand-in re-lists every 2 s and prints what changed
        assert new[0].split() == ["stellaops-web-7d9c5b-new0", "0/1", "CrashLoopBackOff", "4", "<unknown>"]
        assert proc.poll() is None
        time.sleep(2.5)
        assert lines.empty()  # unchanged rows are not printed again
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=10)
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert err == ""


# --------------------------------------------------------------------------- apply (Secret manifests)

REPO = BIN.parents[2]
STAGE = REPO / "secrets" / "stage"  # the runbook's staging secrets (example values)
STAGE_NAMES = sorted(p.stem for p in STAGE.glob("*.yaml"))
SECRETS = "/api/v1/namespaces/stellaops/secrets"
CANARY = "canary-7f3e9b1c-never-printed"
CANARY_B64 = base64.b64encode(CANARY.encode()).decode()


def _manifest(name):
    return yaml.safe_load((STAGE / f"{name}.yaml").read_text())


def _two_stage_secrets(tmp_path):
    """A directory holding copies of two of the repo's staging secret manifests."""
    folder = tmp_path / "stage"
    folder.mkdir()
    for name in ("stellaops-stage-core", "stellaops-stage-minio"):
        shutil.copy(STAGE / f"{name}.yaml", folder / f"{name}.yaml")
    return folder


def _secret_manifest(name, value=CANARY, **extra):
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
           "stringData": {"password": value}}
    doc.update(extra)
    return yaml.safe_dump(doc, sort_keys=False)


def _no_values(r):
    """Neither the plain nor the base64 canary (nor a staging example value) in what was printed."""
    text = r.stdout + r.stderr
    assert CANARY not in text and CANARY_B64 not in text
    assert "stage-example" not in text


def test_apply_directory_created_unchanged_configured(kube_api, tmp_path):
    assert len(STAGE_NAMES) >= 2  # the repo's staging manifests exist
    folder = _two_stage_secrets(tmp_path)
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(folder))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == ["secret/stellaops-stage-core created", "secret/stellaops-stage-minio created"]
    _no_values(r)
    for name in ("stellaops-stage-core", "stellaops-stage-minio"):
        want = _manifest(name)
        assert kube_api.secret_data(name) == want["stringData"]  # every key, in the context's namespace
        stored = kube_api.secrets[("stellaops", name)]
        assert stored["metadata"]["labels"] == want["metadata"]["labels"] and stored["type"] == "Opaque"
    # a server-side apply per secret (the stand-in answers anything but apply-patch+yaml with 415,
    # which would have shown up as a POST), after a GET that found nothing
    assert kube_api.requests.count("PATCH", SECRETS) == 2
    assert kube_api.requests.count("POST") == kube_api.requests.count("PUT") == 0
    patches = [q for m, path, q in kube_api.requests.log if m == "PATCH"]
    assert patches == [{"fieldManager": "kubectl", "force": "false"}] * 2
    versions = {k: v["metadata"]["resourceVersion"] for k, v in kube_api.secrets.items()}

    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(folder))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == ["secret/stellaops-stage-core unchanged", "secret/stellaops-stage-minio unchanged"]
    assert {k: v["metadata"]["resourceVersion"] for k, v in kube_api.secrets.items()} == versions

    minio = folder / "stellaops-stage-minio.yaml"
    minio.write_text(minio.read_text().replace('"stage-example-minio-endpoint"', f'"{CANARY}"'))
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(folder))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == ["secret/stellaops-stage-core unchanged", "secret/stellaops-stage-minio configured"]
    assert kube_api.secret_data("stellaops-stage-minio")["endpoint"] == CANARY
    _no_values(r)


def test_apply_server_side_prints_serverside_applied(kube_api, tmp_path):
    folder = _two_stage_secrets(tmp_path)
    argv = ["apply", "--server-side", "--field-manager=stellaops-cutover", "-n", "stellaops", "-f", f"{folder}/",
            "--context", "stellaops-stage"]  # what 3.stage-secrets shows for the Helm deploy mode
    for _ in range(2):  # created, then unchanged: kubectl words both the same way
        r = kubectl(kube_api.kubeconfig, *argv)
        assert (r.returncode, r.stderr) == (0, "")
        assert r.stdout.splitlines() == ["secret/stellaops-stage-core serverside-applied",
                                         "secret/stellaops-stage-minio serverside-applied"]
        _no_values(r)
    assert kube_api.secret_data("stellaops-stage-core") == _manifest("stellaops-stage-core")["stringData"]
    assert kube_api.requests.count("GET") == 0  # like kubectl --server-side: the PATCH only
    assert [q for m, _, q in kube_api.requests.log] == [{"fieldManager": "stellaops-cutover", "force": "false"}] * 4
    r = kubectl(kube_api.kubeconfig, "apply", "--server-side", "--force-conflicts", "-f",
                str(folder / "stellaops-stage-core.yaml"))
    assert (r.returncode, r.stdout) == (0, "secret/stellaops-stage-core serverside-applied\n")
    assert kube_api.requests.log[-1][2] == {"fieldManager": "kubectl", "force": "true"}


def test_apply_runbook_glob_is_several_paths_which_kubectl_refuses(kube_api, tmp_path):
    """Section 3's ``kubectl apply -f secrets/stage/*.yaml``: the shell expands the glob, so ``-f``
    gets the first file and the others arrive as arguments -- which kubectl (v1.32.4, checked)
    refuses before applying anything.  The directory, a quoted pattern (kubectl globs it itself)
    and one ``-f`` per file apply them all."""
    log = tmp_path / "argv.jsonl"
    r = subprocess.run("kubectl apply -f secrets/stage/*.yaml", shell=True, cwd=REPO, capture_output=True,
                       text=True, timeout=30, check=False, env=_env(kube_api.kubeconfig, STANDIN_ARGV_LOG=str(log)))
    paths = [f"secrets/stage/{name}.yaml" for name in STAGE_NAMES]
    assert json.loads(log.read_text().splitlines()[0]) == ["kubectl", "apply", "-f", *paths]  # the shell's doing
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.splitlines() == [f"error: Unexpected args: [{' '.join(paths[1:])}]",
                                     "See 'kubectl apply -h' for help and examples"]
    assert kube_api.requests.log == [] and kube_api.secrets == {}

    every = ["-f" if i % 2 == 0 else paths[i // 2] for i in range(2 * len(paths))]
    for argv, verb in ((["-f", "secrets/stage/*.yaml"], "created"), (every, "unchanged"),
                       (["-f", "secrets/stage"], "unchanged"), (["--filename=secrets/stage/"], "unchanged")):
        r = kubectl(kube_api.kubeconfig, "apply", *argv, cwd=REPO, STANDIN_ARGV_LOG=str(log))
        assert (r.returncode, r.stderr) == (0, ""), argv
        assert r.stdout.splitlines() == [f"secret/{name} {verb}" for name in STAGE_NAMES], argv
        _no_values(r)
    for name in STAGE_NAMES:
        assert sorted(kube_api.secret_data(name)) == sorted(_manifest(name)["stringData"])
    assert [json.loads(line)[1:] for line in log.read_text().splitlines()[1:]] == [
        ["apply", "-f", "secrets/stage/*.yaml"], ["apply", *every], ["apply", "-f", "secrets/stage"],
        ["apply", "--filename=secrets/stage/"]]


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: stellaops-web
  namespace: stellaops
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.stella-ops.internal/stellaops-web:2025.09.2}]
"""


def test_apply_other_kinds_are_refused_and_the_secrets_still_applied(kube_api, tmp_path):
    folder = _two_stage_secrets(tmp_path)
    (folder / "stellaops-stage-d-web.yaml").write_text(DEPLOYMENT)  # sorts between the two secrets
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(folder))
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["secret/stellaops-stage-core created", "secret/stellaops-stage-minio created"]
    assert r.stderr == "error: the stand-in applies only Secret objects (got Deployment stellaops-web)\n"
    assert sorted(kube_api.secrets) == [("stellaops", "stellaops-stage-core"), ("stellaops", "stellaops-stage-minio")]
    assert kube_api.deployments == {} and kube_api.requests.count("GET", "/apis") == 0


def test_apply_multi_document_manifests_and_namespaces(kube_api, tmp_path):
    manifest = tmp_path / "secrets.yaml"
    manifest.write_text("# two secrets and a trailing separator\n---\n" + _secret_manifest("in-context")
                        + "--- # the second one names its namespace\n"
                        + _secret_manifest("elsewhere", metadata={"name": "elsewhere", "namespace": "other"},
                                           stringData=None, data={"token": CANARY_B64})
                        + "---\n")
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(manifest))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == ["secret/in-context created", "secret/elsewhere created"]
    assert kube_api.secret_data("in-context", "stellaops") == {"password": CANARY}  # the context's namespace
    assert kube_api.secret_data("elsewhere", "other") == {"token": CANARY}  # the manifest's
    _no_values(r)
    # -n names the namespace of a manifest without one; one naming another is kubectl's error
    r = kubectl(kube_api.kubeconfig, "apply", "-n", "team", "-f", str(manifest))
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["secret/in-context created"]
    assert r.stderr == ('error: the namespace from the provided object "other" does not match the namespace "team". '
                        "You must pass '--namespace=other' to perform this operation.\n")
    assert ("team", "in-context") in kube_api.secrets
    # a context without a namespace: "default"
    cfg = yaml.safe_load(kube_api.kubeconfig.read_text())
    for ctx in cfg["contexts"]:
        ctx["context"].pop("namespace")
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(cfg))
    r = kubectl(bare, "apply", "-f", str(manifest), "--context", "stellaops-stage")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == ["secret/in-context created", "secret/elsewhere unchanged"]
    assert ("default", "in-context") in kube_api.secrets


def test_apply_missing_path_applies_nothing(kube_api, tmp_path):
    folder = _two_stage_secrets(tmp_path)
    missing = tmp_path / "secrets" / "stage" / "nope.yaml"
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(folder), "-f", str(missing))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f'error: the path "{missing}" does not exist\n'
    assert kube_api.requests.log == []
    # a pattern that matches nothing is the same error; two missing paths are kubectl's two bare lines
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(tmp_path / "*.yml"), "-f", str(missing))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.splitlines() == [f'the path "{tmp_path / "*.yml"}" does not exist',
                                     f'the path "{missing}" does not exist']
    r = kubectl(kube_api.kubeconfig, "apply")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "error: must specify one of -f and -k\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("not a manifest: a directory contributes *.json, *.yaml and *.yml only\n")
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(empty))
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "error: no objects passed to apply\n")
    assert kube_api.requests.log == []


BROKEN = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: stellaops-stage-broken
stringData:
  password: "{CANARY}
"""


def _hide_pyyaml(tmp_path):
    """A PYTHONPATH entry whose ``yaml`` cannot be imported: the stand-in's own reader then parses."""
    shadow = tmp_path / "no-pyyaml" / "yaml"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("PyYAML hidden for this test")\n')
    return {"PYTHONPATH": str(shadow.parent)}


@pytest.mark.parametrize("reader", ["pyyaml", "own-reader"])
def test_apply_malformed_yaml(kube_api, tmp_path, reader):
    env = _hide_pyyaml(tmp_path) if reader == "own-reader" else {}
    folder = _two_stage_secrets(tmp_path)
    broken = folder / "stellaops-stage-e-broken.yaml"
    broken.write_text(_secret_manifest("stellaops-stage-before-the-break") + "---\n" + BROKEN)
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(folder), **env)
    assert r.returncode == 1
    # the documents before the broken one, in the same file, are still applied (kubectl's stream visitor)
    assert r.stdout.splitlines() == ["secret/stellaops-stage-core created",
                                     "secret/stellaops-stage-before-the-break created",
                                     "secret/stellaops-stage-minio created"]
    want = {"pyyaml": "yaml: line 7: found unexpected end of stream",  # go-yaml's words and line
            "own-reader": "yaml: found unexpected end of stream while scanning a quoted scalar"}[reader]
    assert r.stderr == f"error: error parsing {broken}: error converting YAML to JSON: {want}\n"
    _no_values(r)
    for name in ("stellaops-stage-core", "stellaops-stage-minio"):
        assert kube_api.secret_data(name) == _manifest(name)["stringData"]


def test_apply_with_the_stand_ins_own_reader(kube_api, tmp_path):
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(STAGE), **_hide_pyyaml(tmp_path))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [f"secret/{name} created" for name in STAGE_NAMES]
    for name in STAGE_NAMES:
        assert kube_api.secret_data(name) == _manifest(name)["stringData"]
        assert kube_api.secrets[("stellaops", name)]["metadata"]["labels"] == _manifest(name)["metadata"]["labels"]


@pytest.mark.parametrize("text, stderr", [
    (DEPLOYMENT, ["error: the stand-in applies only Secret objects (got Deployment stellaops-web)"]),
    (_secret_manifest("numeric", value=12345),
     [('Error from server (BadRequest): Secret in version "v1" cannot be handled as a Secret: json: cannot '
       "unmarshal number into Go struct field Secret.stringData of type string")]),
    (_secret_manifest("not-base64", stringData=None, data={"password": CANARY}),
     [('Error from server (BadRequest): Secret in version "v1" cannot be handled as a Secret: illegal base64 data '
       "at input byte 6")]),
    ("metadata:\n  name: no-kind\nstringData:\n  password: " + CANARY + "\n",
     ["error: unable to decode \"{path}\": Object 'Kind' is missing"]),
    (_secret_manifest("wrong-group", apiVersion="apps/v1"),
     [('error: resource mapping not found for name: "wrong-group" namespace: "" from "{path}": no matches for '
       'kind "Secret" in version "apps/v1"'), "ensure CRDs are installed first"]),
    ("- " + CANARY + "\n", [('error: unable to decode "{path}": json: cannot unmarshal array into Go value of type '
                             "unstructured.detector")]),
    ("# nothing here\n---\n", ["error: no objects passed to apply"]),
    ("{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"data\": {\"k\": \"" + CANARY_B64 + "\"}",
     ["error: error parsing {path}: Expecting ',' delimiter: line 1 column 97"]),
], ids=["deployment", "number-value", "data-not-base64", "no-kind", "wrong-apiversion", "not-an-object",
        "empty", "bad-json"])
def test_apply_error_lines_never_hold_values(kube_api, tmp_path, text, stderr):
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(path))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.splitlines() == [line.replace("{path}", str(path)) for line in stderr]
    _no_values(r)
    assert kube_api.requests.count("PATCH") == 0 and kube_api.secrets == {}


def test_apply_without_server_side_apply_on_the_server(kube_api, tmp_path):
    """An API server answering apply-patch with 415: kubectl's client-side apply still creates and
    replaces (POST, then PUT at the version read); --server-side cannot."""
    kube_api.ssa_supported = False
    folder = _two_stage_secrets(tmp_path)
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(folder))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == ["secret/stellaops-stage-core created", "secret/stellaops-stage-minio created"]
    assert kube_api.requests.count("POST", SECRETS) == 2
    core = folder / "stellaops-stage-core.yaml"
    core.write_text(core.read_text().replace('"stage-example-core-signer-key.pem"', f'"{CANARY}"'))
    r = kubectl(kube_api.kubeconfig, "apply", "-f", str(folder))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == ["secret/stellaops-stage-core configured", "secret/stellaops-stage-minio unchanged"]
    assert kube_api.requests.count("PUT", SECRETS) == 2
    assert kube_api.secret_data("stellaops-stage-core")["signer-key.pem"] == CANARY
    r = kubectl(kube_api.kubeconfig, "apply", "--server-side", "-f", str(core))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == ("error: Server-side apply not available on the server: (the body of the request was in an "
                        "unknown format - accepted media types include: application/json-patch+json)\n")
    _no_values(r)


def test_apply_redacts_values_from_server_messages():
    mod = _module()
    doc = yaml.safe_load(_secret_manifest("x", data={"token": CANARY_B64}))
    hidden = mod.secret_values(doc)
    line = f'Error from server (Invalid): Secret "x" is invalid: {CANARY} / {CANARY_B64}'
    assert mod.redact(line, hidden) == 'Error from server (Invalid): Secret "x" is invalid: [redacted] / [redacted]'


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("argv", [["rollout", "status", "deployment/stellaops-web", "-n", "stellaops"],
                                  ["get", "pods", "-n", "stellaops"],
                                  ["apply", "-f", str(BIN.parents[2] / "secrets" / "stage")]],
                         ids=["rollout-status", "get-pods", "apply"])
def test_unknown_context_is_one_error_line(kube_api, argv):
    kube_api.add_deployment("stellaops-web")
    r = kubectl(kube_api.kubeconfig, *argv, "--context", "stellaops-typo")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == 'error: context "stellaops-typo" does not exist\n'
    assert kube_api.requests.log == []


@pytest.mark.parametrize("argv", [["rollout", "status", "deployment/stellaops-web", "-n", "stellaops"],
                                  ["get", "pods", "-n", "stellaops", "--watch"],
                                  ["apply", "-f", str(BIN.parents[2] / "secrets" / "stage")]],
                         ids=["rollout-status", "get-pods", "apply"])
def test_unreachable_server_is_kubectls_one_line(tmp_path, closed_port, argv):
    cfg = write_kubeconfig(tmp_path / "kc.yaml", f"http://127.0.0.1:{closed_port}")
    r = kubectl(cfg, *argv)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f"The connection to the server 127.0.0.1:{closed_port} was refused - "
                        "did you specify the right host or port?\n")


def test_rejected_token(kube_api, tmp_path):
    kube_api.add_deployment("stellaops-web")
    cfg = write_kubeconfig(tmp_path / "bad.yaml", kube_api.url, token="wrong")
    r = kubectl(cfg, "rollout", "status", "deployment/stellaops-web", "-n", "stellaops")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "error: You must be logged in to the server (Unauthorized)\n"


# --------------------------------------------------------------------------- the rest of the stand-in

def test_argv_log_exec_and_fall_through(kube_api, tmp_path):
    log = tmp_path / "argv.jsonl"
    kube_api.add_deployment("stellaops-web", converge_after=0)
    r = kubectl(kube_api.kubeconfig, "rollout", "status", "deployment/stellaops-web", "-n", "stellaops",
                STANDIN_ARGV_LOG=str(log))
    assert r.returncode == 0
    r = kubectl(kube_api.kubeconfig, "--context", "stellaops-prod", "exec", "-n", "stellaops",
                "deployment/stellaops-web", "--", "echo", "hello from exec", STANDIN_ARGV_LOG=str(log))
    assert (r.returncode, r.stdout) == (0, "hello from exec\n")
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        ["kubectl", "rollout", "status", "deployment/stellaops-web", "-n", "stellaops"],
        ["kubectl", "--context", "stellaops-prod", "exec", "-n", "stellaops", "deployment/stellaops-web", "--",
         "echo", "hello from exec"]]
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p).resolve() != BIN)
    if shutil.which("kubectl", path=path) is None:
        pytest.skip("no real kubectl installed to fall through to")
    r = kubectl(kube_api.kubeconfig, "version", "--client", "-o", "json")  # not stood in: the real kubectl
    assert r.returncode == 0 and "clientVersion" in json.loads(r.stdout)


KUBECONFIG_SAMPLE = """\
# written by hand, the way operators keep them
apiVersion: v1
kind: Config
preferences: {}
current-context: "stellaops-prod"   # the cutover context
clusters:
  - name: prod
    cluster:
      server: https://k8s.stella-ops.internal:6443
      certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
      tls-server-name: 'api.stella-ops.internal'
  - name: stage
    cluster: {server: "https://10.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: ops
  user:
    token: "abc.def#ghi"
    extensions: [a, {b: c}]
- name: certs
  user:
    client-certificate: certs/ops.crt
    client-key: certs/ops.key
    note: |
      two
      lines
contexts:
- context:
    cluster: prod
    user: ops
    namespace: stellaops
  name: stellaops-prod
- name: empty
  context:
"""


def test_kubeconfig_reader_matches_a_yaml_loader(kube_api):
    yaml_load = _module().yaml_load
    for text in (kube_api.kubeconfig.read_text(), KUBECONFIG_SAMPLE,
                 yaml.safe_dump(yaml.safe_load(KUBECONFIG_SAMPLE), default_flow_style=False, width=40)):
        assert yaml_load(text) == yaml.safe_load(text)
