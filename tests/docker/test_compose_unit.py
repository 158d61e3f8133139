"""The compose adapter without an engine: exact argv, error mapping, health polling, per-node
evidence.  Runs everywhere (no ``docker`` marker); the engine tests are in test_compose_engine.py."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover_lib.adapters import compose as dc
from cutover_lib.errors import StepFailed, ToolMissing
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.config.params import load_environment, parse_overrides
from cutover_lib.engine.steps import Runbook

REPO = Path(__file__).resolve().parents[2]
N1 = "unix:///tmp/cutover-docker/lab1/docker.sock"
N2 = "ssh://ops@compose-prod-2.stella-ops.internal"
DEAD = "unix:///tmp/cutover-docker-no-such-engine/docker.sock"


@pytest.fixture
def runbook_root(tmp_path: Path) -> Path:
    """A project root shaped like a compose host's checkout: prod.env at the top (as the runbook
    types it) and the compose files under deploy/compose/."""
    root = tmp_path / "root"
    (root / "deploy" / "compose").mkdir(parents=True)
    for name in ("docker-compose.prod.yaml", "docker-compose.stage.yaml"):
        (root / "deploy" / "compose" / name).write_text((REPO / "deploy" / "compose" / name).read_text())
    (root / "prod.env").write_text((REPO / "deploy" / "compose" / "prod.env").read_text())
    (root / "deploy" / "compose" / "stage.env").write_text((REPO / "deploy" / "compose" / "stage.env").read_text())
    return root


def make_rb(root: Path, tmp_path: Path, *overrides: str, dry_run: bool = False) -> Runbook:
    env = load_environment("lab-compose", REPO / "params", parse_overrides(list(overrides)))
    run = RunFolder.create(tmp_path / "executed", "lab-compose", "t")
    return Runbook(env, run, root=root, notebook="test", dry_run=dry_run)


def steps(rb: Runbook) -> dict[str, dict]:
    return {r["step_id"]: r for r in rb.run.read_ledger() if r.get("kind") == "step"}


def compose_cells(rb: Runbook) -> None:
    """The compose lines of the committed notebooks: 4.1 network, 4.2, and Section 6 for compose."""
    from nb_helpers import run_cells

    run_cells(rb, "04_preflight.ipynb", "4.1.network")
    run_cells(rb, "05_apply.ipynb", "4.2.pull", "4.2.up", "4.2.health", "4.2.logs")
    run_cells(rb, "08_rollback.ipynb", "6.logs", "6.compose-down", "6.compose-up-previous", "6.health-previous")


def test_dry_run_plans_every_node_with_the_exact_commands(runbook_root: Path, tmp_path: Path):
    rb = make_rb(runbook_root, tmp_path, "deploy.compose.env_file=prod.env",
                 "deploy.compose.previous.env_file=deploy/compose/stage.env",
                 f"deploy.compose.nodes=[{{name: n1, docker_host: '{N1}'}}, {{name: n2, docker_host: '{N2}'}}]",
                 dry_run=True)
    compose_cells(rb)  # (6.logs, a read, finds no engine here: it fails without stopping anything)
    s = steps(rb)
    base = "docker compose --env-file prod.env -f deploy/compose/docker-compose.prod.yaml"
    assert s["4.2.pull"]["outcome"] == "planned"
    assert s["4.2.pull"]["command"] == f"DOCKER_HOST={N1} {base} pull ; DOCKER_HOST={N2} {base} pull"
    assert s["4.2.up"]["command"] == f"DOCKER_HOST={N1} {base} up -d ; DOCKER_HOST={N2} {base} up -d"
    assert s["4.1.network"]["command"] == (f"DOCKER_HOST={N1} docker network create stellaops_frontdoor ; "
                                           f"DOCKER_HOST={N2} docker network create stellaops_frontdoor")
    assert s["6.compose-down"]["command"] == f"DOCKER_HOST={N1} {base} down ; DOCKER_HOST={N2} {base} down"
    prev = "docker compose --env-file deploy/compose/stage.env -f deploy/compose/docker-compose.stage.yaml up -d"
    assert s["6.compose-up-previous"]["command"] == f"DOCKER_HOST={N1} {prev} ; DOCKER_HOST={N2} {prev}"
    for sid in ("4.2.health", "4.2.logs", "6.health-previous"):
        assert s[sid]["outcome"] == "skipped" and "dry run" in s[sid]["observed"]
    assert all(s[sid]["mutating"] for sid in ("4.1.network", "4.2.pull", "4.2.up", "6.compose-down",
                                              "6.compose-up-previous"))
    assert not s["4.2.health"]["mutating"]
    assert s["4.2.logs"]["command"].startswith(f"DOCKER_HOST={N1} docker logs stellaops-authority --tail 50 ; ")


def test_compose_cells_are_not_applicable_in_helm_mode(tmp_path: Path):
    env = load_environment("prod", REPO / "params")
    rb = Runbook(env, RunFolder.create(tmp_path / "executed", "prod", "t"), root=REPO, notebook="t")
    compose_cells(rb)
    for sid in ("4.1.network", "4.2.pull", "4.2.up", "4.2.health", "6.compose-down"):
        rec = steps(rb)[sid]
        assert rec["outcome"] == "skipped" and "deploy mode is helm, this is the compose path" in rec["observed"]


def test_stage_secrets_is_not_applicable(runbook_root: Path, tmp_path: Path):
    from nb_helpers import run_cells

    rb = make_rb(runbook_root, tmp_path)
    run_cells(rb, "03_rehearsal.ipynb", "3.stage-secrets")
    rec = steps(rb)["3.stage-secrets"]
    assert rec["outcome"] == "skipped" and "this is the helm path" in rec["observed"] and not rec["mutating"]

def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """A stand-in ``docker`` CLI first on PATH (its messages are the real CLI's)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "docker"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return fake


def run_pull(rb: Runbook) -> dict:
    from nb_helpers import run_cells

    with pytest.raises(StepFailed):
        run_cells(rb, "05_apply.ipynb", "4.2.pull")
    return steps(rb)["4.2.pull"]


def test_missing_compose_file_is_one_line(runbook_root: Path, tmp_path: Path, monkeypatch):
    fake_docker(tmp_path, monkeypatch, "echo ran >> \"$0.calls\"\n")
    rb = make_rb(runbook_root, tmp_path, "deploy.compose.file=deploy/compose/docker-compose.nope.yaml")
    rec = run_pull(rb)
    assert rec["outcome"] == "failed" and rec["commands"] == []
    assert "deploy/compose/docker-compose.nope.yaml (compose.file) not found" in rec["message"]
    assert "fix compose.file in params" in rec["message"] and "\n" not in rec["message"]
    assert not (tmp_path / "fakebin" / "docker.calls").exists()


def test_unreachable_engine_names_the_docker_host(runbook_root: Path, tmp_path: Path, monkeypatch):
    fake_docker(tmp_path, monkeypatch, f"echo 'Cannot connect to the Docker daemon at {DEAD}. Is the docker daemon "
                                       "running?' >&2\nexit 1\n")
    rb = make_rb(runbook_root, tmp_path, f"deploy.compose.nodes=[{{name: n1, docker_host: '{DEAD}'}}]")
    from nb_helpers import run_cells

    with pytest.raises(StepFailed, match="node n1"):
        run_cells(rb, "04_preflight.ipynb", "4.1.network")
    rec = steps(rb)["4.1.network"]
    assert f"docker engine of node n1 not reachable at DOCKER_HOST={DEAD}" in rec["message"]
    assert "systemctl start docker" in rec["message"] and "\n" not in rec["message"]
    assert rec["data"]["nodes"]["n1"]["outcome"] == "failed"


def test_a_failed_node_stops_the_nodes_not_yet_started(runbook_root: Path, tmp_path: Path, monkeypatch):
    fake_docker(tmp_path, monkeypatch, 'case "$DOCKER_HOST" in *no-such-engine*) echo "Cannot connect to the Docker '
                                       'daemon at $DOCKER_HOST. Is the docker daemon running?" >&2; exit 1;; esac\n'
                                       'echo "$DOCKER_HOST" >> "$0.calls"\n')
    rb = make_rb(runbook_root, tmp_path, "deploy.compose.parallelism=1",
                 f"deploy.compose.nodes=[{{name: dead, docker_host: '{DEAD}'}}, {{name: n2, docker_host: '{N2}'}}]")
    from nb_helpers import run_cells

    with pytest.raises(StepFailed):
        run_cells(rb, "04_preflight.ipynb", "4.1.network")
    rec = steps(rb)["4.1.network"]
    assert rec["message"].startswith("expected exit 0 (or the output says 'already exists'); observed node dead: "
                                     "docker engine of node dead not reachable")
    assert "(not started: n2)" in rec["message"]
    assert rec["data"]["nodes"]["n2"]["outcome"] == "not started"
    assert not (tmp_path / "fakebin" / "docker.calls").exists()


ALSO_OK = [  # (notebook, step, the output that passes, its note, another failure, -p for it)
    ("04_preflight.ipynb", "4.1.network",  # `docker network create`: the network is already there
     "echo 'Error response from daemon: network with name stellaops_frontdoor already exists' >&2\nexit 1\n",
     "already exists (passes)",
     "echo 'Error response from daemon: operation is not permitted on predefined host network' >&2\nexit 1\n",
     ("deploy.compose.network=host",)),
    # `down` after dockerd kept a stale endpoint (moby/moby#43286): every container removed, the network
    # kept, so the failed release is down and the rollback goes on; a container that will not go fails
    ("08_rollback.ipynb", "6.compose-down",
     "echo ' Container stellaops-scanner-web  Removed'\necho 'failed to remove network stellaops_default: Error "
     "response from daemon: error while removing network: network stellaops_default id 98f2 has active "
     "endpoints' >&2\nexit 1\n",
     "has active endpoints (passes)",
     "echo 'Error response from daemon: cannot remove container stellaops-scanner-web: device or resource busy' "
     ">&2\nexit 1\n",
     ()),
]


@pytest.mark.parametrize("notebook,step,ok_out,ok_note,bad_out,bad_params", ALSO_OK, ids=[r[1] for r in ALSO_OK])
def test_a_known_failure_output_passes_any_other_error_fails(runbook_root: Path, tmp_path: Path, monkeypatch,
                                                             notebook, step, ok_out, ok_note, bad_out, bad_params):
    from nb_helpers import run_cells

    fake_docker(tmp_path, monkeypatch, ok_out)
    rb = make_rb(runbook_root, tmp_path, "deploy.compose.env_file=prod.env")
    run_cells(rb, notebook, step)
    rec = steps(rb)[step]
    assert rec["outcome"] == "passed" and ok_note in rec["observed"]
    fake_docker(tmp_path, monkeypatch, bad_out)
    rb = make_rb(runbook_root, tmp_path, "deploy.compose.env_file=prod.env", *bad_params)
    with pytest.raises(StepFailed):
        run_cells(rb, notebook, step)
    assert bad_out.split(": ", 1)[1].split("'", 1)[0] in steps(rb)[step]["message"]


def test_docker_not_installed_is_tool_missing(runbook_root: Path, tmp_path: Path, monkeypatch):
    from cutover_lib.errors import ToolMissing
    from nb_helpers import run_cells

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    rb = make_rb(runbook_root, tmp_path, "deploy.compose.env_file=prod.env")
    with pytest.raises(ToolMissing):
        run_cells(rb, "05_apply.ipynb", "4.2.pull")
    assert "docker is not installed" in steps(rb)["4.2.pull"]["message"]


def test_compose_plugin_missing_is_tool_missing(runbook_root: Path, tmp_path: Path, monkeypatch):
    from cutover_lib.errors import ToolMissing
    from nb_helpers import run_cells

    fake_docker(tmp_path, monkeypatch, "echo \"docker: 'compose' is not a docker command.\" >&2\nexit 1\n")
    rb = make_rb(runbook_root, tmp_path, "deploy.compose.env_file=prod.env")
    with pytest.raises(ToolMissing):
        run_cells(rb, "05_apply.ipynb", "4.2.pull")
    msg = steps(rb)["4.2.pull"]["message"]
    assert "docker compose v2 is not installed" in msg and "Compose v2 CLI plugin" in msg


def test_cli_errors_map_most_specific_first():
    down = dc.map_cli_failure("n1", N1, "docker compose ps", 1,
                              ["Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?"])
    assert isinstance(down, StepFailed) and f"DOCKER_HOST={N1}" in down.message
    ssh = dc.map_cli_failure("n2", N2, "docker compose ps", 255, ["error during connect: ssh: connect to host x"])
    assert "check ssh access" in ssh.one_line()
    assert isinstance(dc.map_cli_failure("n", N1, "c", 1, ["unknown command: docker compose"]), ToolMissing)
    other = dc.map_cli_failure("n1", N1, "docker compose pull", 18, ["a", "", "manifest unknown"])
    assert other.message == "`docker compose pull` exited 18 on node n1; last output: a | manifest unknown"


# ------------------------------------------------------------------------------ health

def _row(service: str, health: str, state: str = "running", last: str = "") -> dc.ContainerHealth:
    return dc.ContainerHealth(service, f"stellaops-{service}", "img:1", state, health, last)


def test_wait_healthy_retries_with_backoff_until_healthy():
    polls = iter([[_row("a", "starting")], [_row("a", "starting")], [_row("a", "healthy")]])
    slept: list[float] = []
    ok, rows, problems = dc.wait_healthy(lambda: next(polls), ["a"], 60, sleep=slept.append)
    assert ok and problems == [] and slept == [0.5, 1.0]


def test_wait_healthy_stops_early_on_unhealthy():
    slept: list[float] = []
    ok, _, problems = dc.wait_healthy(lambda: [_row("a", "healthy"), _row("b", "unhealthy")], [], 300,
                                      sleep=slept.append)
    assert not ok and slept == [] and problems == ["b (stellaops-b) running/unhealthy"]


def test_wait_healthy_names_the_unhealthy_service_and_its_last_check():
    rows = [_row("authority", "healthy"),
            _row("scanner-web", "unhealthy", last="urllib.error.HTTPError: HTTP Error 503: Service Unavailable")]
    ok, _, problems = dc.wait_healthy(lambda: rows, ["authority", "scanner-web", "signer"], 0, sleep=lambda s: None)
    assert not ok
    assert problems == ["scanner-web (stellaops-scanner-web) running/unhealthy; last check: "
                        "urllib.error.HTTPError: HTTP Error 503: Service Unavailable", "signer: no container"]


def test_a_poll_the_engine_does_not_answer_in_time_is_asked_again():
    import requests

    answers = iter([lambda: [_row("a", "starting")], _timeout, lambda: [_row("a", "healthy")]])
    ok, rows, problems = dc.wait_healthy(lambda: next(answers)(), ["a"], 60, sleep=lambda s: None)
    assert ok and problems == [] and rows == [_row("a", "healthy")]

    ok, _, problems = dc.wait_healthy(_timeout, ["a"], 0, sleep=lambda s: None)
    assert not ok and problems == ["the engine did not answer a poll in time (Read timed out. (read timeout=5))"]
    with pytest.raises(requests.exceptions.ConnectionError):  # refused is down, not busy: no second ask
        dc.wait_healthy(_refused, ["a"], 60, sleep=lambda s: pytest.fail("asked again"))


def _timeout() -> list:
    import requests

    raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")


def _refused() -> list:
    import requests

    raise requests.exceptions.ConnectionError("Connection refused")


class SlowEngine:
    """A stand-in Docker engine on a unix socket that keeps the first ``silent`` requests
    waiting (a busy engine), then answers ``/version`` as dockerd does.  ``mid_body``: the
    silent answers stop after their headers and the first bytes of the body instead."""

    def __init__(self, path: Path, silent: int, mid_body: bool = False):
        import socket
        import threading

        self.silent, self.asked, self.mid_body = silent, 0, mid_body
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(str(path))
            self.sock.listen(8)
        except OSError:
            self.sock.close()
            raise
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn) -> None:
        with conn:
            if not conn.recv(65536):  # the adapter's connect probe sends nothing
                return
            self.asked += 1
            body = b'{"ApiVersion": "1.41", "Version": "26.1.5"}'
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
            if self.asked <= self.silent:
                if self.mid_body:
                    conn.sendall(head + body[:9])
                conn.recv(1)  # never answers (the rest): returns when the client gives up
                return
            conn.sendall(head + body)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder for unix sockets: make test's TMPDIR is deeper than a socket path may be (108 bytes)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="cutover-engine-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("mid_body", [False, True], ids=["no-answer", "answer-stops-mid-body"])
def test_an_engine_busy_at_the_first_request_is_asked_again_and_a_hung_one_named(short_dir: Path, mid_body: bool):
    """A busy engine keeps a request waiting, or stops its answer after the first bytes of the body
    (requests raises that read timeout as a ConnectionError: it read as "not reachable ... start it")."""
    busy = SlowEngine(short_dir / "busy.sock", silent=1, mid_body=mid_body)
    try:
        with dc.engine_client("n1", f"unix://{short_dir}/busy.sock", timeout=1) as client:
            assert client.api._version == "1.41"
        assert busy.asked == 2
    finally:
        busy.close()
    hung = SlowEngine(short_dir / "hung.sock", silent=99, mid_body=mid_body)
    try:
        with pytest.raises(StepFailed) as caught, dc.engine_client("n1", f"unix://{short_dir}/hung.sock", timeout=1):
            pass
        assert hung.asked == 3
    finally:
        hung.close()
    assert caught.value.message.startswith(f"docker engine of node n1 (unix://{short_dir}/hung.sock) "
                                           "did not answer within 1s: ")
    assert "raise timeouts.http" in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_a_read_timeout_is_busy_a_refused_or_timed_out_connect_is_down():
    import requests

    assert dc.engine_busy(requests.exceptions.ReadTimeout()) and dc.engine_busy(TimeoutError())
    assert not dc.engine_busy(requests.exceptions.ConnectionError("Connection refused"))
    assert not dc.engine_busy(requests.exceptions.ConnectTimeout())  # a dead host is not a busy one


def test_parse_ps_reads_lines_and_arrays():
    line = {"Name": "stellaops-web", "Service": "web", "Project": "stellaops", "Health": "healthy"}
    assert dc.parse_ps("$ docker compose ps\n" + json.dumps(line) + "\n# exit 0") == [line]
    assert dc.parse_ps(json.dumps([line, line])) == [line, line]
    assert dc.parse_ps("WARN[0000] something\n") == []
