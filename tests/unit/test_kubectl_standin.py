"""The kubectl stand-in (tests/standins/bin/kubectl) running runbook Section 4.3's commands --
``kubectl rollout status deployment/<svc>`` and ``kubectl get pods -n stellaops --watch`` -- as an
operator types them, against the stand-in API server (tests/standins/kube_api.py: a stand-in
answering a subset of the Kubernetes REST API, not a cluster; rollouts progress only while a watch
is open).  The script runs as a subprocess found on PATH, with KUBECONFIG naming the stand-in."""

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


def kubectl(kubeconfig, *args, timeout=30, **extra):
    assert shutil.which("kubectl", path=_env(kubeconfig)["PATH"]) == str(BIN / "kubectl")
    return subprocess.run(["kubectl", *args], env=_env(kubeconfig, **extra), capture_output=True, text=True,
                          timeout=timeout)


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
    assert 2.0 <= elapsed < 4.0  # the 2 s deadline plus interpreter start-up on a loaded machine
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


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("argv", [["rollout", "status", "deployment/stellaops-web", "-n", "stellaops"],
                                  ["get", "pods", "-n", "stellaops"]], ids=["rollout-status", "get-pods"])
def test_unknown_context_is_one_error_line(kube_api, argv):
    kube_api.add_deployment("stellaops-web")
    r = kubectl(kube_api.kubeconfig, *argv, "--context", "stellaops-typo")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == 'error: context "stellaops-typo" does not exist\n'
    assert kube_api.requests.log == []


@pytest.mark.parametrize("argv", [["rollout", "status", "deployment/stellaops-web", "-n", "stellaops"],
                                  ["get", "pods", "-n", "stellaops", "--watch"]], ids=["rollout-status", "get-pods"])
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
