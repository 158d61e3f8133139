"""Write a runbook notebook from a compact description (markdown and code cells).

Used while authoring: ``python tools/nbgen.py`` regenerates every notebook under
``notebooks/`` from ``tools/notebooks.py``, outputs stripped, with a ``parameters`` cell.
Editing the notebooks directly in JupyterLab is fine too; then keep outputs stripped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent

PARAMS = '''# Parameters (papermill replaces this cell; only plain values, never a secret)
env = "local"
run_dir = ""        # empty: stepping through in JupyterLab creates an interactive run folder
dry_run = False
resume = False
notebook = "{name}"
overrides = ""
confirm = ""
with_reads = True
waive = ""          # gates whose missing approvals are waived (not allowed in prod)
root = ""'''

OPEN = '''from cutover_lib import Runbook
{imports}
rb = Runbook.open(env, run_dir, dry_run=dry_run, resume=resume, notebook=notebook,
                  overrides=overrides, confirm=confirm, with_reads=with_reads, root=root, waive=waive)
print(f"run {{rb.run.run_id}}: environment {{rb.env.name}} ({{rb.env.tier}}), release {{rb.env.release}}")'''


def build(name: str, title: str, intro: str, imports: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells.append(new_markdown_cell(f"# {title}\n\n{intro.strip()}"))
    p = new_code_cell(PARAMS.format(name=name))
    p.metadata["tags"] = ["parameters"]
    nb.cells.append(p)
    nb.cells.append(new_code_cell(OPEN.format(imports=imports)))
    for kind, src in cells:
        nb.cells.append(new_markdown_cell(src.strip()) if kind == "md" else new_code_cell(src.strip()))
    nb.cells.append(new_code_cell("rb.close()  # seals an interactive run; under `cutover run` the runner seals it"))
    for i, c in enumerate(nb.cells):
        c["id"] = f"{Path(name).stem[:2]}-{i:02d}"
    return nb


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from notebooks import NOTEBOOKS  # type: ignore[import-not-found]

    for name, spec in NOTEBOOKS.items():
        nb = build(name, **spec)
        nbformat.validate(nb)
        nbformat.write(nb, str(ROOT / "notebooks" / name))
        print("wrote notebooks/" + name)


if __name__ == "__main__":
    main()
