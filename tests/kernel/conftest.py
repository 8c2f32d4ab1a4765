"""Shared helpers for the kernel tests: real Jupyter clients against the tunelab kernel.

scripts/test.sh installs the kernelspec (`tunelab kernel install --prefix VENV`) into the
venv these tests run in, pointing at the debug binary the cargo stage built; TUNELAB_BIN
names that binary for the tests that start the kernel by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pathlib
import subprocess
import time
import uuid
from datetime import datetime, timezone

import pytest
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import start_new_kernel

ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT = 60


def tunelab_bin() -> str:
    return os.environ.get("TUNELAB_BIN", str(ROOT / "target" / "debug" / "tunelab"))


def pytest_configure(config):
    try:
        KernelSpecManager().get_kernel_spec("tunelab")
    except NoSuchKernel:
        raise pytest.UsageError(
            "no tunelab kernelspec: run `tunelab kernel install --prefix \"$VIRTUAL_ENV\"` "
            "(scripts/test.sh does this)"
        )


def execute(kc, code: str, timeout: float = TIMEOUT, **kwargs):
    """Runs `code`; returns (reply, iopub messages of this request in order, busy to idle)."""
    msg_id = kc.execute(code, **kwargs)
    return collect(kc, msg_id, timeout)


def collect(kc, msg_id: str, timeout: float = TIMEOUT):
    msgs = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    assert reply["parent_header"]["msg_id"] == msg_id
    return reply, msgs


def outputs(msgs, *types):
    return [m for m in msgs if m["msg_type"] in types]


def stdout(msgs) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def stderr(msgs) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr")


@pytest.fixture(scope="module")
def kernel():
    """A kernel started from the installed kernelspec, shared by a module's tests."""
    km, kc = start_new_kernel(kernel_name="tunelab")
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel()


class RawKernel:
    """A kernel started by hand from a connection file we wrote, with its stderr kept, plus
    raw ZeroMQ access for messages no well-behaved client sends."""

    def __init__(self, tmp: pathlib.Path):
        self.key = uuid.uuid4().hex.encode()
        self.conn_file, self.info = write_connection_file(str(tmp / "kernel.json"), key=self.key)
        self.log_path = tmp / "kernel.stderr"
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [tunelab_bin(), "kernel", "--connection-file", self.conn_file],
            stdout=subprocess.DEVNULL,
            stderr=self.log_file,
        )
        self.kc = BlockingKernelClient(connection_file=self.conn_file)
        self.kc.load_connection_file()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text()

    def url(self, channel: str) -> str:
        return f"tcp://{self.info['ip']}:{self.info[channel + '_port']}"

    def frames(self, msg_type: str, content: dict | bytes, key: bytes | None = None, signature: bytes | None = None):
        """The wire frames of a message, signed with `key` (default: the kernel's), or with
        `signature` as given."""
        header = {
            "msg_id": uuid.uuid4().hex,
            "username": "test",
            "session": uuid.uuid4().hex,
            "date": datetime.now(timezone.utc).isoformat(),
            "msg_type": msg_type,
            "version": "5.3",
        }
        parts = [
            json.dumps(header).encode(),
            b"{}",
            b"{}",
            content if isinstance(content, bytes) else json.dumps(content).encode(),
        ]
        if signature is None:
            mac = hmac.new(key or self.key, digestmod=hashlib.sha256)
            for p in parts:
                mac.update(p)
            signature = mac.hexdigest().encode()
        return [b"<IDS|MSG>", signature, *parts]

    def close(self):
        try:
            self.kc.shutdown()
            self.proc.wait(timeout=TIMEOUT)
        finally:
            self.kc.stop_channels()
            if self.proc.poll() is None:
                self.proc.kill()
            self.log_file.close()


@pytest.fixture
def raw_kernel(tmp_path):
    k = RawKernel(tmp_path)
    yield k
    k.close()
