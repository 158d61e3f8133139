"""The lab's stand-in executables (``stellaops-cli``, ``dotnet``) run as real commands.

``up()`` installs them into ``<data>/bin``; every test here runs those wrappers as
subprocesses, from the repository root with the runbook's own arguments and the
``STELLAOPS_*`` environment variables (their only configuration), against the session lab.
These are named stand-ins, not the Stella Ops CLI or the .NET host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from stellaops_lab import LabConfig, clear_faults, set_fault
from stellaops_lab._standins import install_standins

from lab_helpers import DEMO_DSSE, REPO, SBOM, auth, free_ports, independent_verify, signer_key

pytestmark = pytest.mark.lab

QUEUE_HEALTH = ["StellaOps.Scanner.WebService.dll", "health", "queue"]


def lab_env(lab: LabConfig, **overrides: str | None) -> dict[str, str]:
    """The caller's environment without any STELLAOPS_* variable, plus the lab's URLs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLAOPS_")}
    env.update(
        STELLAOPS_BACKEND_URL=lab.url("scanner"),
        STELLAOPS_AUTHORITY_URL=lab.url("authority"),
        STELLAOPS_SIGNER_URL=lab.url("signer"),
        STELLAOPS_ATTESTOR_URL=lab.url("attestor"),
        STELLAOPS_CLIENT_SECRET=auth(lab)[1],
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run(lab: LabConfig, program: str, *args: str, timeout: float = 60, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(lab.bin_dir / program), *args], cwd=REPO, env=lab_env(lab, **env),
                          capture_output=True, text=True, timeout=timeout, check=False)


def cli(lab: LabConfig, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return run(lab, "stellaops-cli", *args, **env)


def parsed(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    body = json.loads(proc.stdout)
    assert isinstance(body, dict), proc.stdout
    return body


def assert_one_error_line(proc: subprocess.CompletedProcess[str], prefix: str = "stellaops-cli") -> str:
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{prefix}"), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def scan(lab: LabConfig) -> dict[str, Any]:
    """One ``scan submit --output json`` for the module (the session lab, no faults)."""
    clear_faults(lab)
    tokens_before = httpx.get(f"{lab.url('authority')}/-/audit").json()["tokens_issued"]
    proc = cli(lab, "scan", "submit", "--profile", "prod", "--sbom", "samples/sbom/demo.json", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    body = parsed(proc)
    body["_tokens_issued"] = httpx.get(f"{lab.url('authority')}/-/audit").json()["tokens_issued"] - tokens_before
    return body


# ------------------------------------------------------------------------ what up() installs
def test_up_installs_the_wrappers(lab: LabConfig) -> None:
    for name, module in (("stellaops-cli", "stellaops_cli"), ("dotnet", "dotnet_standin")):
        path = lab.bin_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
        assert path.read_text() == (
            f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m stellaops_lab.{module} "$@"\n'
        )
    assert sorted(p.name for p in lab.bin_dir.iterdir()) == ["dotnet", "stellaops-cli"]  # no temp files


def test_up_writes_the_signer_public_key_only(lab: LabConfig) -> None:
    pem_file = lab.trusted_signer_key
    assert pem_file == lab.data_dir / "keys" / "trusted" / "signer.pem"
    assert stat.S_IMODE(pem_file.stat().st_mode) == 0o644
    pem = pem_file.read_text()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and "PRIVATE" not in pem
    with httpx.Client(timeout=10) as http:
        assert pem == signer_key(http, lab)["publicKeyPem"]  # the key the running signer uses


def test_install_standins_quotes_the_interpreter_and_replaces(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "my bin"
    bin_dir.mkdir()
    (bin_dir / "dotnet").write_text("old")
    monkeypatch.setattr(sys, "executable", "/opt/py thon's/bin/python3")
    written = install_standins(bin_dir)
    assert written == [bin_dir / "stellaops-cli", bin_dir / "dotnet"]
    text = (bin_dir / "dotnet").read_text()
    assert shlex.split(text.splitlines()[1]) == [
        "exec", "/opt/py thon's/bin/python3", "-m", "stellaops_lab.dotnet_standin", "$@"]
    assert sorted(p.name for p in bin_dir.iterdir()) == ["dotnet", "stellaops-cli"]


# ------------------------------------------------------------------------ stellaops-cli
def test_scan_submit_json(lab: LabConfig, scan: dict[str, Any]) -> None:
    components = len(json.loads(SBOM.read_text())["components"])
    assert scan["status"] == "completed" and scan["profile"] == "prod"
    assert scan["components"] == components
    assert 0 < scan["durationSeconds"] < 60
    assert scan["report"]["url"] == f"{lab.url('scanner')}/api/v1/scans/{scan['scanId']}/report"
    assert scan["attestation"]["uuid"]
    assert scan["_tokens_issued"] == 1  # a client secret was set: one Bearer token for the submit
    # The report's DSSE verifies against the public key up() pinned as trusted.
    assert independent_verify(scan["report"]["dsse"], lab.trusted_signer_key.read_text())
    report = json.loads(base64.b64decode(scan["report"]["dsse"]["payload"]))
    assert report["id"] == scan["scanId"]


def test_scan_submit_text_is_one_line_without_a_client_secret(lab: LabConfig) -> None:
    proc = cli(lab, "scan", "submit", "--profile", "prod", "--sbom", "samples/sbom/demo.json",
               STELLAOPS_CLIENT_SECRET=None, STELLAOPS_AUTHORITY_URL=None)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("scan ") and " completed in " in line and "attestation uuid " in line


def test_attestor_verify_the_scans_uuid(lab: LabConfig, scan: dict[str, Any]) -> None:
    proc = cli(lab, "attestor", "verify", "--uuid", scan["attestation"]["uuid"], "--output", "json")
    assert proc.returncode == 0, proc.stderr
    body = parsed(proc)
    assert body["ok"] is True and body["uuid"] == scan["attestation"]["uuid"]
    text = cli(lab, "attestor", "verify", "--uuid", scan["attestation"]["uuid"])
    assert text.returncode == 0 and "verified: ok=true" in text.stdout


def test_attestor_verify_unknown_uuid_fails(clean_lab: LabConfig) -> None:
    proc = cli(clean_lab, "attestor", "verify", "--uuid", "00000000-0000-0000-0000-000000000000",
               "--output", "json")
    assert proc.returncode == 1
    assert parsed(proc)["ok"] is False
    assert "HTTP 404" in assert_one_error_line(proc)


def test_signer_sign_demo_bundle(clean_lab: LabConfig) -> None:
    proc = cli(clean_lab, "signer", "sign", "--bundle", "samples/dsse/demo.json", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    body = parsed(proc)
    envelope, signer = body["envelope"], body["signer"]
    demo_payload = base64.b64decode(json.loads(DEMO_DSSE.read_text())["payload"])
    assert base64.b64decode(envelope["payload"]) == demo_payload
    assert signer["payloadSha256"] == hashlib.sha256(demo_payload).hexdigest()
    assert signer["keyid"] == envelope["signatures"][0]["keyid"]
    assert independent_verify(envelope, clean_lab.trusted_signer_key.read_text())


def test_signer_verify_demo_bundle_with_base_url(clean_lab: LabConfig) -> None:
    proc = cli(clean_lab, "signer", "verify", "--base-url", clean_lab.url("signer"),
               "--bundle", "samples/dsse/demo.json", "--output", "json", STELLAOPS_SIGNER_URL=None)
    assert proc.returncode == 0, proc.stderr
    assert parsed(proc)["ok"] is True


def test_signer_verify_tampered_bundle_fails(clean_lab: LabConfig, tmp_path: Path) -> None:
    doc = json.loads(DEMO_DSSE.read_text())
    doc["payload"] = base64.b64encode(base64.b64decode(doc["payload"]) + b" ").decode()
    bundle = tmp_path / "tampered.json"
    bundle.write_text(json.dumps(doc))
    proc = cli(clean_lab, "signer", "verify", "--base-url", clean_lab.url("signer"), "--bundle", str(bundle))
    assert proc.returncode == 1
    assert proc.stdout.startswith("signature NOT verified")


def test_scan_that_does_not_complete_exits_1_with_its_status(clean_lab: LabConfig) -> None:
    set_fault(clean_lab, "scanner", "scan_stuck")
    proc = cli(clean_lab, "scan", "submit", "--profile", "prod", "--sbom", "samples/sbom/demo.json",
               "--timeout", "1", "--output", "json")
    assert proc.returncode == 1
    body = parsed(proc)
    assert body["status"] == "running" and body["attestation"] == {"uuid": None}
    assert body["report"] == {"url": None, "dsse": None}


def test_missing_backend_url_is_a_config_error(clean_lab: LabConfig) -> None:
    proc = cli(clean_lab, "scan", "submit", "--profile", "prod", "--sbom", "samples/sbom/demo.json",
               STELLAOPS_BACKEND_URL=None)
    assert proc.returncode == 2
    assert "STELLAOPS_BACKEND_URL" in assert_one_error_line(proc)
    assert proc.stdout == ""


def test_unreachable_service_is_one_line(clean_lab: LabConfig) -> None:
    (closed,) = free_ports(1)
    proc = cli(clean_lab, "signer", "sign", "--bundle", "samples/dsse/demo.json",
               STELLAOPS_SIGNER_URL=f"http://127.0.0.1:{closed}")
    assert proc.returncode == 1
    assert "cannot reach" in assert_one_error_line(proc)


def test_a_service_that_never_answers_times_out_and_a_redirect_is_not_followed(clean_lab: LabConfig) -> None:
    """The stand-in's own HTTP client (the standard library's: it starts in ~0.1 CPU-s, ~6 times a
    cutover phase): STELLAOPS_HTTP_TIMEOUT bounds a silent service, a 302 is an answer, not a hop."""
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    redirect = socket.socket()
    redirect.bind(("127.0.0.1", 0))
    redirect.listen(2)

    def answer_302() -> None:
        for _ in range(2):
            conn, _ = redirect.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    threading.Thread(target=answer_302, daemon=True).start()
    code = ("import runpy, sys; sys.argv = ['stellaops-cli', 'signer', 'sign', '--bundle', sys.argv[1]]\n"
            "try:\n    runpy.run_module('stellaops_lab.stellaops_cli', run_name='__main__')\n"
            "except SystemExit:\n    pass\nprint('httpx' in sys.modules)")
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = cli(clean_lab, "signer", "sign", "--bundle", "samples/dsse/demo.json", STELLAOPS_SIGNER_URL=url,
                   STELLAOPS_HTTP_TIMEOUT="0.5")
        assert proc.returncode == 1
        assert f"POST {url}/api/v1/signer/sign: no answer within 0.5s" in assert_one_error_line(proc)
        url = f"http://127.0.0.1:{redirect.getsockname()[1]}"
        proc = cli(clean_lab, "signer", "sign", "--bundle", "samples/dsse/demo.json", STELLAOPS_SIGNER_URL=url)
        assert proc.returncode == 1
        assert f"POST {url}/api/v1/signer/sign -> HTTP 302: Found" in assert_one_error_line(proc)
        loaded = subprocess.run([sys.executable, "-c", code, "samples/dsse/demo.json"], cwd=REPO,
                                capture_output=True, text=True, check=True,
                                env=lab_env(clean_lab, STELLAOPS_SIGNER_URL=url))
        assert "-> HTTP 302" in loaded.stderr and loaded.stdout.splitlines()[-1] == "False"  # (a request was made)
    finally:
        silent.close()
        redirect.close()


def test_missing_file_and_usage_errors(clean_lab: LabConfig) -> None:
    missing = cli(clean_lab, "signer", "sign", "--bundle", "samples/dsse/no-such.json")
    assert missing.returncode == 1 and "no-such.json" in assert_one_error_line(missing)
    usage = cli(clean_lab, "scan", "submit", "--sbom", "samples/sbom/demo.json")
    assert usage.returncode == 2 and "--profile" in assert_one_error_line(usage)


def test_help_names_the_stand_in(clean_lab: LabConfig) -> None:
    proc = cli(clean_lab, "--help")
    assert proc.returncode == 0
    assert "STAND-IN" in proc.stdout and "STELLAOPS_BACKEND_URL" in proc.stdout


# ------------------------------------------------------------------------ dotnet ... health queue
def test_dotnet_health_queue(clean_lab: LabConfig) -> None:
    proc = run(clean_lab, "dotnet", *QUEUE_HEALTH)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("Queue: connected (depth ") and line.endswith("): Healthy")


def test_dotnet_health_queue_down(clean_lab: LabConfig) -> None:
    set_fault(clean_lab, "scanner", "queue_down")
    proc = run(clean_lab, "dotnet", *QUEUE_HEALTH)
    assert proc.returncode == 1
    assert proc.stdout.strip() == "Queue: disconnected: Unhealthy (HTTP 503)"


def test_dotnet_anything_else_is_not_stood_in(clean_lab: LabConfig) -> None:
    proc = run(clean_lab, "dotnet", "--info")
    assert proc.returncode == 2
    assert "only `dotnet StellaOps.Scanner.WebService.dll health queue`" in assert_one_error_line(proc, "dotnet")
