"""ssh:// compose nodes against a real sshd on loopback (the ``ssh_node`` fixture: sshd in front of
engine lab1, tests/docker/ssh_node.py): the docker SDK through paramiko, an unreachable node as one
line, a host key the operator does not know refused by both the SDK and the docker CLI, and the
runbook's 4.2 cells updating an ssh:// node and a unix:// node (engine lab2) in parallel."""

from __future__ import annotations

import subprocess
import time

import pytest

from cutover_lib.adapters import compose as dc
from cutover_lib.errors import StepFailed
from ssh_node import client_home, keypair
from test_compose_engine import make_rb, network_cell, steps, two_node_apply

pytestmark = pytest.mark.docker


def test_sdk_reaches_the_engine_through_sshd(docker_lab, ssh_operator):
    """engine_client("ssh1", "ssh://root@127.0.0.1:PORT"): paramiko, the node's `docker system
    dial-stdio`, engine lab1 -- the same engine the unix socket reaches."""
    before = ssh_operator.accepted()
    with dc.engine_client("ssh1", ssh_operator.docker_host) as client:
        over_ssh = client.version()
        info = client.info()
        names = sorted(c.name for c in client.containers.list(all=True))
    with dc.engine_client("lab1", docker_lab.engine("lab1")) as client:
        assert info["ID"] == client.info()["ID"]
        assert over_ssh["Version"] == client.version()["Version"]
        assert names == sorted(c.name for c in client.containers.list(all=True))
    assert ssh_operator.accepted() > before  # it went through sshd


def test_unreachable_ssh_node_is_one_line_naming_node_and_host(ssh_operator, closed_port):
    closed = f"ssh://root@127.0.0.1:{closed_port}"
    t0 = time.monotonic()
    with pytest.raises(StepFailed) as info:
        with dc.engine_client("ssh1", closed, timeout=10):
            pass
    line = info.value.one_line()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"docker engine of node ssh1 not reachable at DOCKER_HOST={closed}: "), line
    assert "Connection refused" in line and "check ssh access to the host" in line
    assert time.monotonic() - t0 < 10


def test_unreachable_ssh_node_fails_the_cell_naming_node_and_host(docker_lab, ssh_operator, tmp_path, closed_port):
    """The same through the runbook's 4.1.network cell: the docker CLI's ssh, mapped per node."""
    closed = f"ssh://root@127.0.0.1:{closed_port}"
    rb = make_rb(tmp_path, {"ssh1": closed})
    with pytest.raises(StepFailed):
        network_cell(rb)
    rec = steps(rb)["4.1.network"]
    assert rec["outcome"] == "failed"
    assert f"node ssh1: docker engine of node ssh1 not reachable at DOCKER_HOST={closed}" in rec["message"]
    assert "\n" not in rec["message"] and "Traceback" not in rec["message"]


def test_unknown_host_key_is_refused_by_sdk_and_cli(ssh_operator, tmp_path):
    """An operator host whose known_hosts holds another key for [127.0.0.1]:PORT: paramiko
    (RejectPolicy) and OpenSSH (StrictHostKeyChecking) both refuse; nothing is learnt."""
    other = keypair(tmp_path / "other_host_key", "not-the-node")
    home = client_home(tmp_path / "operator", ssh_operator.port, other)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ssh_operator.client_env(home).items():
            mp.setenv(key, value)
        with pytest.raises(StepFailed) as info:
            with dc.engine_client("ssh1", ssh_operator.docker_host, timeout=10):
                pass
        assert "does not match" in info.value.one_line() or "not found in known_hosts" in info.value.one_line()
        cli = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                             text=True, timeout=60, env={**ssh_operator.client_env(home),
                                                         "DOCKER_HOST": ssh_operator.docker_host})
    assert cli.returncode != 0 and "Host key verification failed" in cli.stderr, cli.stderr
    assert (home / ".ssh" / "known_hosts").read_text().split()[2] == other.split()[1]  # unchanged


def test_ssh_node_and_unix_node_updated_in_parallel(docker_lab, clean_engines, ssh_operator, tmp_path):
    """Node ssh1: ssh:// through sshd to engine lab1 (ports on 127.0.0.1); node lab2: unix://, engine
    lab2 (127.0.0.2).  The runbook's 4.1 and 4.2 cells, parallelism 2: both end healthy on 2025.09.2."""
    hosts = {"ssh1": ssh_operator.docker_host, "lab2": docker_lab.engine("lab2")}
    for h in (docker_lab.engine("lab1"), hosts["lab2"]):
        clean_engines(h)
    before = ssh_operator.accepted()
    s, two, elapsed = two_node_apply(tmp_path, hosts)
    base = f"docker compose --env-file {two} -f deploy/compose/docker-compose.prod.yaml"
    for sid, args in (("4.2.pull", "pull"), ("4.2.up", "up -d"), ("4.2.health", "ps --all --format json")):
        assert sorted(s[sid]["commands"]) == sorted(f"DOCKER_HOST={h} {base} {args}" for h in hosts.values()), sid
        assert {f"artifacts/{sid}.ssh1.log", f"artifacts/{sid}.lab2.log"} <= set(s[sid]["artifacts"])
    health = s["4.2.health"]["data"]["nodes"]
    for name in hosts:  # the engine's own healthchecks, read through the SDK (paramiko for ssh1)
        assert health[name]["images"] == ["127.0.0.1:5000/stellaops/lab:2025.09.2"], name
        assert set(health[name]["containers"].values()) == {"running/healthy"}, name
    assert f"DOCKER_HOST={hosts['ssh1']} docker logs stellaops-scanner-web --tail 50" in s["4.2.logs"]["commands"]
    print(f"ssh + unix apply: {elapsed:.1f}s, {ssh_operator.accepted() - before} ssh connections")
