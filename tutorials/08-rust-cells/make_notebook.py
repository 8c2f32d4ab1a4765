#!/usr/bin/env python3
"""Builds 08-rust-cells.ipynb and executes it with the tunelab kernel, which must be an
evcxr build (`cargo build --features evcxr`, then `target/debug/tunelab kernel install --user`).

    python3 tutorials/08-rust-cells/make_notebook.py
"""

from __future__ import annotations

import pathlib

import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).resolve().parent
md = nbformat.v4.new_markdown_cell
code = nbformat.v4.new_code_cell

CELLS = [
    md(
        "# Rust where the DSL ends\n\n"
        "The tunelab language covers loading, freezing, fitting and plotting. When you need "
        "something it does not say — a statistic of your own, a data transform — a `%%rust` cell "
        "runs Rust right here, in the same kernel, through [evcxr](https://github.com/evcxr/evcxr). "
        "Variables and functions persist from one Rust cell to the next, and a small helper "
        "module, `tunelab_bridge`, carries data across.\n\n"
        "Rust cells need a tunelab built with the `evcxr` feature and cargo on `PATH`:\n\n"
        "```\ncargo install --path . --features evcxr\ntunelab kernel install --user\n```\n\n"
        "The first Rust cell takes a few seconds longer: evcxr compiles its runtime once."
    ),
    md("## 1. Train something in tunelab\n\nA linear model on synthetic data, `y = 3x + 2 + noise`."),
    code(
        "data synthetic linear n=500 w=3 b=2 noise=0.5 split=0.8/0.2\n"
        "load linear init=zeros\noptimizer sgd lr=0.05\nfit epochs=5 batch=20"
    ),
    md(
        "`export history` writes every number of the training record — each update's loss and "
        "learning rate, each epoch's losses, each `eval` — as CSV rows "
        "`kind,step,epoch,split,metric,value` under `tunelab-export/`."
    ),
    code("export history"),
    md(
        "## 2. Read it from Rust\n\n"
        "A function defined in one Rust cell…"
    ),
    code(
        "%%rust\n"
        "/// Mean of each window of `k` consecutive values.\n"
        "fn moving_average(xs: &[f64], k: usize) -> Vec<f64> {\n"
        "    xs.windows(k).map(|w| w.iter().sum::<f64>() / k as f64).collect()\n"
        "}"
    ),
    md("…is there in the next. `tunelab_bridge::losses()` reads the exported per-update losses."),
    code(
        "%%rust\n"
        "let losses: Vec<f64> = tunelab_bridge::losses().into_iter().map(|(_, l)| l).collect();\n"
        "let smooth = moving_average(&losses, 20);\n"
        "println!(\"{} updates; loss smoothed over 20 updates: first {:.3}, last {:.3}\",\n"
        "         losses.len(), smooth[0], smooth[smooth.len() - 1]);"
    ),
    md(
        "## 3. Hand a data set back\n\n"
        "A Rust cell can build data the DSL cannot — here a line `y = 4x − 1` with a deterministic "
        "wiggle — and `tunelab_bridge::write_dataset` writes it where `data` can load it."
    ),
    code(
        "%%rust\n"
        "let rows: Vec<Vec<f64>> = (0..400)\n"
        "    .map(|i| { let x = i as f64 / 100.0 - 2.0; vec![x, 4.0 * x - 1.0 + 0.1 * (7.0 * x).sin()] })\n"
        "    .collect();\n"
        "let path = tunelab_bridge::write_dataset(\"line\", &[\"x\", \"y\"], &rows);\n"
        "println!(\"wrote {} rows to {}\", rows.len(), path.rsplit('/').next().unwrap());"
    ),
    code(
        "data tunelab-export/line.csv x=x y=y split=0.8/0.2\n"
        "load linear init=zeros\noptimizer sgd lr=0.1\nfit epochs=20 batch=20\neval\nplot loss"
    ),
    md(
        "The learned weight and bias land close to 4 and −1.\n\n"
        "## 4. The other way round: tunelab inside an evcxr notebook\n\n"
        "In a plain evcxr_jupyter notebook (the Rust kernel), tunelab is a library. "
        "`Session::exec` runs tunelab commands and returns their output, which evcxr shows as "
        "text, HTML tables and PNG charts:\n\n"
        "```rust\n"
        ":dep tunelab = { path = \"/path/to/tunelab\" }\n"
        "let mut s = tunelab::Session::new();\n"
        "s.exec(\"data synthetic linear n=200\\nload linear\\nfit epochs=3\")?;\n"
        "s.exec(\"plot loss\")?\n"
        "```\n\n"
        "(The first `:dep tunelab` compiles tunelab and its dependencies, a few minutes; the "
        "test suite runs exactly this cell: tests/kernel/test_rust_cells.py.)"
    ),
]


def main():
    nb = nbformat.v4.new_notebook()
    nb.cells = CELLS
    nb.metadata["kernelspec"] = {"display_name": "tunelab", "language": "tunelab", "name": "tunelab"}
    nb.metadata["tunelab"] = {"requires": "evcxr"}
    NotebookClient(nb, kernel_name="tunelab", timeout=600, resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, HERE / "08-rust-cells.ipynb")


if __name__ == "__main__":
    main()
