"""Lab stand-in for ``stellaops-cli`` -- a named stand-in, NOT the Stella Ops CLI.

The runbook (Sections 4.4 and 5) runs ``stellaops-cli`` commands. Against the local lab
this module answers to the same names and arguments and talks to the lab's HTTP API:

* ``scan submit --profile P --sbom PATH [--timeout S]``: POST the SBOM to
  ``{backend}/api/v1/scans``, poll ``{backend}/api/v1/scans/{id}`` every 0.5 s until
  ``completed``/``failed`` or the timeout, GET ``{backend}/api/v1/scans/{id}/report``, then
  submit the report's DSSE envelope to ``{attestor}/api/v1/attestations`` for a uuid;
* ``signer sign --bundle PATH``: POST the bundle to ``{signer}/api/v1/signer/sign``;
* ``signer verify --base-url URL --bundle PATH``: POST the bundle to ``{URL}/api/v1/signer/verify``;
* ``attestor verify --uuid UUID``: POST ``{attestor}/api/v1/attestations/{uuid}/verify``.

Configuration comes from environment variables only (the documented contract; the real
tool gets the same variables from params): ``STELLAOPS_BACKEND_URL``,
``STELLAOPS_AUTHORITY_URL``, ``STELLAOPS_SIGNER_URL``, ``STELLAOPS_ATTESTOR_URL``,
``STELLAOPS_CLIENT_ID`` (default ``stellaops-cutover``) and ``STELLAOPS_CLIENT_SECRET``
(when set, scan submit sends a client-credentials Bearer token, scope ``scanner.scan``,
from the authority's discovered ``token_endpoint``), ``STELLAOPS_TLS_VERIFY`` (``false``
disables certificate verification) and ``STELLAOPS_HTTP_TIMEOUT`` (seconds, default 10).

Every command takes ``--output json|text`` (default text). Exit codes: 0 success; 1 the
command ran and failed (scan failed or timed out, verification not ok, HTTP error,
service unreachable, unreadable file); 2 usage or configuration error (bad arguments, a
URL variable missing). Errors are one ``stellaops-cli: error: ...`` line on stderr, never a
traceback. The client secret and the token are never printed.

Only the standard library is used (``http.client``; no redirects are followed, a TLS context is
made only for an ``https://`` URL): the stand-in runs a few times in every cutover phase, and
importing an HTTP library and loading a CA bundle cost more than the requests themselves.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, NoReturn
from urllib.parse import quote, urlencode, urlsplit

__all__ = ["CliError", "Client", "Response", "Settings", "main"]

PROG = "stellaops-cli"
DEFAULT_CLIENT_ID = "stellaops-cutover"
DEFAULT_HTTP_TIMEOUT = 10.0
DEFAULT_SCAN_TIMEOUT = 300.0
POLL_SECONDS = 0.5
TOKEN_SCOPE = "scanner.scan"

ENV_HELP = """\
environment (the only configuration; the real tool gets the same values from params):
  STELLAOPS_BACKEND_URL     scanner base URL               (scan submit)
  STELLAOPS_ATTESTOR_URL    attestor base URL              (scan submit, attestor verify)
  STELLAOPS_SIGNER_URL      signer base URL                (signer sign; signer verify without --base-url)
  STELLAOPS_AUTHORITY_URL   authority base URL             (scan submit when a client secret is set)
  STELLAOPS_CLIENT_ID       client id (default stellaops-cutover)
  STELLAOPS_CLIENT_SECRET   when set: Bearer token (client credentials, scope scanner.scan) on scan submit
  STELLAOPS_TLS_VERIFY      "false" disables TLS certificate verification
  STELLAOPS_HTTP_TIMEOUT    seconds per HTTP request (default 10)

exit codes: 0 ok; 1 failed (scan failed/timed out, not verified, HTTP or connection error);
2 usage or configuration error."""


class CliError(Exception):
    """An expected failure: printed as one line, exit ``code`` (1 failed, 2 usage/config)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(" ".join(str(message).split()))
        self.code = code


def _falsy(value: str) -> bool:
    return value.strip().lower() in ("false", "0", "no", "off")


class Settings(NamedTuple):  # (a NamedTuple, not a dataclass: dataclasses imports inspect: ~20 ms of CPU a call)
    """HTTP settings from the environment (``STELLAOPS_TLS_VERIFY``, ``STELLAOPS_HTTP_TIMEOUT``)."""

    timeout: float = DEFAULT_HTTP_TIMEOUT
    verify: bool = True

    @classmethod
    def from_env(cls) -> Settings:
        raw = os.environ.get("STELLAOPS_HTTP_TIMEOUT", "").strip()
        timeout = DEFAULT_HTTP_TIMEOUT
        if raw:
            try:
                timeout = float(raw)
            except ValueError:
                timeout = -1.0
            if not timeout > 0:
                raise CliError(f"STELLAOPS_HTTP_TIMEOUT must be a positive number of seconds, not {raw!r}", 2)
        return cls(timeout=timeout, verify=not _falsy(os.environ.get("STELLAOPS_TLS_VERIFY", "")))

    def client(self) -> Client:
        return Client(timeout=self.timeout, verify=self.verify)


class Response(NamedTuple):
    """One HTTP answer: what the commands read of it."""

    method: str
    url: str
    status_code: int
    reason_phrase: str
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Client:
    """HTTP/1.1 requests with ``http.client``: one connection per request, no redirects followed."""

    def __init__(self, timeout: float, verify: bool) -> None:
        self.timeout, self.verify = timeout, verify
        self._tls: Any = None  # made at the first https:// request, then reused (scan submit polls)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def request(self, method: str, url: str, *, content: bytes | None = None, json_body: Any = None,
                data: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise http.client.InvalidURL(f"not an http(s) URL: {url!r}")
        sent = dict(headers or {})
        body = content
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        elif data is not None:
            body = urlencode(data).encode()
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if auth is not None:
            pair = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            sent["Authorization"] = f"Basic {pair}"
        sent.setdefault("Accept", "*/*")
        conn = self._connection(parts.scheme, parts.hostname, parts.port)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request(method, target, body=body, headers=sent)
            answer = conn.getresponse()
            return Response(method, url, answer.status, answer.reason, answer.read())
        finally:
            conn.close()

    def _connection(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        if scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=self.timeout)
        if self._tls is None:
            import ssl

            self._tls = ssl.create_default_context()
            if not self.verify:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._tls)


def base_url(value: str | None, what: str) -> str:
    """``value`` as a base URL without trailing slash; a usage/config error (exit 2) if unusable."""
    url = (value or "").strip().rstrip("/")
    if not url:
        raise CliError(f"{what} is not set (the lab stand-in reads its URLs from the environment)", 2)
    if not url.startswith(("http://", "https://")):
        raise CliError(f"{what} must be an http:// or https:// URL, not {url!r}", 2)
    return url


def env_url(name: str) -> str:
    return base_url(os.environ.get(name), name)


def request(client: Client, method: str, url: str, **kwargs: Any) -> Response:
    """One HTTP request; transport problems become one-line :class:`CliError` (exit 1)."""
    try:
        return client.request(method, url, **kwargs)
    except (socket.timeout, TimeoutError):
        raise CliError(f"{method} {url}: no answer within {client.timeout:g}s "
                       "(STELLAOPS_HTTP_TIMEOUT)") from None
    except (http.client.InvalidURL, ValueError) as exc:  # (a port that is not a number: ValueError)
        raise CliError(f"{method} {url}: invalid URL: {exc}", 2) from None
    except (OSError, http.client.HTTPException) as exc:
        raise CliError(f"{method} {url}: cannot reach the service: {exc or type(exc).__name__}") from None


def answer_json(response: Response) -> Any:
    """The response body as JSON, or None if it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def http_error(response: Response) -> CliError:
    """One line naming the request, the status and what the service said."""
    body = answer_json(response)
    said = ""
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "reason", "error_description") if body.get(k)]
        said = ": ".join(parts)
    if not said:
        said = response.text.strip()[:200] or response.reason_phrase
    request_line = f"{response.method} {response.url}"
    return CliError(f"{request_line} -> HTTP {response.status_code}: {said}")


def _ok(response: Response) -> bool:
    return 200 <= response.status_code < 300


def _object(response: Response) -> dict[str, Any]:
    """A 2xx answer's JSON object, else a :class:`CliError`."""
    if not _ok(response):
        raise http_error(response)
    body = answer_json(response)
    if not isinstance(body, dict):
        raise CliError(f"{response.method} {response.url}: the answer is not a JSON object")
    return body


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _emit(args: argparse.Namespace, obj: Any, text: str) -> None:
    if args.output == "json":
        print(json.dumps(obj, indent=2))
    else:
        print(text)


# ------------------------------------------------------------------------ scan submit
def _token(client: Client) -> str | None:
    """A client-credentials access token when ``STELLAOPS_CLIENT_SECRET`` is set, else None."""
    secret = os.environ.get("STELLAOPS_CLIENT_SECRET", "")
    if not secret:
        return None
    client_id = os.environ.get("STELLAOPS_CLIENT_ID", "").strip() or DEFAULT_CLIENT_ID
    authority = env_url("STELLAOPS_AUTHORITY_URL")
    discovery = _object(request(client, "GET", f"{authority}/.well-known/openid-configuration"))
    endpoint = discovery.get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise CliError(f"{authority}: the discovery document names no token_endpoint")
    answer = _object(request(client, "POST", endpoint, auth=(client_id, secret),
                             data={"grant_type": "client_credentials", "scope": TOKEN_SCOPE}))
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise CliError(f"POST {endpoint}: the answer has no access_token")
    return token


def cmd_scan_submit(args: argparse.Namespace) -> int:
    backend = env_url("STELLAOPS_BACKEND_URL")
    attestor = env_url("STELLAOPS_ATTESTOR_URL")
    settings = Settings.from_env()
    sbom = _read(args.sbom, "SBOM")
    with settings.client() as client:
        token = _token(client)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        start = time.monotonic()
        submitted = _object(request(client, "POST", f"{backend}/api/v1/scans", content=sbom, headers=headers))
        scan_id = submitted.get("id")
        if not isinstance(scan_id, str) or not scan_id:
            raise CliError(f"POST {backend}/api/v1/scans: the answer has no scan id")
        status_url = f"{backend}/api/v1/scans/{quote(scan_id, safe='')}"
        deadline = start + args.timeout
        while True:
            state = _object(request(client, "GET", status_url))
            status = str(state.get("status", "unknown"))
            duration = time.monotonic() - start
            now = time.monotonic()
            if status in ("completed", "failed") or now >= deadline:
                break
            time.sleep(min(POLL_SECONDS, deadline - now))
        result: dict[str, Any] = {
            "scanId": scan_id,
            "profile": args.profile,
            "status": status,
            "durationSeconds": round(duration, 3),
            "components": state.get("components"),
            "report": {"url": None, "dsse": None},
            "attestation": {"uuid": None},
        }
        if status != "completed":
            why = "failed" if status == "failed" else f"still {status} at the {args.timeout:g}s timeout"
            _emit(args, result, f"scan {scan_id} {why} after {duration:.1f}s; "
                                f"{result['components']} components; no report")
            return 1
        report_url = f"{status_url}/report"
        report = _object(request(client, "GET", report_url))
        dsse = report.get("dsse")
        if not isinstance(dsse, dict):
            raise CliError(f"GET {report_url}: the report has no DSSE envelope")
        result["report"] = {"url": report_url, "dsse": dsse}
        if result["components"] is None:
            result["components"] = report.get("components")
        # The lab's scanner does not attest; the stand-in does what the platform's
        # scanner -> attestor pipeline does (submit the report's DSSE envelope to the
        # attestor), so `attestor verify --uuid` has a uuid that came from this scan.
        stored = _object(request(client, "POST", f"{attestor}/api/v1/attestations", json_body=dsse))
        att_uuid = stored.get("uuid")
        if not isinstance(att_uuid, str) or not att_uuid:
            raise CliError(f"POST {attestor}/api/v1/attestations: the answer has no uuid")
        result["attestation"] = {"uuid": att_uuid}
    _emit(args, result, f"scan {scan_id} completed in {duration:.1f}s; {result['components']} components; "
                        f"attestation uuid {att_uuid}")
    return 0


# ------------------------------------------------------------------------ signer, attestor
def cmd_signer_sign(args: argparse.Namespace) -> int:
    signer = env_url("STELLAOPS_SIGNER_URL")
    settings = Settings.from_env()
    bundle = _read(args.bundle, "bundle")
    with settings.client() as client:
        answer = _object(request(client, "POST", f"{signer}/api/v1/signer/sign", content=bundle,
                                 headers={"Content-Type": "application/json"}))
    signer_meta = answer.get("signer")
    meta: dict[str, Any] = signer_meta if isinstance(signer_meta, dict) else {}
    _emit(args, answer, f"signed {meta.get('payloadType', '?')} payload sha256 {meta.get('payloadSha256', '?')} "
                        f"with key {meta.get('keyid', '?')} ({meta.get('algorithm', '?')})")
    return 0


def _verdict(args: argparse.Namespace, response: Response,
             good: Callable[[dict[str, Any]], str], bad: Callable[[str, int], str]) -> int:
    """Print a verification answer; exit 0 only for a 2xx answer with ``ok: true``.

    A non-2xx answer that still says ``ok`` (the lab attestor's 404 for an unknown uuid) is
    printed like any verdict, plus one error line on stderr naming the HTTP status.
    """
    body = answer_json(response)
    if not isinstance(body, dict) or "ok" not in body:
        if not _ok(response):
            raise http_error(response)
        raise CliError(f"{response.method} {response.url}: the answer has no 'ok' field")
    ok = body.get("ok") is True and _ok(response)
    reason = str(body.get("reason") or body.get("error") or "not ok")
    _emit(args, body, good(body) if ok else bad(reason, response.status_code))
    if not _ok(response):
        print(f"{PROG}: error: {http_error(response)}", file=sys.stderr)
    return 0 if ok else 1


def cmd_signer_verify(args: argparse.Namespace) -> int:
    signer = (base_url(args.base_url, "--base-url") if args.base_url is not None
              else base_url(os.environ.get("STELLAOPS_SIGNER_URL"), "--base-url (or STELLAOPS_SIGNER_URL)"))
    settings = Settings.from_env()
    bundle = _read(args.bundle, "bundle")
    with settings.client() as client:
        response = request(client, "POST", f"{signer}/api/v1/signer/verify", content=bundle,
                           headers={"Content-Type": "application/json"})
    return _verdict(args, response,
                    lambda body: f"signature verified: bundle {args.bundle}, key {body.get('keyid')}",
                    lambda reason, status: f"signature NOT verified: bundle {args.bundle}: {reason} (HTTP {status})")


def cmd_attestor_verify(args: argparse.Namespace) -> int:
    attestor = env_url("STELLAOPS_ATTESTOR_URL")
    uuid = args.uuid.strip()
    if not uuid:
        raise CliError("--uuid must not be empty", 2)
    settings = Settings.from_env()
    with settings.client() as client:
        response = request(client, "POST", f"{attestor}/api/v1/attestations/{quote(uuid, safe='')}/verify")
    return _verdict(args, response,
                    lambda body: f"attestation {uuid} verified: ok=true, key {body.get('keyid')}",
                    lambda reason, status: f"attestation {uuid} NOT verified: {reason} (HTTP {status})")


# ------------------------------------------------------------------------ arguments
class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and exit 2 (sub-parsers inherit this class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return number


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stellaops-lab")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output", choices=("json", "text"), default=None,
                        help="json: one JSON object on stdout; text: one line (default)")
    parser = _Parser(
        prog=PROG,
        description="LAB STAND-IN for stellaops-cli (a named stand-in, not the Stella Ops CLI): the runbook's "
                    "stellaops-cli commands, run against the local lab's HTTP API (stellaops_lab).",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()} (lab stand-in)")
    parser.add_argument("--output", dest="global_output", choices=("json", "text"), default=None,
                        help="the same as a command's --output (that one wins)")
    groups = parser.add_subparsers(dest="group", metavar="{scan,signer,attestor}")

    def group(name: str, help_text: str) -> argparse._SubParsersAction:  # type: ignore[type-arg]
        sub = groups.add_parser(name, help=help_text, description=f"{help_text} (lab stand-in)")
        return sub.add_subparsers(dest="command", metavar="COMMAND")

    def command(actions: Any, name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> Any:
        cmd = actions.add_parser(name, parents=[common], help=help_text,
                                 description=f"{help_text} (lab stand-in; configuration from the environment, "
                                             f"see {PROG} --help)")
        cmd.set_defaults(func=func)
        return cmd

    scan = group("scan", "scanner commands")
    submit = command(scan, "submit", "submit an SBOM, wait for the signed report, attest it", cmd_scan_submit)
    submit.add_argument("--profile", required=True, help="deployment profile the scan is for (recorded)")
    submit.add_argument("--sbom", required=True, type=Path, help="CycloneDX JSON SBOM file")
    submit.add_argument("--timeout", type=_positive, default=DEFAULT_SCAN_TIMEOUT, metavar="SECONDS",
                        help=f"give up waiting for completion after SECONDS (default {DEFAULT_SCAN_TIMEOUT:g})")

    signer = group("signer", "signer commands")
    sign = command(signer, "sign", "sign a bundle (DSSE envelope or raw payload) with the signer", cmd_signer_sign)
    sign.add_argument("--bundle", required=True, type=Path, help="file to sign")
    verify = command(signer, "verify", "verify a DSSE bundle with the signer", cmd_signer_verify)
    verify.add_argument("--base-url", metavar="URL", help="signer base URL (default STELLAOPS_SIGNER_URL)")
    verify.add_argument("--bundle", required=True, type=Path, help="DSSE envelope file")

    attestor = group("attestor", "attestor commands")
    att_verify = command(attestor, "verify", "re-verify a stored attestation by uuid", cmd_attestor_verify)
    att_verify.add_argument("--uuid", required=True, help="attestation uuid")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2
    func = getattr(args, "func", None)
    if func is None:
        where = f"{PROG} {args.group}" if args.group else PROG
        print(f"{where}: error: a command is required (see {where} --help)", file=sys.stderr)
        return 2
    args.output = args.output or args.global_output or "text"
    return guarded(PROG, lambda: func(args))


def guarded(prog: str, work: Callable[[], int]) -> int:
    """Run a stand-in command: an error is one ``PROG: error: ...`` line and its exit code, never a traceback."""
    try:
        return work()
    except CliError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{prog}: error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the contract is one line, never a traceback
        print(f"{prog}: error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
