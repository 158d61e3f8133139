"""``cutover --help``, pre-rendered (see entry.py).  Regenerate after changing the commands:

    .venv/bin/python -m cutover_lib.cli.help

``tests/unit/test_cli.py`` fails, naming that command, when this text and typer's differ.
"""

TOP_HELP = (
    'Usage: cutover [OPTIONS] COMMAND [ARGS]...\n'
    '\n'
    '  Run the Stella Ops launch cutover runbook and keep its evidence.\n'
    '\n'
    'Options:\n'
    '  --help  Show this message and exit.\n'
    '\n'
    'Commands:\n'
    "  run        Execute a phase's notebooks with papermill into a new evidence...\n"
    '  plan       Dry-run a phase: every mutating action is recorded as planned...\n'
    '  verify     Re-hash a run folder, check its ledger chain and its signed...\n'
    "  key        Print this operator's public key (made on first use), to add...\n"
    '  timeline   Print the Section 2 timeline: the UTC time of every activity,...\n'
    '  schedule   Write the Section 2 timeline as jobs for systemd, cron or...\n'
    "  bridge     Keep #launch-bridge updated between slots: post the change's...\n"
    '  approve    Record an approval (or rejection) of a gate for the...\n'
    "  approvals  List the approvals recorded for the environment's change, gate...\n"
    '  unlock     Break a stale run lock (only when its process is gone); the...\n'
    '  params     Inspect and validate environment params.\n'
    '  lab        The lab: a local stand-in Stella Ops stack (one process per...\n'
)


def render() -> str:
    """The top-level help exactly as typer prints it for ``cutover --help``."""
    from typer.testing import CliRunner

    from .app import app

    result = CliRunner().invoke(app, ["--help"], prog_name="cutover", env={"COLUMNS": "200"})
    return result.output


if __name__ == "__main__":
    import pathlib
    import re

    path = pathlib.Path(__file__)
    text = path.read_text()
    body = "".join(f"    {line!r}\n" for line in render().splitlines(keepends=True))
    text = re.sub(r"TOP_HELP = .*?\n\n\n", lambda m: f"TOP_HELP = (\n{body})\n\n\n", text, count=1, flags=re.S)
    path.write_text(text)
    print(f"wrote {path}")
