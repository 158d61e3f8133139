"""Persistent EC P-256 keys for the lab authority and signer (PEM under ``<data>/keys``)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["load_or_create_key", "load_trusted_keys", "public_pem"]


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load the key at ``path``; create it (mode 0600, exclusive create) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race; load theirs
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
            return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return loaded


def public_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key = key.public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_trusted_keys(dirs: list[Path]) -> dict[str, str]:
    """Public keys (``*.pem``) in ``dirs``, by DSSE key id; unreadable files are skipped."""
    from cutover_lib.evidence.dsse import key_id

    keys: dict[str, str] = {}
    for folder in dirs:
        if not folder.is_dir():
            continue
        for pem_file in sorted(folder.glob("*.pem")):
            try:
                pem = pem_file.read_text()
                keys[key_id(pem)] = pem
            except (OSError, ValueError):
                continue
    return keys
