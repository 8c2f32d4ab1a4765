"""Messages no well-behaved client sends, over raw ZeroMQ sockets: wrong or missing
signatures are dropped unexecuted, malformed JSON and unknown types are ignored, a 10 MB cell
is answered, and the kernel stays alive (heartbeat, kernel_info) through all of it."""

from __future__ import annotations

import re

import zmq

from conftest import execute, outputs

POLL_MS = 1000


def dealer(k, channel: str):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(k.url(channel))
    return sock


def no_reply(sock) -> bool:
    return sock.poll(POLL_MS) == 0


def seed_of(kc) -> int:
    _, msgs = execute(kc, "show config")
    text = outputs(msgs, "execute_result")[0]["content"]["data"]["text/plain"]
    return int(re.search(r"^seed\s+(\d+)", text, re.M).group(1))


def assert_alive(k):
    assert k.proc.poll() is None
    k.kc.kernel_info()
    assert k.kc.get_shell_msg(timeout=10)["msg_type"] == "kernel_info_reply"


def test_bad_signatures_are_dropped_and_never_executed(raw_kernel):
    k = raw_kernel
    reply, _ = execute(k.kc, "seed 5")
    count = reply["content"]["execution_count"]
    shell = dealer(k, "shell")
    attempt = {"code": "seed 99", "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False}
    for frames in [
        k.frames("execute_request", attempt, key=b"not-the-key"),  # signed with the wrong key
        k.frames("execute_request", attempt, signature=b"0" * 64),  # a made-up signature
        k.frames("execute_request", attempt, signature=b""),  # no signature
    ]:
        shell.send_multipart(frames)
        assert no_reply(shell), "a message with a bad signature got a reply"
    # A correctly signed message on the same raw socket is answered: the test can tell.
    shell.send_multipart(k.frames("kernel_info_request", {}))
    assert not no_reply(shell)
    shell.close()

    # Nothing ran: the seed is still 5 and the count moved only for `show config`.
    assert seed_of(k.kc) == 5
    reply, _ = execute(k.kc, "batch 4")
    assert reply["content"]["execution_count"] == count + 2
    assert k.log().count("bad or missing signature") == 3
    assert_alive(k)


def test_control_channel_checks_signatures_too(raw_kernel):
    k = raw_kernel
    control = dealer(k, "control")
    control.send_multipart(k.frames("shutdown_request", {"restart": False}, key=b"wrong"))
    assert no_reply(control)
    control.close()
    assert_alive(k)


def test_malformed_and_unknown_messages_are_ignored(raw_kernel):
    k = raw_kernel
    shell = dealer(k, "shell")
    shell.send_multipart(k.frames("execute_request", b"{not json"))  # signed, but not JSON
    shell.send_multipart([b"<IDS|MSG>", b"sig", b"{}"])  # too few frames
    shell.send_multipart([b"no delimiter at all"])
    shell.send_multipart(k.frames("execute_request", b"[1, 2]"))  # content not an object
    shell.send_multipart(k.frames("frobnicate_request", {"x": 1}))  # unknown type
    assert no_reply(shell)
    shell.close()
    log = k.log()
    assert "malformed message" in log and "unknown type 'frobnicate_request'" in log, log
    assert_alive(k)
    reply, _ = execute(k.kc, "seed 3")
    assert reply["content"]["status"] == "ok"


def test_a_10_mb_cell_is_answered(raw_kernel):
    k = raw_kernel
    big = 10 * 1024 * 1024
    reply, _ = execute(k.kc, "# " + "x" * big + "\nseed 6", timeout=120)
    assert reply["content"]["status"] == "ok"
    reply, msgs = execute(k.kc, "y" * big, timeout=120)
    assert reply["content"]["status"] == "error"
    (error,) = outputs(msgs, "error")
    # The message and the traceback are clipped, not 10 MB each.
    assert len(error["content"]["evalue"]) < 10_000
    assert sum(len(line) for line in error["content"]["traceback"]) < 20_000
    assert_alive(k)
    assert seed_of(k.kc) == 6


def test_heartbeat_echoes(raw_kernel):
    k = raw_kernel
    hb = zmq.Context.instance().socket(zmq.REQ)
    hb.linger = 0
    hb.connect(k.url("hb"))
    for ping in [b"ping", b"\x00binary\xff"]:
        hb.send(ping)
        assert hb.poll(5000), "no heartbeat"
        assert hb.recv() == ping
    hb.close()
