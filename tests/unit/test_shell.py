import sys

import pytest

from cutover_lib.errors import CommandFailed, ToolMissing
from cutover_lib.config.secrets import register_secret
from cutover_lib.adapters.shell import render, run_command

CANARY = "canary-shell-9f8e7d"


def test_render_quotes_and_masks():
    register_secret(CANARY)
    assert render(["mongodump", "--uri", f"mongodb://u:{CANARY}@h/", "--out", "/backups/launch x"]) == \
        "mongodump --uri mongodb://u:***@h/ --out '/backups/launch x'"
    assert render(["docker", "compose", "ps"], {"DOCKER_HOST": "ssh://ops@n1"}) == \
        "DOCKER_HOST=ssh://ops@n1 docker compose ps"


def test_output_streams_masked_to_log(tmp_path):
    register_secret(CANARY)
    log = tmp_path / "step.log"
    res = run_command([sys.executable, "-c", f"print('a'); print('{CANARY}'); import sys; print('e', file=sys.stderr)"],
                      timeout=10, log_path=log)
    assert res.ok and res.tail == ["a", "***", "e"]
    text = log.read_text()
    assert CANARY not in text and "# exit 0" in text and text.startswith("$ ")


def test_non_zero_exit_raises_with_tail():
    with pytest.raises(CommandFailed, match=r"exited 3; last output: boom"):
        run_command([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], timeout=10)
    res = run_command([sys.executable, "-c", "raise SystemExit(3)"], timeout=10, check=False)
    assert res.returncode == 3 and not res.ok


def test_timeout_kills_process_group():
    with pytest.raises(CommandFailed, match=r"timed out after 0.5s"):
        run_command([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(30)"], timeout=0.5)


def test_missing_program_is_clear():
    with pytest.raises(ToolMissing, match=r"helm is not installed") as ei:
        run_command(["helm", "version"], timeout=5, env={"PATH": "/nonexistent"})
    assert "install helm" in ei.value.hint


def test_secret_in_env_never_in_output(tmp_path):
    register_secret(CANARY)
    log = tmp_path / "env.log"
    with pytest.raises(CommandFailed) as ei:
        run_command([sys.executable, "-c", "import os; print(os.environ['TOKEN']); raise SystemExit(1)"],
                    timeout=10, env={"TOKEN": CANARY}, log_path=log)
    assert CANARY not in str(ei.value) and CANARY not in log.read_text()
