#!/usr/bin/env python3
"""Lint, render and schema-check a Helm chart with one values profile, without a helm binary.

    deploy/tools/helm-validate.py CHART VALUES [--kube-version 1.37] [--out DIR]

The real Helm v4 library (PyPI helm-python-sdk, ``helm_python``) lints CHART with VALUES (as
``helm lint --strict CHART -f VALUES``: a warning, e.g. a chart version that is not SemVer 2, is a
problem) and renders it (as ``helm template stellaops CHART -f VALUES``; release ``stellaops``,
namespace ``namespace`` or ``global.namespace`` of the values, else ``stellaops``).  Every rendered
manifest is then validated, strictly (no unknown fields), against the Kubernetes JSON schemas that
kubernetes-validate bundles for ``--kube-version`` (default: the newest it bundles).  Nothing is
fetched: chart and values come from the checkout, the schemas from the installed package.

With ``--out DIR`` the rendering is written to ``DIR/<profile>.yaml`` (``values-prod.yaml``:
profile ``prod``).  One line per problem on stderr (``helm-validate: VALUES: STAGE: what``, STAGE
one of ``helm lint``, ``helm template``, ``kubernetes schema``).  Exit 0 when there is none, 1 when
there is any, 2 on a usage error (a missing file, an unknown Kubernetes version).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

# kubernetes-validate validates with jsonschema without a format checker, so jsonschema's optional
# "iri" format support is never used here; importing it (rfc3987_syntax compiles Lark grammars at
# import) costs ~1.3 s per profile.  None in sys.modules makes jsonschema's `import rfc3987_syntax`
# fail as when it is not installed (python-jsonschema/jsonschema issue 1428).  A module already
# imported is left alone.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

RELEASE = "stellaops"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when present: the same documents, faster


def one_line(text: object) -> str:
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def profile_of(values: Path) -> str:
    name = values.name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name[len("values-"):] if name.startswith("values-") else name


def namespace_of(values: dict) -> str:
    ns = values.get("namespace") or (values.get("global") or {}).get("namespace")
    return ns if isinstance(ns, str) and ns else RELEASE


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="helm-validate.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("chart", type=Path)
    ap.add_argument("values", type=Path)
    ap.add_argument("--kube-version", default="", help="Kubernetes version to validate against "
                    "(default: the newest kubernetes-validate bundles)")
    ap.add_argument("--out", type=Path, help="write the rendering to OUT/<profile>.yaml")
    args = ap.parse_args(argv)

    import helm_python as helm
    import kubernetes_validate as kv
    from kubernetes_validate.utils import VersionNotSupportedError

    shown = str(args.values)
    problems: list[str] = []

    def problem(stage: str, what: object) -> None:
        line = f"helm-validate: {shown}: {stage}: {one_line(what)}"
        problems.append(line)
        print(line, file=sys.stderr)

    if not (args.chart / "Chart.yaml").is_file():
        print(f"helm-validate: {args.chart}: no Chart.yaml there", file=sys.stderr)
        return 2
    try:
        text = args.values.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"helm-validate: {shown}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    kube = (args.kube_version or kv.latest_version()).removeprefix("v")
    if kube.count(".") == 1:
        kube += ".0"
    try:
        kv.validate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "probe"}}, kube)
    except VersionNotSupportedError:
        print(f"helm-validate: --kube-version {args.kube_version}: kubernetes-validate "
              f"{kv.__version__} bundles schemas up to {kv.latest_version()}", file=sys.stderr)
        return 2

    try:
        values = helm.values_from_yaml(text)
    except helm.HelmError as exc:
        problem("helm lint", f"{shown}: {exc}")
        return 1

    # helm lint --strict: errors and warnings are problems (info, e.g. "icon is recommended", is not)
    try:
        report = helm.lint(os.fspath(args.chart), values, strict=True, kube_version=f"v{kube}")
    except helm.HelmError as exc:
        report = {"messages": [], "errors": [str(exc)]}
    for msg in report.get("messages") or []:
        if int(msg.get("severity", 0)) >= 2:
            problem("helm lint", f"{msg.get('path', '')}: {msg.get('error', '')}")
    for err in report.get("errors") or []:
        if not any(one_line(err) in p for p in problems):
            problem("helm lint", err)

    # helm template stellaops CHART -f VALUES
    try:
        chart = helm.Chart.load(os.fspath(args.chart))
        rendered = chart.render(values, name=RELEASE, namespace=namespace_of(values),
                                is_install=True)
    except helm.HelmError as exc:
        problem("helm template", exc)
        return 1

    docs: list[str] = []  # (as helm template prints them)
    count = 0
    for source in sorted(rendered):
        if not source.endswith((".yaml", ".yml", ".json")):
            continue  # NOTES.txt is shown to people, not applied
        template = source.split("/", 1)[1] if "/" in source else source
        if rendered[source].strip():
            docs.append(f"---\n# Source: {source}\n{rendered[source].strip().removeprefix('---').lstrip()}\n")
        try:
            manifests = list(yaml.load_all(rendered[source], Loader=LOADER))  # noqa: S506 - a safe loader
        except yaml.YAMLError as exc:
            problem("helm template", f"{template}: the rendering is not YAML: {exc}")
            continue
        for manifest in manifests:
            if manifest is None:
                continue
            count += 1
            if not isinstance(manifest, dict) or "apiVersion" not in manifest or "kind" not in manifest:
                problem("kubernetes schema", f"{template}: a document without apiVersion and kind")
                continue
            name = (manifest.get("metadata") or {}).get("name", "?")
            what = f"{template}: {manifest['kind']} {name}"
            try:
                kv.validate(manifest, kube, strict=True)
            except kv.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path) or "(top level)"
                problem("kubernetes schema", f"{what}: {where}: {exc.message} (Kubernetes {exc.version})")
            except kv.SchemaNotFoundError:
                problem("kubernetes schema", f"{what}: no schema for {manifest['apiVersion']} {manifest['kind']} "
                                             f"in Kubernetes {kube}")
    if count == 0:
        problem("helm template", "the chart rendered no manifest")

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{profile_of(args.values)}.yaml").write_text("".join(docs), encoding="utf-8")
    print(f"helm-validate: {shown}: helm {helm.helm_sdk_version()} (library), {count} manifests, "
          f"Kubernetes {kube} schemas: {'FAILED' if problems else 'ok'}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
