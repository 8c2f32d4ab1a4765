"""The tunelab kernel through jupyter_client, as notebooks drive it: message order, state
kept between cells, rich outputs, errors, interrupts, restarts, magics, the queue after an
error, and stdin-less history; every assertion is on what a client receives."""

from __future__ import annotations

import base64
import os
import pathlib
import re

import pytest
from jupyter_client.manager import start_new_kernel

from conftest import TIMEOUT, collect, execute, outputs, stderr, stdout

SETUP = "data synthetic linear n=1000 w=3 b=2 noise=0.1\nload linear init=zeros\noptimizer sgd lr=0.1"


def test_protocol_order_busy_input_outputs_reply_idle(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "seed 7\nbatch 16")
    types = [m["msg_type"] for m in msgs]
    assert types == ["status", "execute_input", "stream", "stream", "status"], types
    assert msgs[0]["content"]["execution_state"] == "busy"
    assert msgs[-1]["content"]["execution_state"] == "idle"
    assert msgs[1]["content"]["execution_count"] == reply["content"]["execution_count"]
    assert stdout(msgs) == "seed 7\nbatch 16\n"
    # The reply was made after the last output and before idle.
    assert msgs[-2]["header"]["date"] <= reply["header"]["date"] <= msgs[-1]["header"]["date"]
    assert reply["content"]["status"] == "ok"


def test_execution_count_and_silent_requests(kernel):
    _, kc = kernel
    first, _ = execute(kc, "seed 1")
    reply, msgs = execute(kc, "seed 2", silent=True)
    assert [m["msg_type"] for m in msgs] == ["status", "status"], "silent: nothing but status on iopub"
    assert reply["content"]["execution_count"] == first["content"]["execution_count"]
    reply, _ = execute(kc, "seed 3", store_history=False)
    assert reply["content"]["execution_count"] == first["content"]["execution_count"]
    reply, _ = execute(kc, "seed 4")
    assert reply["content"]["execution_count"] == first["content"]["execution_count"] + 1


def test_state_persists_between_cells_with_live_progress(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, SETUP + "\nfit epochs=3")
    assert reply["content"]["status"] == "ok", reply["content"]
    # One progress display, updated in place, ending "done".
    shown = outputs(msgs, "display_data")
    updates = outputs(msgs, "update_display_data")
    assert len(shown) == 1 and updates, [m["msg_type"] for m in msgs]
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    assert "<progress" in updates[-1]["content"]["data"]["text/html"]
    final = re.search(r" (\d+)/(\d+) steps · done$", updates[-1]["content"]["data"]["text/plain"])
    assert final and final.group(1) == final.group(2), updates[-1]["content"]["data"]["text/plain"]
    assert f"fit: {final.group(1)} steps" in stdout(msgs)

    # A later cell sees the trained model: the weight moved from 0 towards 3.
    reply, msgs = execute(kc, "show params")
    (result,) = outputs(msgs, "execute_result")
    assert result["content"]["execution_count"] == reply["content"]["execution_count"]
    weight = re.search(r"^weight\s+\[1, 1\]\s+yes\s+(\S+)$", result["content"]["data"]["text/plain"], re.M)
    assert weight and abs(float(weight.group(1)) - 3.0) < 0.1, result["content"]["data"]["text/plain"]
    assert "<table" in result["content"]["data"]["text/html"]


def test_plot_is_inline_png_and_svg(kernel):
    _, kc = kernel
    execute(kc, SETUP + "\nfit epochs=1")
    reply, msgs = execute(kc, "plot loss")
    assert reply["content"]["status"] == "ok"
    (display,) = outputs(msgs, "display_data")
    data = display["content"]["data"]
    png = base64.b64decode(data["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert int.from_bytes(png[16:20], "big") == 800
    assert "<svg" in data["image/svg+xml"]


def test_tables_are_html_with_a_text_fallback(kernel):
    _, kc = kernel
    execute(kc, SETUP + "\nfit epochs=2")
    reply, msgs = execute(kc, "eval")
    assert reply["content"]["status"] == "ok"
    tables = [m for m in outputs(msgs, "display_data", "execute_result") if "text/html" in m["content"]["data"]]
    assert tables, [m["msg_type"] for m in msgs]
    html = tables[0]["content"]["data"]["text/html"]
    assert html.startswith("<table") and '<th style="text-align:right">learned</th>' in html, html
    assert "closed form" in tables[0]["content"]["data"]["text/plain"]


def test_an_error_is_one_line_with_a_caret_and_the_next_cell_runs(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "seed 11\nfit epoch=3")
    (error,) = outputs(msgs, "error")
    message = (
        "unknown option 'epoch' for 'fit' (did you mean 'epochs'?); "
        "it takes epochs, batch, steps, log, accumulate, clip, patience, monitor"
    )
    assert error["content"]["ename"] == "TunelabError"
    assert error["content"]["evalue"] == message
    traceback = error["content"]["traceback"]
    assert "  fit epoch=3" in traceback and any("^^^^^" in line for line in traceback), traceback
    assert any("line 2" in line for line in traceback), traceback
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "TunelabError" and reply["content"]["evalue"] == message
    # The whole cell is parsed first: `seed 11` did not run, and the kernel goes on.
    reply, msgs = execute(kc, "show config")
    assert reply["content"]["status"] == "ok"
    assert not re.search(r"^seed\s+11\b", outputs(msgs, "execute_result")[0]["content"]["data"]["text/plain"], re.M)


def test_after_an_error_the_queued_cells_are_aborted(kernel):
    _, kc = kernel
    # A cell that fails after a short fit, with two more sent before it finishes.
    failing = kc.execute(SETUP + "\nfit epochs=3 batch=1\nrestore nope")
    queued = [kc.execute("seed 21"), kc.execute("seed 22")]
    reply, _ = collect(kc, failing)
    assert reply["content"]["status"] == "error"
    for msg_id in queued:
        reply, msgs = collect(kc, msg_id)
        assert reply["content"]["status"] == "aborted"
        assert not outputs(msgs, "stream", "execute_input")
    # A cell sent afterwards runs.
    reply, msgs = execute(kc, "seed 23")
    assert reply["content"]["status"] == "ok" and stdout(msgs) == "seed 23\n"


def test_magics(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "%%time\nseed 5")
    assert reply["content"]["status"] == "ok"
    assert re.search(r"^wall time: [\d.]+ m?s$", stdout(msgs), re.M), stdout(msgs)
    execute(kc, SETUP)
    reply, msgs = execute(kc, "%who")
    text = outputs(msgs, "execute_result")[0]["content"]["data"]["text/plain"]
    assert "linear regression y = w·x + b, 1 input(s), 2/2 parameters trainable" in text, text
    execute(kc, "%reset")
    reply, msgs = execute(kc, "%who")
    assert "none (`load linear`)" in outputs(msgs, "execute_result")[0]["content"]["data"]["text/plain"]
    reply, msgs = execute(kc, "%frobnicate")
    assert reply["content"]["status"] == "error"
    assert "unknown magic '%frobnicate'" in reply["content"]["evalue"]


def test_history_comes_from_the_kernels_own_record(kernel):
    _, kc = kernel
    execute(kc, "seed 31")
    execute(kc, "batch 8")
    msg_id = kc.history(hist_access_type="tail", n=2, output=True, raw=True)
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    history = reply["content"]["history"]
    assert [h[2][0] for h in history] == ["seed 31", "batch 8"]
    assert history[1][2][1] == "batch 8\n"
    assert history[1][1] == history[0][1] + 1


def test_comm_info_is_empty(kernel):
    _, kc = kernel
    msg_id = kc.comm_info()
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"] == {"status": "ok", "comms": {}}


def test_interrupt_stops_a_fit_and_keeps_its_steps():
    km, kc = start_new_kernel(kernel_name="tunelab")
    try:
        execute(kc, SETUP)
        total = 1000 * 800  # epochs × steps per epoch at batch 1
        msg_id = kc.execute("fit epochs=1000 batch=1")
        # Interrupt once the fit has reported progress past step 0.
        while True:
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "update_display_data":
                break
        km.interrupt_kernel()
        reply, msgs = collect(kc, msg_id)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "Interrupted"
        assert "interrupted after step" in stderr(msgs)
        assert outputs(msgs, "error")[0]["content"]["ename"] == "Interrupted"
        assert "stopped" in outputs(msgs, "update_display_data")[-1]["content"]["data"]["text/plain"]

        # The kernel is alive, the steps made are kept, and the history says interrupted.
        reply, msgs = execute(kc, "show history")
        assert reply["content"]["status"] == "ok"
        text = "\n".join(m["content"]["data"]["text/plain"] for m in outputs(msgs, "display_data", "execute_result"))
        steps = int(re.search(r"(\d+) epochs?, (\d+) steps", text).group(2))
        assert 0 < steps < total, text
        assert re.search(r"fit epochs=1000 batch=1\s+interrupted", text), text
        reply, msgs = execute(kc, "fit epochs=1 batch=1")
        assert reply["content"]["status"] == "ok"
        assert f"now at step {steps + 800}" in stdout(msgs)
    finally:
        kc.stop_channels()
        km.shutdown_kernel()


def test_restart_gives_a_fresh_session():
    km, kc = start_new_kernel(kernel_name="tunelab")
    try:
        execute(kc, SETUP)
        old = km.provisioner.process
        km.restart_kernel()  # shutdown_request(restart=True), then a new process
        assert old.wait(timeout=TIMEOUT) == 0, "the old kernel left cleanly"
        kc.wait_for_ready(timeout=TIMEOUT)
        reply, msgs = execute(kc, "%who")
        assert reply["content"]["execution_count"] == 1
        assert "none (`load linear`)" in outputs(msgs, "execute_result")[0]["content"]["data"]["text/plain"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    assert not km.is_alive()


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_shutdown_request_ends_the_process_cleanly(raw_kernel, channel):
    k = raw_kernel
    execute(k.kc, SETUP)
    if channel == "shell":
        k.kc.shell_channel.send(k.kc.session.msg("shutdown_request", {"restart": False}))
    else:
        k.kc.shutdown()
    assert k.proc.wait(timeout=TIMEOUT) == 0
    assert "shut down" in k.log()


def test_generate_streams_tokens_as_they_come(kernel):
    _, kc = kernel
    assets = pathlib.Path(os.environ.get("TUNELAB_ASSETS", pathlib.Path.home() / ".cache" / "tunelab" / "assets"))
    vocab = assets / "gpt2_tokenizer"
    if not vocab.is_dir():
        pytest.skip(f"no GPT-2 tokenizer at {vocab}: run scripts/fetch_assets.py")
    reply, _ = execute(kc, f"seed 1\nload gpt2 config=tiny vocab={vocab}")
    assert reply["content"]["status"] == "ok", reply["content"]
    reply, msgs = execute(kc, 'generate "Hello world" max_tokens=12 greedy=true')
    assert reply["content"]["status"] == "ok", reply["content"]
    pieces = [m["content"]["text"] for m in outputs(msgs, "stream") if m["content"]["name"] == "stdout"]
    # The prompt, then the tokens one message at a time (not one block at the end).
    assert len(pieces) >= 8, pieces
    assert pieces[0] == "Hello world"
    assert "".join(pieces).startswith("Hello world") and "generated 12 tokens" in "".join(pieces)
