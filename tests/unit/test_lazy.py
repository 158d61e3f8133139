"""cutover_lib.lazy: two imports the tool never needs at start are deferred, not dropped (issue 13).

Each case runs in a fresh interpreter: what is deferred depends on what was imported before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = """
import json, sys
{imports}
print(json.dumps({{"stand_ins": sorted(n for n in ("httpx._main", "rfc3987_syntax")
                                     if type(sys.modules.get(n)).__name__ == "_Deferred"),
                  "loaded": sorted(n for n in ("rich.syntax", "pygments.lexers", "click", "lark")
                                   if n in sys.modules)}}))
"""


def test_importing_the_tool_then_httpx_and_jsonschema_loads_neither_cli_nor_grammar() -> None:
    seen = _fresh(PROBE.format(imports="import cutover_lib, httpx, jsonschema, nbformat"))
    assert seen == {"stand_ins": ["httpx._main", "rfc3987_syntax"], "loaded": []}


def test_the_deferred_functions_are_the_real_ones_at_first_use() -> None:
    code = """
import json, sys, cutover_lib, httpx, jsonschema
checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
v = jsonschema.Draft202012Validator({"format": "iri"}, format_checker=checker)
iri = [v.is_valid("https://scanner.example/ü"), v.is_valid("no scheme here")]
sys.argv = ["httpx", "--help"]
try:
    httpx.main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"iri": iri, "cli_exit": code, "real": [type(sys.modules[n]).__name__ for n in
                                                          ("rfc3987_syntax", "httpx._main")]}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"iri": [True, False], "cli_exit": 0, "real": ["module", "module"]}
    assert "Usage: httpx" in out.stdout  # httpx's own command line, as its console script runs it


@pytest.mark.parametrize("first", ["import httpx, jsonschema", "import httpx._main"])
def test_modules_already_loaded_are_left_as_they_are(first: str) -> None:
    seen = _fresh(PROBE.format(imports=f"{first}\nimport cutover_lib"))
    assert "httpx._main" not in seen["stand_ins"]
