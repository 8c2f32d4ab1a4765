"""`%%rust` cells (evcxr) through the tunelab kernel, with real Jupyter clients.

These need a tunelab built with `--features evcxr`; TUNELAB_EVCXR_BIN names it
(scripts/test.sh builds it after the other stages). Without it the module checks only that
the default build says how to turn Rust cells on.
"""

from __future__ import annotations

import base64
import os
import pathlib
import re

import pytest

from conftest import ROOT, RawKernel, execute, stderr, stdout
from test_notebook import code_cells, executed, pngs, text_of

EVCXR_BIN = os.environ.get("TUNELAB_EVCXR_BIN")
# The first Rust cell compiles evcxr's runtime crate; `:dep tunelab` compiles tunelab
# (~25 min on 2 busy cores at opt-level 2, measured 2026-12-03).
SLOW = 600


@pytest.fixture
def rust_kernel(tmp_path, monkeypatch):
    if not EVCXR_BIN:
        pytest.skip("TUNELAB_EVCXR_BIN is not set (scripts/test.sh builds the evcxr binary)")
    monkeypatch.setenv("TUNELAB_BIN", EVCXR_BIN)
    monkeypatch.setenv("TUNELAB_EXPORT_DIR", str(tmp_path / "export"))
    monkeypatch.chdir(tmp_path)
    k = RawKernel(tmp_path)
    yield k
    k.close()


def error_text(reply) -> str:
    return reply["content"].get("evalue", "") + "\n".join(reply["content"].get("traceback", []))


def test_default_build_says_how_to_turn_rust_cells_on(kernel):
    if EVCXR_BIN and EVCXR_BIN == os.environ.get("TUNELAB_BIN"):
        pytest.skip("the kernelspec points at an evcxr build")
    _, kc = kernel
    reply, _ = execute(kc, "%%rust\nlet x = 1;")
    assert reply["content"]["status"] == "error"
    assert "--features evcxr" in error_text(reply)
    # The session goes on.
    reply, msgs = execute(kc, "seed 3")
    assert reply["content"]["status"] == "ok", error_text(reply)


def test_rust_cells_share_state_and_read_the_exported_history(rust_kernel):
    kc = rust_kernel.kc
    reply, msgs = execute(
        kc,
        "data synthetic linear n=200 w=3 b=2 noise=0.1 split=0.8/0.2\nload linear init=zeros\n"
        "optimizer sgd lr=0.05\nfit epochs=4 batch=20\nexport history",
    )
    assert reply["content"]["status"] == "ok", error_text(reply)
    assert "exported history" in stdout(msgs)
    # The session's own figure: what `fit` printed for its last epoch.
    printed = float(re.search(r"last epoch train loss ([\d.eE+-]+)", stdout(msgs)).group(1))

    # A function in one Rust cell, called in the next: evcxr keeps the state.
    reply, msgs = execute(kc, "%%rust\nfn mean(xs: &[f64]) -> f64 { xs.iter().sum::<f64>() / xs.len() as f64 }", timeout=SLOW)
    assert reply["content"]["status"] == "ok", error_text(reply) + rust_kernel.log()
    reply, msgs = execute(
        kc,
        "%%rust\n"
        "let losses: Vec<f64> = tunelab_bridge::losses().iter().map(|(_, l)| *l).collect();\n"
        "let last_epoch: Vec<f64> = tunelab_bridge::history().iter()\n"
        "    .filter(|r| r.kind == \"epoch\" && r.metric == \"train_loss\").map(|r| r.value).collect();\n"
        'println!("steps={} mean={:.9} last_epoch={:.9}", losses.len(), mean(&losses), last_epoch[last_epoch.len() - 1]);',
        timeout=SLOW,
    )
    assert reply["content"]["status"] == "ok", error_text(reply)
    m = re.search(r"steps=(\d+) mean=([\d.eE+-]+) last_epoch=([\d.eE+-]+)", stdout(msgs))
    assert m, stdout(msgs) + stderr(msgs)
    steps, mean, last_epoch = int(m.group(1)), float(m.group(2)), float(m.group(3))
    assert steps == 4 * 160 // 20

    # The session's own values: its step losses (`show history`-free: the exported file is
    # read independently here) and the train loss the last epoch line printed.
    csv = (pathlib.Path(os.environ["TUNELAB_EXPORT_DIR"]) / "history.csv").read_text().splitlines()
    rows = [l.split(",") for l in csv[1:]]
    own = [float(r[5]) for r in rows if r[0] == "step" and r[4] == "loss"]
    assert abs(mean - sum(own) / len(own)) < 1e-8
    reply, msgs = execute(kc, "show history")
    assert reply["content"]["status"] == "ok", error_text(reply)

    # A compile error is shown with evcxr's diagnostics, and the state survives it.
    reply, _ = execute(kc, "%%rust\nlet y: u32 = \"no\";", timeout=SLOW)
    assert reply["content"]["status"] == "error"
    assert "mismatched types" in error_text(reply), error_text(reply)
    reply, msgs = execute(kc, "%%rust\nprintln!(\"{}\", mean(&[1.0, 2.0]));", timeout=SLOW)
    assert reply["content"]["status"] == "ok", error_text(reply)
    assert stdout(msgs).strip() == "1.5"
    # The statistic the Rust cell computed from the export is the session's own number.
    assert abs(last_epoch - printed) <= 1e-5 * printed, (last_epoch, printed)


def test_tunelab_as_a_library_displays_charts_in_evcxr(rust_kernel):
    kc = rust_kernel.kc
    dep = f':dep tunelab = {{ path = "{ROOT}" }}'
    reply, msgs = execute(
        kc,
        # Unoptimised: the build of tunelab inside evcxr is most of this test's time.
        "%%rust\n:opt 0\n" + dep + "\n"
        "let mut s = tunelab::Session::new();\n"
        's.exec("data synthetic linear n=200 w=3 b=2 noise=0.1\\nload linear init=zeros\\noptimizer sgd lr=0.1\\nfit epochs=3 batch=20").unwrap();\n'
        's.exec("plot loss").unwrap()',
        timeout=1800,
    )
    assert reply["content"]["status"] == "ok", error_text(reply) + rust_kernel.log()
    images = [m for m in msgs if m["msg_type"] in ("display_data", "execute_result") and "image/png" in m["content"]["data"]]
    assert images, [m["msg_type"] for m in msgs]
    png = base64.b64decode(images[0]["content"]["data"]["image/png"])
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_the_rust_cells_tutorial_runs():
    """tutorials/08-rust-cells, executed with the kernelspec scripts/test.sh installs from the
    evcxr build: both directions of the bridge, and the data set a Rust cell wrote trains."""
    if not EVCXR_BIN:
        pytest.skip("TUNELAB_EVCXR_BIN is not set (scripts/test.sh builds the evcxr binary)")
    nb = executed(ROOT / "tutorials" / "08-rust-cells" / "08-rust-cells.ipynb")
    text = "".join(text_of(c) for c in code_cells(nb))
    m = re.search(r"(\d+) updates; loss smoothed over 20 updates: first ([\d.]+), last ([\d.]+)", text)
    assert m and int(m.group(1)) == 100 and float(m.group(3)) < float(m.group(2)) / 5, text
    w = re.search(r"^w\s+(-?[\d.]+)", text, re.M)
    b = re.search(r"^b\s+(-?[\d.]+)", text, re.M)
    assert w and abs(float(w.group(1)) - 4) < 0.05 and b and abs(float(b.group(1)) + 1) < 0.05, text
    assert any(pngs(c) for c in code_cells(nb))
