"""Manual check, as a user would: JupyterLab in headless Chromium opens a notebook on the
tunelab kernel, runs all cells, and saves a screenshot to look at. Not part of CI (it needs
Debian's chromium + chromium-driver and `pip install jupyterlab selenium`).

    python tests/kernel/browser/lab_screenshot.py NOTEBOOK.ipynb OUT.png

The tunelab kernelspec must be installed where this Python's Jupyter finds it
(`tunelab kernel install --prefix "$VIRTUAL_ENV"`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import pathlib

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(notebook: str, out: str) -> None:
    root = pathlib.Path(tempfile.mkdtemp())
    shutil.copy(notebook, root / "notebook.ipynb")
    port, token = free_port(), "tunelab-check"
    lab = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=open(root / "lab.log", "w"),
    )
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,3400"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        for _ in range(60):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(1)
        driver.get(f"http://127.0.0.1:{port}/lab/tree/notebook.ipynb?token={token}")
        # Wait for the app and the notebook's kernel, then run everything.
        deadline = time.time() + 120
        while time.time() < deadline:
            ready = driver.execute_script(
                "const a = window.jupyterapp; const w = a && a.shell.currentWidget;"
                "return !!(w && w.sessionContext && w.sessionContext.session"
                " && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle');"
            )
            if ready:
                break
            time.sleep(1)
        else:
            raise SystemExit("the notebook's kernel did not become idle in JupyterLab")
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        deadline = time.time() + 180
        while time.time() < deadline:
            prompts = driver.execute_script(
                "return [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent)"
            )
            if prompts and all(p.strip() not in ("[ ]:", "[*]:", "") for p in prompts):
                break
            time.sleep(1)
        else:
            raise SystemExit(f"cells did not finish: {prompts}")
        time.sleep(2)
        images = driver.execute_script(
            "return document.querySelectorAll('.jp-OutputArea-output img, .jp-OutputArea-output svg').length"
        )
        tables = driver.execute_script("return document.querySelectorAll('.jp-OutputArea-output table').length")
        driver.save_screenshot(out)
        print(f"prompts {prompts}; inline images {images}; html tables {tables}; screenshot {out}")
        if not images or not tables:
            raise SystemExit("no inline plot or no HTML table in the outputs")
    finally:
        driver.quit()
        lab.terminate()
        lab.wait(timeout=30)


if __name__ == "__main__":
    main(*sys.argv[1:3])
