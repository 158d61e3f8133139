"""The real Helm v4 library (helm-python-sdk) and kubernetes-validate on deploy/helm/stellaops:
what T-12h runs when no helm CLI is installed (deploy/tools/helm-validate.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python")
kv = pytest.importorskip("kubernetes_validate")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "stellaops"
TOOL = REPO / "deploy" / "tools" / "helm-validate.py"
PROFILES = sorted(CHART.glob("values-*.yaml"))


def validate(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_both_values_profiles_exist():
    assert [p.name for p in PROFILES] == ["values-prod.yaml", "values-stage.yaml"]


@pytest.mark.parametrize("values", PROFILES, ids=lambda p: p.name)
def test_the_helm_library_lints_and_renders_the_profile_and_every_manifest_is_valid(values: Path):
    parsed = helm.values_from_yaml(values.read_text(encoding="utf-8"))
    report = helm.lint(str(CHART), parsed, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # (a chart version Helm accepts)
    rendered = helm.Chart.load(str(CHART)).render(parsed, name="stellaops", namespace="stellaops")
    manifests = [m for src, text in rendered.items() if src.endswith(".yaml")
                 for m in yaml.safe_load_all(text) if m]
    kinds = sorted({m["kind"] for m in manifests})
    assert kinds == ["Deployment", "Service"] and len(manifests) == 16
    env = values.stem.removeprefix("values-")
    for m in manifests:
        kv.validate(m, kv.latest_version(), strict=True)  # raises on an invalid manifest
        assert m["metadata"]["namespace"] == "stellaops"
    web = next(m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "stellaops-web")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/web:2025.09.2")
    assert f"stellaops-{env}-core" in str(rendered)


def test_the_chart_version_is_semver_and_the_app_version_is_the_release():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == "2025.9.2" and chart["appVersion"] == "2025.09.2"
    assert helm.Chart.load(str(CHART)).version == "2025.9.2"


@pytest.mark.parametrize("values", PROFILES, ids=lambda p: p.name)
def test_helm_validate_passes_each_profile_and_writes_its_rendering(values: Path, tmp_path: Path):
    out = validate(CHART, values, "--out", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert out.stderr.strip().endswith("16 manifests, Kubernetes 1.37.0 schemas: ok")
    assert "helm v4." in out.stderr
    rendering = tmp_path / "out" / f"{values.stem.removeprefix('values-')}.yaml"
    docs = [d for d in yaml.safe_load_all(rendering.read_text()) if d]
    assert len(docs) == 16 and rendering.read_text().startswith("---\n# Source: stellaops/templates/deployment.yaml")


def test_a_wrong_type_in_the_values_fails_naming_the_invalid_deployment(tmp_path: Path):
    bad = tmp_path / "values-broken.yaml"
    bad.write_text((CHART / "values-prod.yaml").read_text().replace("web:              {replicas: 3,",
                                                                    "web:              {replicas: three,"))
    assert "replicas: three" in bad.read_text()
    out = validate(CHART, bad, "--out", tmp_path / "out")
    assert out.returncode == 1
    problems = [line for line in out.stderr.splitlines() if ": kubernetes schema: " in line]
    assert problems == [f"helm-validate: {bad}: kubernetes schema: templates/deployment.yaml: Deployment "
                        f"stellaops-web: spec.replicas: 'three' is not of type 'integer', 'null' (Kubernetes 1.37)"]
    assert out.stderr.strip().endswith("schemas: FAILED")
    assert (tmp_path / "out" / "broken.yaml").is_file()  # (the rendering is kept for the ticket)


def test_an_invalid_chart_version_fails_the_lint(tmp_path: Path):
    chart = tmp_path / "stellaops"
    shutil.copytree(CHART, chart)
    meta = chart / "Chart.yaml"
    meta.write_text(meta.read_text().replace("version: 2025.9.2", "version: 2025.09.2"))
    out = validate(chart, chart / "values-stage.yaml")
    assert out.returncode == 1
    assert f"helm-validate: {chart / 'values-stage.yaml'}: helm lint: Chart.yaml: version '2025.09.2' is not a " \
           f"valid SemVerV2" in out.stderr.splitlines()


def test_a_template_that_does_not_render_fails_naming_it(tmp_path: Path):
    chart = tmp_path / "stellaops"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "broken.yaml").write_text("kind: {{ .Values.nope.deeper }}\n")
    out = validate(chart, chart / "values-prod.yaml")
    assert out.returncode == 1
    assert "nil pointer evaluating interface {}.deeper" in out.stderr
    assert f"helm-validate: {chart / 'values-prod.yaml'}: helm template: " in out.stderr


def test_an_unknown_kubernetes_version_is_a_usage_error():
    out = validate(CHART, PROFILES[0], "--kube-version", "1.99")
    assert out.returncode == 2
    assert f"bundles schemas up to {kv.latest_version()}" in out.stderr


def test_an_older_kubernetes_version_is_validated_against_its_schemas():
    out = validate(CHART, PROFILES[0], "--kube-version", "v1.30")
    assert out.returncode == 0, out.stderr
    assert "Kubernetes 1.30.0 schemas: ok" in out.stderr


def test_helm_validate_does_not_load_the_iri_grammar(tmp_path: Path):
    """kubernetes-validate checks no string format, so jsonschema's optional "iri" support
    (rfc3987_syntax, which compiles Lark grammars at import: ~1.3 s a profile here) stays unloaded;
    the schemas still reject what they should (the tests above)."""
    probe = ("import runpy, sys; sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print(code, sorted(m for m in ('rfc3987_syntax', 'lark') if sys.modules.get(m) is not None))")
    out = subprocess.run([sys.executable, "-c", probe, str(TOOL), str(CHART), str(PROFILES[0])],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split("\n")[0] == "0 []", out.stdout + out.stderr
