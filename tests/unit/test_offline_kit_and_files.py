"""Issue 17: every file an environment's params name exists (or is a declared site file), for
every environment; and the T-24h offline kit check as the notebook's cells run it: the kit's own
manifest, each listed image's digest in the site registry, each bundle's checksum."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from nb_helpers import run_cells
from stellaops_lab.offline_kit import publish
from typer.testing import CliRunner

from cutover_lib.errors import StepFailed
from cutover_lib.evidence.evidence import RunFolder
from cutover_lib.config.files import named_files
from cutover_lib.config.params import available_environments, load_environment, parse_overrides
from cutover_lib.engine.steps import Runbook
from cutover_lib.config.template import render_text
from cutover_lib.cli.app import app

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output
    return res


def project_files(root: Path) -> dict[str, set[str]]:
    """Each file (project-relative) the params name, and the environments that name it."""
    out: dict[str, set[str]] = {}
    for name in available_environments(root / "params"):
        env = load_environment(name, root / "params")
        site = {render_text(f, env) for f in env.site_files}
        for _key, template, base in named_files(env):
            path = render_text(template, env)
            if path not in site:
                out.setdefault((Path(base) / path).as_posix().removeprefix("./"), set()).add(name)
    return out


def test_every_environment_as_shipped_names_only_files_that_exist():
    res = cli("params", "check", "--root", str(REPO))
    assert res.exit_code == 0, res.output
    assert sorted(res.output.splitlines()) == sorted(f"params/{n}.yaml: valid"
                                                     for n in available_environments(REPO / "params"))
    files = project_files(REPO)
    for env in ("airgap", "mirror", "dev"):  # the profiles that had no env files (issue 17)
        assert f"deploy/compose/{env}.env" in files and f"deploy/compose/{env}-previous.env" in files


def test_each_missing_file_fails_params_check_naming_every_environment_and_the_path(project: Path):
    files = project_files(project)
    assert len(files) >= 15, files
    for rel, envs in sorted(files.items()):
        target = project / rel
        moved = target.with_name(target.name + ".away")
        target.rename(moved)
        try:
            res = cli("params", "check", "--root", str(project))
            assert res.exit_code == 2, (rel, res.output)
            errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
            failing = {ln.split(":", 2)[1].strip().removeprefix("params/").removesuffix(".yaml") for ln in errors}
            if moved.is_dir():  # (the chart folder: the values files inside it go missing too)
                assert envs <= failing, (rel, errors)
                continue
            assert failing == envs, (rel, errors)
            assert all(f"{rel} does not exist" in ln for ln in errors), errors
            for env in sorted(envs)[:1]:
                one = cli("params", "check", "--env", env, "--root", str(project))
                assert one.exit_code == 2 and rel in one.output, one.output
        finally:
            moved.rename(target)


def test_plan_passes_only_while_the_environments_files_exist(project: Path):
    ok = cli("plan", "--env", "airgap", "--phase", "cutover", "--root", str(project))
    assert ok.exit_code == 0, ok.output
    planned = len(list((project / "executed" / "airgap").iterdir()))
    (project / "deploy" / "compose" / "airgap.env").unlink()
    res = cli("plan", "--env", "airgap", "--phase", "cutover", "--root", str(project))
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[0] == (
        "error: params/airgap.yaml: deploy.compose.env_file: deploy/compose/airgap.env does not exist (add it to the "
        "project, or list it in site_files if the site provides it) (then run: cutover params check --env airgap)")
    assert len(list((project / "executed" / "airgap").iterdir())) == planned  # no run folder for the refused plan


def test_a_declared_site_file_is_not_required_in_the_project(project: Path):
    env = load_environment("prod", project / "params")
    assert "deploy/keys/signer-prod.pem" in {render_text(f, env) for f in env.site_files}
    assert not (project / "deploy" / "keys" / "signer-prod.pem").exists()
    assert cli("params", "check", "--env", "prod", "--root", str(project)).exit_code == 0


# ---------------------------------------------------------------------------------- the kit cells
class _Registry(http.server.BaseHTTPRequestHandler):
    """Stand-in for a registry's manifest endpoint (the Docker engine tests use the real one):
    ``GET /v2/<repo>/manifests/<tag>`` answers with the digest of the manifest it serves."""

    manifests: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.manifests.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
        self.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(body).hexdigest())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    _Registry.manifests = {"/v2/stellaops/lab/manifests/2025.09.2": b'{"schemaVersion": 2, "layers": []}'}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def kit_run(project: Path, *overrides: str) -> dict[str, dict]:
    env = load_environment("local", project / "params", parse_overrides(list(overrides)))
    rb = Runbook(env, RunFolder.create(project / "executed", "local", "t"), root=project, notebook="02a_t-24h.ipynb")
    try:
        run_cells(rb, "02a_t-24h.ipynb", "2.t-24h.offline-kit", "2.t-24h.kit-image-{i}", "2.t-24h.kit-bundle-{i}",
                  "2.t-24h.kit-verified")
    except StepFailed:  # the verdict: a kit with any failed item fails T-24h
        pass
    return {r["step_id"]: r for r in rb.run.read_ledger() if r.get("kind") == "step"}


def kit_of(project: Path, registry: str | None = None) -> Path:
    return publish(project / ".lab" / "offline-kit", "2025.09.2", registry=registry,
                   images=("stellaops/lab",) if registry else ())


def test_a_good_kit_passes_image_by_digest_and_bundle_by_checksum(project: Path, registry: str):
    kit_of(project, registry)
    st = kit_run(project, f"offline_kit.registry={registry}")
    assert [s for s in st if s.startswith("2.t-24h.kit")] == ["2.t-24h.kit-image-1", "2.t-24h.kit-bundle-1",
                                                               "2.t-24h.kit-bundle-2", "2.t-24h.kit-verified"]
    assert all(r["outcome"] == "passed" for r in st.values()), st
    assert st["2.t-24h.kit-image-1"]["command"] == f"GET {registry}/v2/stellaops/lab/manifests/2025.09.2"
    assert "Docker-Content-Digest: sha256:" in st["2.t-24h.kit-image-1"]["observed"]
    assert st["2.t-24h.kit-bundle-1"]["command"] == "sha256sum .lab/offline-kit/2025.09.2/bundles/feeds-2025.09.2.tar.gz"


def test_a_re_pushed_image_a_changed_bundle_and_another_release_each_fail(project: Path, registry: str):
    kit = kit_of(project, registry)
    _Registry.manifests["/v2/stellaops/lab/manifests/2025.09.2"] = b'{"schemaVersion": 2, "layers": ["re-pushed"]}'
    doc = json.loads(kit.read_text())
    (kit.parent / doc["bundles"][0]["path"]).write_bytes(b"not the bundle the kit was built with")
    st = kit_run(project, f"offline_kit.registry={registry}")
    image, bundle = st["2.t-24h.kit-image-1"], st["2.t-24h.kit-bundle-1"]
    assert image["outcome"] == "failed" and doc["images"][0]["digest"] in image["message"], image["message"]
    assert "header Docker-Content-Digest is 'sha256:" in image["message"]
    assert bundle["outcome"] == "failed" and doc["bundles"][0]["sha256"] in bundle["message"]
    assert st["2.t-24h.kit-bundle-2"]["outcome"] == "passed"  # every item is checked and reported
    verdict = st["2.t-24h.kit-verified"]  # ... and the slot fails naming each failed one
    assert verdict["outcome"] == "failed"
    assert verdict["message"].endswith("observed 2.t-24h.kit-image-1 failed; 2.t-24h.kit-bundle-1 failed")

    doc["release"] = "2025.09.1"
    kit.write_text(json.dumps(doc))
    st = kit_run(project, f"offline_kit.registry={registry}")
    assert st["2.t-24h.offline-kit"]["outcome"] == "failed"
    assert 'release is "2025.09.1", expected "2025.09.2"' in st["2.t-24h.offline-kit"]["message"]


def test_images_listed_with_no_registry_in_params_fail_naming_the_key(project: Path, registry: str):
    kit_of(project, registry)
    st = kit_run(project)
    assert st["2.t-24h.kit-image-1"]["outcome"] == "failed"
    assert "{offline_kit.registry} in `GET {offline_kit.registry}/v2/" in st["2.t-24h.kit-image-1"]["message"]
    assert "is not set in params" in st["2.t-24h.kit-image-1"]["message"]


def test_a_missing_manifest_fails_the_kit_step_and_checks_nothing_else(project: Path):
    st = kit_run(project)
    assert st["2.t-24h.offline-kit"]["outcome"] == "failed"
    assert "No such file" in st["2.t-24h.offline-kit"]["message"]
    assert list(st) == ["2.t-24h.offline-kit", "2.t-24h.kit-verified"]
    assert st["2.t-24h.kit-verified"]["message"].endswith("observed 2.t-24h.offline-kit failed")
