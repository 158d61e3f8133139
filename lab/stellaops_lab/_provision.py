"""What a real platform has around the services, provisioned for the lab (named stand-ins).

* **Secret stores** ``stellaops-prod-{core,mongo,minio,notify}`` as folders with one file
  per key (mode 0600), the shape of a mounted Kubernetes secret volume.  Values are random,
  generated once and kept across restarts; the runbook checks key *names* only.
* **Object store** ``minio/stellaops`` as a folder of policy and bundle objects, the source of
  the 4.1 mirror.
* The **offline kit** of the release (``offline-kit/<release>/``, :mod:`.offline_kit`): bundles
  and their checksums; no images (the process lab runs none).
* The **Web UI smoke account**'s password (``stellaops-web/smoke-password``), the one the lab web UI
  accepts for :data:`~._webui.WEB_USER` (``LAB_WEB_PASSWORD`` when set, as the compose files pass it).
* The **change ticket API token** (``stellaops-ticket/api-token``), the bearer token the lab's
  Jira-shaped ticket stand-in (:mod:`._ticket`) accepts (``LAB_TICKET_TOKEN`` when set).
* The **#launch-bridge** incoming webhook URL points at the lab notify service's Mattermost
  stand-in (``POST /hooks/<id>``).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from ._config import LabConfig
from .offline_kit import MANIFEST, publish

__all__ = ["STORES", "client_secret", "provision", "service_env"]

STORES: dict[str, tuple[str, ...]] = {
    "stellaops-prod-core": ("authority-signing-key.pem", "authority-client-secret", "signer-key.pem",
                            "attestor-api-token"),
    "stellaops-prod-mongo": ("connection-string", "username", "password"),
    "stellaops-prod-minio": ("access-key", "secret-key", "endpoint"),
    "stellaops-prod-notify": ("smtp-password", "webhook-url"),
    "stellaops-web": ("smoke-password",),
    "stellaops-ticket": ("api-token",),
}
#: values a compose file passes to the lab services (the same on the host's side)
_FROM_ENV = {"authority-client-secret": "LAB_CLIENT_SECRET", "smoke-password": "LAB_WEB_PASSWORD",
             "api-token": "LAB_TICKET_TOKEN"}


def _write_once(path: Path, value: str) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def _value(config: LabConfig, store: str, key: str) -> str:
    if key in _FROM_ENV and os.environ.get(_FROM_ENV[key]):
        return os.environ[_FROM_ENV[key]]
    if key == "webhook-url":
        return f"{config.url('notify')}/hooks/launch-bridge-{secrets.token_hex(8)}"
    if key == "connection-string":
        pw = secrets.token_urlsafe(12)
        return f"mongodb://stellaops:{pw}@127.0.0.1:27017/stellaops?authSource=admin"
    if key == "endpoint":
        return "http://127.0.0.1:9000"
    if key.endswith(".pem"):
        return "-----BEGIN PRIVATE KEY-----\n" + secrets.token_urlsafe(48) + "\n-----END PRIVATE KEY-----"
    return secrets.token_urlsafe(24)


def provision(config: LabConfig) -> None:
    """Create the lab's secret stores and object store once (idempotent)."""
    base = config.data_dir
    for store, keys in STORES.items():
        for key in keys:
            _write_once(base / "secrets" / store / key, _value(config, store, key))
    bucket = base / "minio" / "stellaops"
    objects = {
        "policies/default.rego": 'package stellaops.policy\n\ndefault allow := false\nallow { input.severity != "critical" }\n',
        "policies/launch-exceptions.json": json.dumps({"exceptions": [], "approvedBy": "devops-lead"}, indent=2),
        "bundles/offline-kit-2025.09.2.manifest.json": json.dumps({"release": "2025.09.2", "ticket":
                                                                   "DEVOPS-OFFLINE-18-005"}, indent=2),
    }
    for rel, text in objects.items():
        _write_once(bucket / rel, text)
    release = config.release or "2025.09.2"
    if not (base / "offline-kit" / release / MANIFEST).exists():
        publish(base / "offline-kit", release)


def service_env(config: LabConfig) -> dict[str, str]:
    """The secrets the lab services check requests against, from the secret stores, by the
    variable each service reads (``LAB_CLIENT_SECRET``, ``LAB_WEB_PASSWORD``, ``LAB_TICKET_TOKEN``)."""
    provision(config)
    return {var: next((config.data_dir / "secrets" / store / key).read_text().strip()
                      for store, keys in STORES.items() if key in keys) for key, var in _FROM_ENV.items()}


def client_secret(config: LabConfig) -> str:
    """The authority client secret the lab registers (from the core secret store)."""
    return service_env(config)["LAB_CLIENT_SECRET"]
