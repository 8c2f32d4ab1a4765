"""nbclient runs a notebook of tunelab cells top to bottom, as `jupyter nbconvert --execute`
and CI notebook runners do: the saved notebook holds the eval table as HTML, the loss plot
as a PNG, the final state of the progress display, an error output for the failing cell,
and the cells after it ran against the same session."""

from __future__ import annotations

import base64
import os
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


ROOT = pathlib.Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
_executed: dict = {}


def needs_evcxr(path: pathlib.Path) -> bool:
    """Notebooks with Rust cells need an evcxr build of the kernel (test_rust_cells.py runs them)."""
    return nbformat.read(path, as_version=4).metadata.get("tunelab", {}).get("requires") == "evcxr"


def tutorial_notebooks() -> list[pathlib.Path]:
    paths = sorted(TUTORIALS.glob("*.ipynb")) + sorted(TUTORIALS.glob("*/*.ipynb"))
    return [p for p in paths if not needs_evcxr(p)]


def prepared(path: pathlib.Path):
    """The notebook at `path` with its outputs cleared (the run must produce them, not the
    committed copy) and the assets' folder pointed at $TUNELAB_ASSETS when that is set."""
    nb = nbformat.read(path, as_version=4)
    assets = os.environ.get("TUNELAB_ASSETS")
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            if assets:  # the tutorials name ~/.cache/tunelab/assets, fetch_assets.py's default
                cell.source = cell.source.replace("~/.cache/tunelab/assets", assets)
    return nb


def client(nb, path: pathlib.Path) -> NotebookClient:
    return NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(path.parent)}})


def executed(path: pathlib.Path):
    """The notebook at `path`, executed once per test session as `jupyter nbconvert --execute`
    runs it: errors fail it, except in cells tagged `raises-exception` (nbclient's rule)."""
    if path not in _executed:
        nb = prepared(path)
        client(nb, path).execute()
        _executed[path] = nb
    return _executed[path]


def execute_all(paths: list[pathlib.Path], at_once: int = 2):
    """Executes the notebooks of `paths` not run yet, `at_once` kernels at a time, into the
    cache `executed` reads. A kernel is its own process and keeps about 1.3 cores busy, so on
    CI's two cores a pair of notebooks finishes sooner than two in a row."""
    import asyncio

    async def run_all():
        gate = asyncio.Semaphore(at_once)

        async def one(path):
            async with gate:
                nb = prepared(path)
                await client(nb, path).async_execute()
                _executed[path] = nb

        await asyncio.gather(*(one(p) for p in paths if p not in _executed))

    asyncio.run(run_all())


def text_of(cell) -> str:
    """What a code cell showed, as text: streams, tables and results (text/plain), errors."""
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type == "error":
            parts.append(f"{o.ename}: {o.evalue}\n")
        elif "text/plain" in o.get("data", {}):
            parts.append(o.data["text/plain"] + "\n")
    return "".join(parts)


def pngs(cell) -> list[bytes]:
    return [base64.b64decode(o.data["image/png"]) for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def regression_evals(nb) -> list[dict]:
    """Each regression `eval` table of the notebook: row name → (learned, closed form)."""
    evals = []
    for cell in code_cells(nb):
        lines = iter(text_of(cell).splitlines())
        for line in lines:
            if not line.startswith("eval on "):
                continue
            rows = {}
            for row in lines:
                words = row.split()
                try:
                    rows[" ".join(words[:-2])] = (float(words[-2]), float(words[-1]))
                except (ValueError, IndexError):
                    if row.startswith("test MAE") or not words:
                        break
            evals.append(rows)
    return evals


def assert_png(data: bytes):
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_tutorial_notebooks_run_without_errors():
    """Every notebook under tutorials/ runs top to bottom, and each has an inline plot; the
    committed copy is stored executed (every code cell ran, in order)."""
    notebooks = tutorial_notebooks()
    assert len(notebooks) >= 4, notebooks
    execute_all(notebooks)
    for path in notebooks:
        if path.parent != TUTORIALS:  # the walkthroughs' tutorials, tutorials/NN-name/
            committed = nbformat.read(path, as_version=4)
            counts = [c.execution_count for c in code_cells(committed)]
            assert counts == list(range(1, len(counts) + 1)), f"{path.name} is not stored executed: {counts}"
            assert path.stat().st_size < 1_000_000, f"{path.name} is over 1 MB"
        nb = executed(path)
        images = [png for c in code_cells(nb) for png in pngs(c)]
        assert images, f"{path.name}: no inline plot"
        for png in images:
            assert_png(png)


def test_tutorial_notebooks_match_their_scripts():
    """A tutorial's notebook is built from its .tune script by tutorials/make_notebook.py: the
    committed cells (sources, kinds and tags) are what the script gives today."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_notebook", TUTORIALS / "make_notebook.py")
    make_notebook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_notebook)
    scripts = sorted(TUTORIALS.glob("*/*.tune"))
    assert scripts
    for script in scripts:
        if script.stem.endswith("-full"):  # the full setting of a tutorial is a script only
            continue
        committed = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
        built = make_notebook.notebook_of(script.read_text())
        shape = lambda nb: [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]  # noqa: E731
        assert shape(committed) == shape(built), f"{script.name}: re-run tutorials/make_notebook.py {script}"


def test_tutorial_05_outcomes():
    """Walkthrough 5: SGD recovers the line y = 3x + 2 and the closed form, the stages lower the
    loss, fine-tuning beats training from scratch, and the loss and surface plots are inline."""
    nb = executed(TUTORIALS / "05-linear-regression" / "05-linear-regression.ipynb")
    evals = regression_evals(nb)
    assert len(evals) == 5, evals
    (w, w_exact), (b, b_exact) = evals[0]["w"], evals[0]["b"]
    assert abs(w - 3) < 0.05 and abs(b - 2) < 0.05 and abs(w - w_exact) < 0.01 and abs(b - b_exact) < 0.01
    mse, mse_exact = evals[0]["test MSE"]
    assert mse < 1.01 * mse_exact
    assert evals[2]["test MSE"][0] < 0.1 * evals[1]["test MSE"][0], "domain adaptation lowers the loss"
    assert evals[3]["test MSE"][0] < 0.5 * evals[4]["test MSE"][0], "fine-tuning beats training from scratch"
    cells = {c.source: c for c in code_cells(nb)}
    assert text_of(cells["step"]).count("update = −lr × gradient") == 1
    assert "epoch 100/100" in text_of(cells["fit epochs=100"])
    for source in ["plot loss", "plot surface", "plot fit"]:
        assert len(pngs(cells[source])) == 1, source


def test_tutorial_06_outcomes():
    """The teachers' notebook: lr 0.5 reaches the optimum, lr 1.1 grows the loss while finite,
    momentum beats plain SGD, and the lr 2.5 cell shows the NaN/inf guard's error, after which
    the notebook went on (the next cell's `undo` ran)."""
    nb = executed(TUTORIALS / "06-teaching-gradient-descent" / "06-teaching-gradient-descent.ipynb")
    evals = regression_evals(nb)
    assert len(evals) == 5, evals
    assert evals[0]["test MSE"][0] > 1 and abs(evals[1]["w"][0] - evals[1]["w"][1]) < 1e-3
    assert evals[4]["test MSE"][0] < 0.1 * evals[3]["test MSE"][0], "momentum"
    cells = code_cells(nb)
    diverging = next(c for c in cells if "lr=1.1" in c.source)
    losses = [float(l.split("train loss")[1].split()[0]) for l in text_of(diverging).splitlines() if l.startswith("epoch")]
    assert losses[-1] > 50 * losses[0] and losses[-1] < 1e30, losses
    (guarded,) = [c for c in cells if "raises-exception" in c.metadata.get("tags", [])]
    errors = [o for o in guarded.outputs if o.output_type == "error"]
    assert len(errors) == 1 and "loss became inf" in errors[0].evalue, text_of(guarded)
    assert "undid `fit epochs=200" in text_of(cells[cells.index(guarded) + 1])
    assert sum(len(pngs(c)) for c in cells) == 6


def test_tutorial_03_outcomes():
    """Walkthrough 3, quick setting: light fine-tuning of SmolLM2 (last 2 blocks + final norm)
    on 40 Tang poems lowers the validation perplexity by at least 25%, the before/after samples
    are shown side by side, and the GPT-2 path runs."""
    nb = executed(TUTORIALS / "03-gpt2-poetry" / "03-gpt2-poetry.ipynb")
    cells = code_cells(nb)
    text = "".join(text_of(c) for c in cells)
    assert "trainable 7080768/134515008 parameters (5.3%)" in text
    ppl = [float(l.split()[-1]) for l in text.splitlines() if l.startswith("perplexity")]
    assert len(ppl) == 3 and ppl[0] > 60 and ppl[1] < 0.75 * ppl[0], ppl
    (compare,) = [c for c in cells if c.source.startswith("compare generate")]
    shown = text_of(compare)  # the title, then the before and after samples
    assert "snapshot 'before' (step 0)" in shown and "now (step 11)" in shown and shown.count("床前明月光，") == 3
    assert "model: GPT-2 4 layers" in text
    (plot,) = [c for c in cells if "plot loss" in c.source]
    assert len(pngs(plot)) == 1


def classification_evals(text: str) -> list[tuple[float, float]]:
    """(accuracy, loss) of each classification `eval` in a notebook's text, in order."""
    evals = []
    for line in text.splitlines():
        if line.startswith("eval on ") and ": accuracy " in line:
            acc, loss = line.split(": accuracy ")[1].split(", loss ")
            evals.append((float(acc), float(loss)))
    return evals


def test_tutorial_04_outcomes():
    """Walkthrough 4, quick setting: MiniLM fine-tuned on 540 movie reviews reaches 65% on the
    270 held-out ones with a per-class report; accumulation, LoRA and the plots are shown."""
    nb = executed(TUTORIALS / "04-bert-imdb-sentiment" / "04-bert-imdb-sentiment.ipynb")
    cells = code_cells(nb)
    text = "".join(text_of(c) for c in cells)
    ((acc, loss),) = classification_evals(text)
    assert acc >= 0.65 and loss < 0.66, (acc, loss)
    assert "macro avg" in text and "weighted avg" in text
    assert "undid `fit steps=2 batch=8 accumulate=2`: back to step 34" in text
    assert "(0.33%) parameters trainable" in text
    (fit,) = [c for c in cells if c.source.startswith("fit epochs=1")]
    progress = [o for o in fit.outputs if o.output_type == "display_data" and "text/plain" in o.data]
    assert progress and progress[0].data["text/plain"].endswith("done"), "the progress bar's final state"
    for source in ["fit epochs=1", "plot lr", "eval"]:
        (cell,) = [c for c in cells if c.source.startswith(source)]
        assert len(pngs(cell)) == 1, source


def test_tutorial_02_outcomes():
    """Walkthrough 2, quick setting: full fine-tuning beats head-only, the runs are side by side
    in a table and one plot, and the saved model, loaded back, gives the same test results."""
    nb = executed(TUTORIALS / "02-bert-full-vs-partial" / "02-bert-full-vs-partial.ipynb")
    cells = code_cells(nb)
    text = "".join(text_of(c) for c in cells)
    full, head, deployed = classification_evals(text)
    assert full[0] >= 0.65 and full[0] > head[0] + 0.1, (full, head)
    assert deployed == full
    assert "trainable 770/22713986 parameters" in text
    (compare,) = [c for c in cells if c.source.startswith("plot loss compare=")]
    assert "the runs side by side" in text_of(compare) and len(pngs(compare)) == 1


def test_tutorial_01_outcomes():
    """Walkthrough 1, quick setting: masked-LM pretraining with the bert-base-chinese vocab
    lowers the loss by 3 nats, Adam 1e-3 reaches 65% on the held-out reviews and beats 1e-4
    and SGD, early stopping keeps the best epoch, and both overlay plots are inline."""
    nb = executed(TUTORIALS / "01-bert-chinese" / "01-bert-chinese.ipynb")
    cells = code_cells(nb)
    text = "".join(text_of(c) for c in cells)
    mlm = [float(l.split()[-1]) for l in text.splitlines() if l.startswith("masked-LM loss")]
    assert len(mlm) == 2 and mlm[0] - mlm[1] >= 3.0, mlm
    acc = [e[0] for e in classification_evals(text)]
    assert len(acc) == 8, acc
    assert acc[2] >= 0.65 and acc[2] > acc[3] + 0.1 and acc[2] > acc[6] + 0.1, acc
    assert "restored the weights of epoch" in text
    compares = [c for c in cells if c.source.startswith("plot loss compare=") or "\nplot loss compare=" in c.source]
    assert len(compares) == 2 and all(len(pngs(c)) == 1 for c in compares)
