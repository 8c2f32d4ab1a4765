"""jupyter_kernel_test's protocol suite against the installed tunelab kernelspec: every
reply and output is validated against the message spec, and each sample below is a check.

The samples share one kernel: setUpClass loads data and fits a model, and no sample
replaces the model, so each works whatever order the suite runs them in."""

from __future__ import annotations

import tempfile
import unittest

import jupyter_kernel_test

# A two-input CSV: loading it over a one-input model warns on stderr.
_CSV = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
_CSV.write("a,b,y\n" + "".join(f"{i},{2 * i},{3 * i}\n" for i in range(20)))
_CSV.close()


class TunelabKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "tunelab"
    language_name = "tunelab"
    file_extension = ".tune"

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        reply = cls.kc.execute_interactive(
            "data synthetic linear n=100\nload linear\nfit epochs=2", timeout=60, output_hook=lambda msg: None
        )
        assert reply["content"]["status"] == "ok", reply["content"]

    # stdout: a snapshot's name is echoed back.
    code_hello_world = "snapshot 'hello, world'"
    # stderr: a warning that did not stop the command.
    code_stderr = f"data {_CSV.name} x=a,b y=y; data synthetic linear n=100"
    # One output, the error, and status error.
    code_generate_error = "fitt epochs=3"

    # A table that ends a cell is the cell's result (Out[n]).
    code_execute_result = [
        {"code": "show config", "mime": "text/html"},
        {"code": "show params", "mime": "text/plain"},
    ]
    code_display_data = [
        {"code": "plot loss", "mime": "image/png"},
        {"code": "plot loss", "mime": "image/svg+xml"},
        {"code": "eval", "mime": "text/html"},
    ]
    code_history_pattern = "show co*"
    supported_history_operations = ("tail", "range", "search")

    completion_samples = [
        {"text": "fi", "matches": {"fit"}},
        {"text": "optimizer ad", "matches": {"adam", "adamw"}},
        {"text": "fit ep", "matches": {"epochs="}},
        {"text": "lr 0.1 schedule=co", "matches": {"constant", "cosine"}},
        {"text": "%ti", "matches": {"%time"}},
    ]
    complete_code_samples = ["fit epochs=3", "seed 1; fit", "fit \\\n  epochs=3", "%%time\nfit", "# a comment"]
    incomplete_code_samples = ["fit \\", 'load "runs/a', "optimizer adam betas=[0.9,"]
    invalid_code_samples = ["fitt", "fit epoch=3", "%tme"]

    code_inspect_sample = "fit"


if __name__ == "__main__":
    unittest.main()
