"""Secrets never leave the library.  Canary values behind every kind of secret reference
(``env:``, ``file:``, ``k8s:``) go through every phase in success and failure paths -- including a
failing command that echoes its environment and an HTTP error body that repeats the credential --
then every byte of every run folder and the terminal output is searched: zero hits."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest
import forkrun  # tests/forkrun.py: cutover as a process forked from a warm one

from nb_helpers import approve_all, free_block, lab_config, make_project, through_post_smoke
from standins.kube_api import kube_api  # noqa: F401 - fixture

pytestmark = pytest.mark.notebooks

STANDINS = Path(__file__).resolve().parents[1] / "standins" / "bin"
CANARY_FILE = "canary-FILE-7f3a9c1e5b"        # the authority client secret, file: reference
CANARY_ENV = "canary-ENV-2d8e4b6a0c"          # inside MONGO_BACKUP_URI, env: reference
CANARY_HOOK = "canaryHOOK9b1c3e5f7a"          # the bridge webhook token, env: reference
CANARY_K8S = "canary-K8S-4c6e8a0b2d"          # the authority client secret again, k8s: reference
CANARY_MC = "canary-MC-8e0a2c4e6f"            # the MinIO alias secret key in MC_HOST_minio, env: reference
CANARY_WEB = "canary-WEB-6a8c0e2b4d"          # the Web UI smoke account's password, file: reference (a browser types it)


def forms(value: str) -> list[bytes]:
    return [value.encode(), urllib.parse.quote(value, safe="").encode(),
            base64.b64encode(value.encode()).rstrip(b"=")]


class EchoingWebhook(http.server.BaseHTTPRequestHandler):
    """A broken Mattermost: 500 with a body that repeats the URL it was called on."""

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = f"internal error handling {self.path}".encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_canaries_never_reach_evidence_or_terminal(tmp_path, kube_api):  # noqa: F811
    from stellaops_lab import down, up

    root = make_project(tmp_path / "p", free_block())
    secret = root / ".lab" / "secrets" / "stellaops-prod-core" / "authority-client-secret"
    secret.parent.mkdir(parents=True)
    secret.write_text(CANARY_FILE + "\n")  # provisioned before the lab starts: the lab registers it
    web = root / ".lab" / "secrets" / "stellaops-web" / "smoke-password"
    web.parent.mkdir(parents=True)
    web.write_text(CANARY_WEB + "\n")  # the lab web UI accepts it: 5.web-ui logs in with it
    kube_api.add_secret("stellaops-prod-core", {"authority-client-secret": CANARY_FILE, "marker": CANARY_K8S})

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoingWebhook)
    hook.daemon_threads = True
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    cfg = lab_config(root)
    up(cfg)
    env = {**os.environ, "PATH": f"{STANDINS}:{os.environ['PATH']}", "MC_STANDIN_ROOT": str(tmp_path / "mc"),
           "MONGO_BACKUP_URI": f"mongodb://backup:{CANARY_ENV}@127.0.0.1:27017/stellaops",
           "MC_HOST_MINIO": f"https://mc-access:{CANARY_MC}@minio.local",
           "MC_HOST_MINIO_BACKUP": f"https://mc-access:{CANARY_MC}@minio-backup.local",
           "STANDIN_PS_LOG": str(tmp_path / "ps-during-backup.txt"),
           "BRIDGE_HOOK": f"http://127.0.0.1:{hook.server_address[1]}/hooks/{CANARY_HOOK}",
           "CUTOVER_ROOT": str(root)}
    (tmp_path / "mc" / "minio" / "stellaops").mkdir(parents=True)
    (tmp_path / "mc" / "minio" / "stellaops" / "policy.json").write_text("{}")
    tools = ["-p", "backup.mode=tools", "-p", "backup.mongo.uri=env:MONGO_BACKUP_URI",
             "-p", f"backup.mongo.out_dir={tmp_path}/backups", "-p", "backup.object_store.source=minio/stellaops",
             "-p", "backup.object_store.target_prefix=minio-backup/stellaops-"]
    k8s = ["-p", "credentials.authority_client_secret=k8s:stellaops/stellaops-prod-core#authority-client-secret"]
    # the broken bridge is retried once (not three times with backoff) and monitoring samples for
    # 2 s: the leak paths are the same, the run is 30 s shorter
    hook_env = ["-p", "bridge.webhook=env:BRIDGE_HOOK", "-p", "bridge.retries=1"]
    outputs: list[str] = []

    def run(*args: str, extra_env: dict[str, str] | None = None) -> int:
        def call(*argv: str) -> subprocess.CompletedProcess[str]:
            return forkrun.run([*argv, "--root", str(root)], cwd=root, env={**env, **(extra_env or {})}, timeout=600)

        res = through_post_smoke(call(*args), call, args)  # (the approvals and the resume are leak paths too)
        outputs.append(res.stdout + res.stderr)
        return res.returncode

    try:
        approve_all(root)
        # success paths: the file: secret (token) and env: secret (mongodump through the stand-in, which
        # prints its URI); the k8s: secret resolved through the Kubernetes API stand-in
        assert run("run", "--env", "local", "--phase", "cutover", *tools, *k8s) == 0, outputs[-1]
        assert run("run", "--env", "local", "--phase", "post", "-p", "monitoring.duration=2s",
                   "-p", "monitoring.interval=1s") == 0, outputs[-1]
        # failure paths: the bridge answers 500 repeating its own URL (an HTTP error body that repeats
        # the credential); mongodump fails echoing the URI; a smoke test fails and rollback runs
        assert run("run", "--env", "local", "--phase", "readiness", *hook_env) == 1
        assert run("run", "--env", "local", "--phase", "cutover", *tools, *hook_env,
                   extra_env={"STANDIN_FAIL": "1"}) == 1
        fault = json.dumps({"2025.09.2": {"runtime.ingest_error": True}})
        assert run("run", "--env", "local", "--phase", "cutover", *tools, "-p", f"deploy.lab.release_faults={fault}",
                   *hook_env) == 1
        assert "outcome: rolled-back" in outputs[-1]
    finally:
        down(cfg)
        hook.shutdown()
        hook.server_close()

    runs = [p for p in (root / "executed").rglob("*") if p.is_file()]
    assert len([p for p in runs if p.name == "ledger.jsonl"]) >= 5
    assert any("***" in p.read_text(errors="replace") for p in runs if p.suffix in (".log", ".txt", ".jsonl"))
    hits = []
    for canary in (CANARY_FILE, CANARY_ENV, CANARY_HOOK, CANARY_K8S, CANARY_MC, CANARY_WEB):
        for needle in forms(canary):
            hits += [str(p) for p in runs if needle in p.read_bytes()]
            hits += [f"terminal output {i}" for i, out in enumerate(outputs) if needle.decode() in out]
    assert hits == []
    # mongodump printed the URI's password alone (masked above); and while it ran, no process's
    # command line on the host held any secret (the URI reaches it in a 0600 config, never argv)
    ps = (tmp_path / "ps-during-backup.txt").read_text()
    assert "mongodump --config" in ps
    assert not [c for c in (CANARY_FILE, CANARY_ENV, CANARY_HOOK, CANARY_K8S) if c in ps]
