"""Lab authority: OIDC discovery, JWKS and client-credentials tokens (ES256).

A named stand-in for the Stella Ops Authority. Tokens are real JWTs signed with a P-256
key persisted in ``<data>/keys/authority.pem``; the JWKS publishes its public half with
``kid`` = the RFC 7638 thumbprint. Clients live in the SQLite ``clients`` table; the
``stellaops-cutover`` client is (re)registered at start with the secret from the
``LAB_CLIENT_SECRET`` environment variable (default ``lab-secret``). Every issued token
is a row in ``tokens`` (the audit trail behind ``GET /-/audit``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from typing import Any
from urllib.parse import unquote_plus, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from ._keys import load_or_create_key
from ._web_base import LabHandler, ServiceContext

__all__ = ["handlers", "jwk_thumbprint"]

CLIENT_ID = "stellaops-cutover"
AUDIENCE = "stellaops"
SCOPES = ("openid", "scanner.scan", "signer.sign", "attestor.write", "runtime.ingest", "notify.read")
TOKEN_LIFETIME = 3600
WRONG_ISSUER = "https://authority.wrong-issuer.invalid"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint: SHA-256 over the required members, sorted, no whitespace."""
    required = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":")).encode()
    return _b64url(hashlib.sha256(canonical).digest())


def _issuer(ctx: ServiceContext) -> str:
    return WRONG_ISSUER if ctx.fault("wrong_issuer") else ctx.public_url


class DiscoveryHandler(LabHandler):
    def get(self) -> None:
        base = self.ctx.public_url
        self.send_json(
            {
                "issuer": _issuer(self.ctx),
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": list(SCOPES),
                "claims_supported": ["iss", "sub", "aud", "iat", "exp", "jti", "scope"],
            }
        )


class JwksHandler(LabHandler):
    def get(self) -> None:
        self.send_json({"keys": [self.ctx.cache["jwk"]]})


class AuthorizeHandler(LabHandler):
    """Exists so discovery names only URLs that resolve; the lab has no interactive login."""

    def get(self) -> None:
        client_id = self.get_query_argument("client_id", None)
        response_type = self.get_query_argument("response_type", None)
        redirect_uri = self.get_query_argument("redirect_uri", None)
        if not client_id or not response_type or not redirect_uri:
            self.send_json(
                {
                    "error": "invalid_request",
                    "error_description": "client_id, response_type and redirect_uri are required",
                },
                400,
            )
            return
        if not redirect_uri.startswith(("http://", "https://")):
            self.send_json({"error": "invalid_request", "error_description": "bad redirect_uri"}, 400)
            return
        query = {
            "error": "login_required",
            "error_description": "the lab authority has no interactive login; use client_credentials",
        }
        state = self.get_query_argument("state", None)
        if state:
            query["state"] = state
        sep = "&" if "?" in redirect_uri else "?"
        self.redirect(f"{redirect_uri}{sep}{urlencode(query)}")


class TokenHandler(LabHandler):
    def _fail(self, status: int, error: str, description: str) -> None:
        if status == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="lab-authority"')
        self.set_header("Cache-Control", "no-store")
        self.send_json({"error": error, "error_description": description}, status)

    def _client_credentials(self) -> tuple[str | None, str | None]:
        header = self.request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
                client_id, _, secret = decoded.partition(":")
                return unquote_plus(client_id), unquote_plus(secret)
            except (ValueError, UnicodeDecodeError):
                return None, None
        return self.get_body_argument("client_id", None), self.get_body_argument("client_secret", None)

    def post(self) -> None:
        grant_type = self.get_body_argument("grant_type", None)
        if grant_type != "client_credentials":
            self._fail(400, "unsupported_grant_type", "only client_credentials is supported")
            return
        client_id, secret = self._client_credentials()
        row = None
        if client_id:
            row = self.ctx.db.execute(
                "SELECT * FROM clients WHERE client_id = ?", (client_id,)
            ).fetchone()
        given = hashlib.sha256((secret or "").encode()).hexdigest()
        if row is None or not secret or not hmac.compare_digest(given, row["secret_sha256"]):
            self._fail(401, "invalid_client", "unknown client or bad secret")
            return
        allowed = row["scopes"].split()
        requested = (self.get_body_argument("scope", None) or "").split() or allowed
        if not set(requested) <= set(allowed):
            self._fail(400, "invalid_scope", f"allowed scopes: {' '.join(allowed)}")
            return
        now = int(time.time())
        jti = str(uuid.uuid4())
        scope = " ".join(requested)
        claims = {
            "iss": _issuer(self.ctx),
            "sub": client_id,
            "aud": row["audience"],
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "jti": jti,
            "scope": scope,
            "client_id": client_id,
        }
        token = jwt.encode(
            claims,
            self.ctx.cache["key"],
            algorithm="ES256",
            headers={"kid": self.ctx.cache["jwk"]["kid"], "typ": "at+jwt"},
        )
        self.ctx.db.execute(
            "INSERT INTO tokens (jti, client_id, scope, issued_at, expires_at) VALUES (?,?,?,?,?)",
            (jti, client_id, scope, now, now + TOKEN_LIFETIME),
        )
        self.set_header("Cache-Control", "no-store")
        self.send_json(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "scope": scope,
            }
        )


def _tokens_issued(ctx: ServiceContext) -> int:
    return int(ctx.db.execute("SELECT COUNT(*) FROM tokens").fetchone()[0])


class AuditHandler(LabHandler):
    def get(self) -> None:
        self.send_json({"tokens_issued": _tokens_issued(self.ctx)})


def handlers(ctx: ServiceContext) -> list[tuple[str, type, dict[str, Any]]]:
    key = load_or_create_key(ctx.data_dir / "keys" / "authority.pem")
    jwk = public_jwk(key.public_key())
    jwk.update({"kid": jwk_thumbprint(jwk), "use": "sig", "alg": "ES256"})
    ctx.cache.update({"key": key, "jwk": jwk})
    secret = os.environ.get("LAB_CLIENT_SECRET", "lab-secret")
    ctx.db.execute(
        "INSERT INTO clients (client_id, secret_sha256, scopes, audience) VALUES (?,?,?,?) "
        "ON CONFLICT(client_id) DO UPDATE SET secret_sha256 = excluded.secret_sha256, "
        "scopes = excluded.scopes, audience = excluded.audience",
        (CLIENT_ID, hashlib.sha256(secret.encode()).hexdigest(), " ".join(SCOPES), AUDIENCE),
    )
    ctx.counters["lab_authority_tokens_issued_total"] = (
        "Access tokens issued (from the audit table).",
        lambda: _tokens_issued(ctx),
    )
    args = {"ctx": ctx}
    return [
        (r"/\.well-known/openid-configuration", DiscoveryHandler, args),
        (r"/jwks", JwksHandler, args),
        (r"/authorize", AuthorizeHandler, args),
        (r"/token", TokenHandler, args),
        (r"/-/audit", AuditHandler, args),
    ]
