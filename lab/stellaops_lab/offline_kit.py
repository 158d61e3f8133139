"""The lab's offline kit: a stand-in for the DEVOPS-OFFLINE-18-005 build, published the way the kit
publishes itself, so that the T-24h check reads a real manifest and verifies real digests.

One folder per release::

    <out>/<release>/offline-kit.manifest.json
    <out>/<release>/bundles/<name>-<release>.tar.gz

The manifest: ``kit``, ``release``, ``created``, ``images`` (``repository``, ``tag`` and the
``digest`` the registry serves for that tag) and ``bundles`` (``path`` relative to the manifest,
``sha256``, ``size``).  The process lab runs no containers, so its kit lists no images; the compose
lab's kit (``make docker-lab-up``, the tests' fixture) lists the lab image of the release as the
lab registry serves it::

    python -m stellaops_lab.offline_kit --out .lab/offline-kit --release 2025.09.2 \\
        --registry http://127.0.0.1:5000 --image stellaops/lab
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["MANIFEST", "MANIFEST_TYPES", "publish", "registry_digest"]

KIT = "DEVOPS-OFFLINE-18-005"
MANIFEST = "offline-kit.manifest.json"
#: what a client accepts when it asks a registry for a tag (the digest is of the manifest served)
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])


def registry_digest(registry: str, repository: str, tag: str) -> str:
    """The digest ``registry`` (its API URL) serves for ``repository:tag``."""
    import httpx

    r = httpx.get(f"{registry.rstrip('/')}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES},
                  timeout=10)
    if r.status_code != 200:
        raise SystemExit(f"offline kit: {repository}:{tag} is not in {registry} (HTTP {r.status_code}); "
                         f"build and push the lab images first: make docker-lab-up")
    return r.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(r.content).hexdigest()


def _bundle(release: str, name: str) -> bytes:
    """A reproducible tarball: the lab's offline feed and policy bundles of the release."""
    files = {
        "feeds": {f"feeds/vulnerability-db-{release}.json": json.dumps({"release": release, "advisories": 1284}),
                  "feeds/README": f"Offline vulnerability feeds for Stella Ops {release} (lab stand-in).\n"},
        "policies": {"policies/default.rego": 'package stellaops.policy\n\ndefault allow := false\n',
                     "policies/launch-exceptions.json": json.dumps({"exceptions": [], "release": release})},
    }[name]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def publish(out: Path, release: str, *, registry: str | None = None, images: tuple[str, ...] = ()) -> Path:
    """Write the kit of ``release`` under ``out`` (replacing an earlier lab kit of that release);
    return the manifest's path.  ``images``: repositories in ``registry`` tagged with the release."""
    folder = out / release
    (folder / "bundles").mkdir(parents=True, exist_ok=True)
    bundles = []
    for name in ("feeds", "policies"):
        rel = f"bundles/{name}-{release}.tar.gz"
        data = _bundle(release, name)
        (folder / rel).write_bytes(data)
        bundles.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    listed = [{"repository": repo, "tag": release, "digest": registry_digest(registry, repo, release)}
              for repo in images] if registry else []
    doc = {"kit": KIT, "release": release, "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "images": listed, "bundles": bundles}
    path = folder / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stellaops_lab.offline_kit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="kit root (a folder per release)")
    parser.add_argument("--release", required=True)
    parser.add_argument("--registry", help="the registry's API URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--image", action="append", default=[], help="repository to list (tag: the release)")
    args = parser.parse_args(argv)
    if args.image and not args.registry:
        parser.error("--image needs --registry")
    print(publish(args.out, args.release, registry=args.registry, images=tuple(args.image)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
