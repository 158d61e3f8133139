"""A compose node reached over ssh, on one machine: a real sshd on a free loopback port in front of
one of the private engines of ``docker_lab``.

Server side (``start_sshd``): Debian's ``/usr/sbin/sshd`` with its own config, a generated ed25519
host key, one authorized key (root, public key only), ``SetEnv DOCKER_HOST=<the engine's socket>``
so the ``docker system dial-stdio`` that both the docker CLI and the docker SDK run on the node
reaches the private engine (and ``PATH`` with the docker CLI's folder).  Everything else is
sshd's default (MaxStartups, MaxSessions: what a node would have).

Client side (``SshNode.client_env``): what an operator host has in ``~/.ssh`` -- a key pair, a
``known_hosts`` holding the node's host key, a ``config`` ``Host`` entry with ``IdentityFile``,
``StrictHostKeyChecking yes`` -- in a temporary ``HOME``.  paramiko (the SDK) reads ``$HOME/.ssh``;
OpenSSH (the docker CLI's ``ssh``) reads the passwd home directory, not ``$HOME``, so a test-only
``ssh`` wrapper first on ``PATH`` passes it the same file with ``-F``.  ``DOCKER_CONFIG`` keeps
the real ``~/.docker`` (its cli-plugins hold the compose plugin).  Nothing disables host-key
checking: a host whose key is not in that ``known_hosts`` is refused by both.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"


class SshdUnavailable(Exception):
    """sshd cannot be installed or started here (the fixture skips with this reason)."""


@dataclass
class SshNode:
    """One running sshd and the client-side files that trust it."""

    port: int
    proc: subprocess.Popen[bytes]
    home: Path            # HOME for the client: .ssh/{config,known_hosts,id_ed25519}
    bin: Path             # holds the ``ssh`` wrapper (OpenSSH with -F home/.ssh/config)
    log: Path             # sshd's own log (-e)
    engine: str           # the DOCKER_HOST sshd's sessions get

    @property
    def docker_host(self) -> str:
        return f"ssh://root@{HOST}:{self.port}"

    def client_env(self, home: Path | None = None) -> dict[str, str]:
        """The environment of an operator host that knows this node (or ``home``'s ``.ssh``)."""
        home = home or self.home
        docker_config = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
        return {"HOME": str(home), "PATH": f"{home / 'bin'}:{os.environ['PATH']}", "DOCKER_CONFIG": docker_config}

    def accepted(self) -> int:
        """How many ssh connections sshd has accepted (public key) so far."""
        return self.log.read_text(errors="replace").count("Accepted publickey for root")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def ensure_sshd() -> None:
    """Debian's openssh-server, installed with apt-get when missing (root only)."""
    if os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen"):
        return
    if os.geteuid() != 0:
        raise SshdUnavailable(f"{SSHD} is not installed and installing openssh-server needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server"],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, check=False)
        proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server"],
                              capture_output=True, text=True, timeout=600, env=env, check=False)
    if proc.returncode != 0 or not os.path.exists(SSHD):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SshdUnavailable(f"apt-get install openssh-server failed: {last}")


def keypair(path: Path, comment: str) -> str:
    """An ed25519 key pair at ``path`` (no passphrase); the public key line."""
    proc = _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    if proc.returncode != 0:
        raise SshdUnavailable(f"ssh-keygen failed: {proc.stderr.strip()}")
    return path.with_name(path.name + ".pub").read_text().strip()


def client_home(home: Path, port: int, host_key: str) -> Path:
    """An operator's ``~/.ssh`` in ``home``: a key pair, ``known_hosts`` with ``host_key`` for
    [127.0.0.1]:port, a ``config`` entry for 127.0.0.1, and ``bin/ssh`` reading that config."""
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    keypair(ssh / "id_ed25519", "cutover-test-operator")
    key_type, key_b64 = host_key.split()[:2]
    (ssh / "known_hosts").write_text(f"[{HOST}]:{port} {key_type} {key_b64}\n")
    (ssh / "config").write_text(
        f"Host {HOST}\n"
        f"    IdentityFile {ssh / 'id_ed25519'}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {ssh / 'known_hosts'}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking yes\n"
        "    BatchMode yes\n")
    (ssh / "config").chmod(0o600)
    bin_dir = home / "bin"
    bin_dir.mkdir()
    real_ssh = shutil.which("ssh") or "/usr/bin/ssh"
    wrapper = bin_dir / "ssh"
    wrapper.write_text(f"#!/bin/sh\n# test-only: OpenSSH reads the passwd home, not $HOME\n"
                       f"exec {real_ssh} -F {ssh / 'config'} \"$@\"\n")
    wrapper.chmod(0o755)
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _banner(port: int, proc: subprocess.Popen[bytes], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def start_sshd(folder: Path, engine: str) -> SshNode:
    """sshd on a free loopback port whose sessions reach ``engine`` (a unix:// DOCKER_HOST)."""
    ensure_sshd()
    folder.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    server = folder / "server"
    server.mkdir(exist_ok=True)
    host_key = keypair(server / "ssh_host_ed25519_key", "cutover-test-node")
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise SshdUnavailable("no docker CLI on PATH for the node's `docker system dial-stdio`")
    path = ":".join(dict.fromkeys([os.path.dirname(docker_cli), "/usr/local/bin", "/usr/bin", "/bin"]))
    last = "no attempt"
    for _attempt in range(3):  # a free port can be taken between the probe and sshd's bind
        port = _free_port()
        home = client_home(folder / f"client-{port}", port, host_key)
        client_key = (home / ".ssh" / "id_ed25519.pub").read_text().strip()
        (server / "authorized_keys").write_text(client_key + "\n")
        config = server / "sshd_config"
        config.write_text(
            f"Port {port}\n"
            f"ListenAddress {HOST}\n"
            f"HostKey {server / 'ssh_host_ed25519_key'}\n"
            f"PidFile {server / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {server / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"  # (the files live under /tmp, which is world-writable)
            f"SetEnv DOCKER_HOST={engine} PATH={path}\n"
            "LogLevel VERBOSE\n")
        check = _run(SSHD, "-t", "-f", str(config))
        if check.returncode != 0:
            raise SshdUnavailable(f"sshd -t rejects the test config: {check.stderr.strip()}")
        log = server / f"sshd-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        if _banner(port, proc, 10):
            return SshNode(port=port, proc=proc, home=home, bin=home / "bin", log=log, engine=engine)
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)
        last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
    raise SshdUnavailable(f"sshd did not start on {HOST}: {last}")
