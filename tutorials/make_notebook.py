#!/usr/bin/env python3
"""Builds a tutorial's notebook from its .tune script, so the two can never drift apart, and
executes it with the tunelab kernel (nbclient) so the committed notebook shows its outputs.

    tutorials/make_notebook.py tutorials/05-linear-regression/05-linear-regression.tune

The script is the source. In it:
  `#: text`   a line of markdown (consecutive ones make one markdown cell; `#:` alone is a
              blank line); `tunelab run` reads them as comments, so the script carries the
              same narrative;
  `#%%`       ends one code cell and starts the next; `#%% raises-exception` tags the next
              cell so the notebook shows its error and goes on (nbclient's convention);
  `#> cmd`    a command that only the notebook runs (a comment for `tunelab run`, which stops at
              the first error: used for the cell that demonstrates an error);
  anything else (commands, ordinary `#` comments) goes into the current code cell.

Needs nbformat and nbclient with the tunelab kernel installed (tests/kernel/requirements.txt;
`tunelab kernel install --user`). `--no-execute` writes the notebook without outputs.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import nbformat


def cells_of(script: str) -> list:
    """The notebook cells of a .tune script, in order."""
    cells: list = []
    md: list[str] = []
    code: list[str] = []
    tags: list[str] = []

    def flush_md():
        if md:
            cells.append(nbformat.v4.new_markdown_cell("\n".join(md).strip("\n")))
            md.clear()

    def flush_code():
        nonlocal tags
        text = "\n".join(code).strip("\n")
        if text:
            cell = nbformat.v4.new_code_cell(text)
            if tags:
                cell.metadata["tags"] = tags
            cells.append(cell)
        code.clear()
        tags = []

    for line in script.splitlines():
        if line.startswith("#:"):
            flush_code()
            md.append(line[3:] if line.startswith("#: ") else line[2:])
        elif line.startswith("#%%"):
            flush_md()
            flush_code()
            tags = line[3:].split()
        else:
            flush_md()
            code.append(line[3:] if line.startswith("#> ") else line)
    flush_md()
    flush_code()
    return cells


def notebook_of(script: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "tunelab", "language": "tunelab", "name": "tunelab"}
    nb.metadata["language_info"] = {"name": "tunelab", "file_extension": ".tune", "mimetype": "text/x-tunelab"}
    nb.cells = cells_of(script)
    for i, cell in enumerate(nb.cells):  # stable ids keep re-generated notebooks' diffs small
        cell["id"] = f"cell-{i:02d}"
    return nb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("script", type=pathlib.Path)
    ap.add_argument("--no-execute", action="store_true")
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()
    nb = notebook_of(args.script.read_text())
    if not args.no_execute:
        from nbclient import NotebookClient

        folder = str(args.script.resolve().parent)
        NotebookClient(nb, timeout=args.timeout, kernel_name="tunelab", record_timing=False, resources={"metadata": {"path": folder}}).execute()
    for cell in nb.cells:
        merged: list = []
        for o in cell.get("outputs", []):
            if "image/png" in o.get("data", {}):  # keep the PNG of a plot, drop its SVG twin
                o["data"].pop("image/svg+xml", None)
            last = merged[-1] if merged else None
            if o.get("output_type") == "stream" and last and last.get("output_type") == "stream" and last.name == o.name:
                last.text += o.text  # one block of text per stream, as nbconvert stores it
            else:
                merged.append(o)
        if cell.cell_type == "code":
            cell.outputs = merged
    out = args.script.with_suffix(".ipynb")
    nbformat.write(nb, out)
    size = out.stat().st_size
    print(f"{out}: {len(nb.cells)} cells, {size / 1024:.0f} KiB")
    return 0 if size < 1_000_000 else 1


if __name__ == "__main__":
    sys.exit(main())
