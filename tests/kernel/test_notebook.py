"""nbclient runs a notebook of tunelab cells top to bottom, as `jupyter nbconvert --execute`
and CI notebook runners do: the saved notebook holds the eval table as HTML, the loss plot
as a PNG, the final state of the progress display, an error output for the failing cell,
and the cells after it ran against the same session."""

from __future__ import annotations

import base64
import pathlib

import nbformat
from nbclient import NotebookClient

CELLS = [
    "data synthetic linear n=1000 w=3 b=2 noise=0.1 split=0.8/0.1/0.1",
    "load linear init=zeros\noptimizer sgd lr=0.1",
    "fit epochs=10",
    "eval",
    "plot loss",
    "fit epoch=3",  # a typo: an error output, and the notebook goes on
    "show history",
]


def test_a_notebook_runs_top_to_bottom(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Linear regression with tunelab")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in CELLS]
    NotebookClient(nb, kernel_name="tunelab", timeout=120, allow_errors=True).execute()
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.language_info.name == "tunelab"
    out = {c.source: c.outputs for c in nb.cells if c.cell_type == "code"}

    # The progress display was updated in place to its final state.
    progress = [o for o in out["fit epochs=10"] if o.output_type == "display_data"]
    assert len(progress) == 1 and progress[0].data["text/plain"].endswith("250/250 steps · done")

    tables = [o for o in out["eval"] if "text/html" in o.get("data", {})]
    assert tables and tables[0].data["text/html"].startswith("<table")

    (plot,) = out["plot loss"]
    assert plot.output_type == "display_data"
    assert base64.b64decode(plot.data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"

    (error,) = out["fit epoch=3"]
    assert error.output_type == "error" and error.ename == "TunelabError"

    history = "".join(o.data["text/plain"] for o in out["show history"] if "data" in o)
    assert "10 epochs, 250 steps" in history
    assert [c.execution_count for c in nb.cells if c.cell_type == "code"] == list(range(1, len(CELLS) + 1))


def test_the_tutorial_notebooks_run_without_errors():
    """The notebooks README.md sends new users to, as `jupyter nbconvert --execute` runs them."""
    notebooks = sorted((pathlib.Path(__file__).resolve().parents[2] / "tutorials").glob("*.ipynb"))
    assert notebooks, "no tutorials/*.ipynb"
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(path.parent)}}).execute()
        images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        assert images, f"{path.name}: no inline plot"
