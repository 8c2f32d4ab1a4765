#!/usr/bin/env python3
"""Issue 7's interactive latencies: the tunelab REPL beside PyTorch + transformers.

On the GPU machine, for all-MiniLM-L6-v2 and a small labelled file:

  tunelab (the real REPL through a pseudo-terminal; each time is from sending the line to
  the next prompt):
    start       process start → first prompt
    device      `device cuda` (or `device cpu`)
    load        `load MODEL task=classify labels=2`
    data        `data FILE split=1/0 max_len=128 clean=false` (tokenized onto the device)
    optimizer   `optimizer adamw lr=5e-5 weight_decay=0.01`
    fit 1       `fit steps=1 batch=32` (the first step: kernels, allocations, cuBLAS)
    fit 2       the same again (warm)
  PyTorch (a subprocess; the GPU synchronized before each clock stops):
    start       interpreter start → `import torch, transformers` done
    device      the first CUDA tensor (context creation)
    load        AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)
                in float32, .to(device)
    data        AutoTokenizer + tokenizing the same texts (max_length 128) onto the device
    optimizer   torch.optim.AdamW(lr=5e-5, weight_decay=0.01)
    fit 1, 2    a training step (forward with labels, backward, AdamW step) on 32 texts

Prints a table and writes $OUT/latency.json (OUT defaults to a new temporary directory).
The PyTorch half is skipped with one line when torch or transformers is missing. Standard
library only for the tunelab half.

Prepare the carried files here (all git-ignored), then run on the GPU machine:

  scripts/cuda-toolchain.sh build          # target/cuda/release/tunelab, the CUDA binary
  scripts/gpu-latency.py --prep            # bench-assets/minilm-f16 (46.1 MB: f16 weights by
                                           # scripts/minilm-f16.py), bench-assets/reviews.tsv
                                           # (512 movie reviews, 256 pos + 256 neg, 60 kB) and
                                           # target/cuda/tunelab-bundle.tar.xz (10.3 MB: the
                                           # stripped binary alone, xz)
  run(command="python3 scripts/gpu-latency.py",
      carry=["bench-assets/minilm-f16", "bench-assets/reviews.tsv",
             "target/cuda/tunelab-bundle.tar.xz"])

What travels is the working tree (5.4 MB of tracked files) plus those 56.5 MB: about 62 MB
of the 64 MiB (67.1 MB) a run may carry. The 20 MB gpu-bundle.tar.xz (tunelab and the
gpu-tests binary) does not fit beside the model: run tests/gpu.rs (scripts/gpu-check.sh)
and gpu-bench.sh in other calls. The carried bundle (tunelab-bundle.tar.xz, else
gpu-bundle.tar.xz) is unpacked over target/cuda/release/tunelab.
Here, on the CPU: scripts/gpu-latency.py --device cpu --tunelab target/debug/tunelab.
"""

import argparse
import csv
import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "tunelab> "
# CSI / OSC escape sequences, and the other two-byte escapes.
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
FIT_LINE = re.compile(r"(?m)^fit: (\d+) steps in ([0-9.]+) s")
PHASES = ["start", "device", "load", "data", "optimizer", "fit 1", "fit 2"]


def plain(raw: bytes) -> str:
    """Terminal output as text: escapes removed, a carriage return read as a line break."""
    text = ESCAPES.sub("", raw.decode("utf-8", "replace"))
    return text.replace("\r\n", "\n").replace("\r", "\n")


class Repl:
    """The tunelab REPL on a pseudo-terminal (NO_COLOR, TERM=xterm, its own history)."""

    def __init__(self, binary: str, workdir: str):
        import fcntl
        import pty
        import struct
        import termios

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        env = dict(os.environ, NO_COLOR="1", TERM="xterm", TUNELAB_HISTORY=os.path.join(workdir, "history"))
        env.pop("CLICOLOR_FORCE", None)

        def controlling_tty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.start = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary], stdin=slave, stdout=slave, stderr=slave, cwd=workdir, env=env,
            preexec_fn=controlling_tty, close_fds=True,
        )
        os.close(slave)
        self.fd = master
        self.raw = b""

    def read_until_prompt(self, after: int, timeout: float, typed: bool = False) -> str:
        """Reads until a fresh prompt (a line that is just the prompt, at the end of the
        output) after byte `after` — after the typed line was accepted when `typed` —;
        returns the output before it."""
        deadline = time.perf_counter() + timeout
        while True:
            # A typed line is redrawn key by key (with its hint) on carriage returns; the
            # first "\r\n" is rustyline accepting it, so the fresh prompt comes after that.
            start = self.raw.find(b"\r\n", after) if typed else after
            text = plain(self.raw[start:]) if start >= 0 else ""
            # rustyline ends a prompt with a carriage return and a cursor move (read as a
            # line break here), hence the trailing line breaks are dropped.
            text = text.rstrip("\n")
            if ("\n" + text).endswith("\n" + PROMPT):
                return text[: -len(PROMPT)]
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"no prompt within {timeout:.0f} s; output so far:\n{plain(self.raw[after:])[-2000:]}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise RuntimeError(f"tunelab exited ({self.proc.poll()}); output:\n{plain(self.raw[after:])[-2000:]}")
                self.raw += chunk

    def first_prompt(self, timeout: float) -> float:
        self.read_until_prompt(0, timeout)
        return time.perf_counter() - self.start

    def command(self, line: str, timeout: float):
        """Sends `line`; returns (seconds from sending to the next prompt, its output)."""
        after = len(self.raw)
        t = time.perf_counter()
        os.write(self.fd, line.encode() + b"\r")
        out = self.read_until_prompt(after, timeout, typed=True)
        return time.perf_counter() - t, out

    def close(self):
        try:
            os.write(self.fd, b"quit\r")
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        os.close(self.fd)


def run_tunelab(args, workdir):
    lines = [
        ("device", f"device {args.device}"),
        ("load", f"load {os.path.abspath(args.model)} task=classify labels=2"),
        ("data", f"data {os.path.abspath(args.data)} split=1/0 max_len=128 clean=false"),
        ("optimizer", "optimizer adamw lr=5e-5 weight_decay=0.01"),
        ("fit 1", f"fit steps=1 batch={args.batch}"),
        ("fit 2", f"fit steps=1 batch={args.batch}"),
    ]
    repl = Repl(args.tunelab, workdir)
    times, outputs, inner = {}, {}, {}
    try:
        times["start"] = repl.first_prompt(args.timeout)
        for phase, line in lines:
            secs, out = repl.command(line, args.timeout)
            times[phase], outputs[phase] = secs, out.strip()
            if re.search(r"(?m)^error", out):
                raise RuntimeError(f"`{line}` failed:\n{out.strip()}")
            m = FIT_LINE.search(out)
            if m:
                inner[phase] = float(m.group(2))
        secs, out = repl.command("show memory", args.timeout)
        outputs["show memory"] = out.strip()
    finally:
        repl.close()
    return {"seconds": times, "fit_reported_s": inner, "outputs": outputs}


TORCH_CHILD = r"""
import json, sys, time
t0 = float(sys.argv[1]); model_dir, data, device, batch = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
out = {}
try:
    import torch, transformers
except ImportError as e:
    print(json.dumps({"skipped": f"{e}"})); sys.exit(0)
out["start"] = time.time() - t0
versions = {"torch": torch.__version__, "transformers": transformers.__version__}
from transformers import AutoModelForSequenceClassification, AutoTokenizer
dev = torch.device(device)
def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()
t = time.perf_counter(); torch.zeros(1, device=dev); sync(); out["device"] = time.perf_counter() - t
t = time.perf_counter()
model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, torch_dtype=torch.float32)
model = model.float().to(dev); sync(); out["load"] = time.perf_counter() - t
rows = [l.rstrip("\n").split("\t") for l in open(data, encoding="utf-8")][1:]
texts = [r[0] for r in rows]; names = sorted(set(r[1] for r in rows)); labels = [names.index(r[1]) for r in rows]
t = time.perf_counter()
tok = AutoTokenizer.from_pretrained(model_dir)
enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt").to(dev)
y = torch.tensor(labels, device=dev); sync(); out["data"] = time.perf_counter() - t
t = time.perf_counter()
opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01); out["optimizer"] = time.perf_counter() - t
model.train()
losses = []
for i, phase in enumerate(["fit 1", "fit 2"]):
    sel = slice(i * batch, (i + 1) * batch)
    t = time.perf_counter()
    ids, mask = enc["input_ids"][sel], enc["attention_mask"][sel]
    longest = int(mask.sum(1).max())  # pad to the batch's longest row, as tunelab does
    loss = model(input_ids=ids[:, :longest], attention_mask=mask[:, :longest], labels=y[sel]).loss
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True); sync()
    out[phase] = time.perf_counter() - t
    losses.append(loss.item())
extra = {"losses": losses, "versions": versions}
if dev.type == "cuda":
    extra["max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
print(json.dumps({"seconds": out, **extra}))
"""


def run_torch(args):
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_CHILD, repr(t0), args.model, args.data, args.device, str(args.batch)],
        capture_output=True, text=True, timeout=args.timeout * 4,
    )
    if proc.returncode != 0:
        return {"failed": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prep(args):
    """bench-assets/minilm-f16 and bench-assets/reviews.tsv from ~/.cache/tunelab/assets."""
    assets = os.path.expanduser("~/.cache/tunelab/assets")
    src = os.path.join(assets, "minilm")
    if not os.path.isfile(os.path.join(src, "model.safetensors")):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "fetch_assets.py")], check=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "minilm-f16.py"), src, args.model], check=True)
    with open(os.path.join(assets, "movie_reviews", "reviews.csv"), newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    by = {}
    for text, label in rows:
        by.setdefault(label, []).append(" ".join(text.split()))  # no tabs or line breaks
    rng = random.Random(7)
    chosen = []
    for label in sorted(by):
        chosen += [(t, label) for t in rng.sample(by[label], 512 // len(by))]
    rng.shuffle(chosen)
    os.makedirs(os.path.dirname(os.path.abspath(args.data)), exist_ok=True)
    with open(args.data, "w", encoding="utf-8") as f:
        f.write("text\tlabel\n")
        f.writelines(f"{t}\t{label}\n" for t, label in chosen)
    print(f"gpu-latency: wrote {args.data} ({len(chosen)} reviews) and {args.model}")
    cuda = os.path.join(ROOT, "target", "cuda")
    if os.path.isfile(os.path.join(cuda, "release", "tunelab")):
        bundle = os.path.join(cuda, "tunelab-bundle.tar.xz")
        env = dict(os.environ, XZ_OPT="-6 -T0")
        subprocess.run(["tar", "-cJf", bundle, "-C", cuda, "release/tunelab"], check=True, env=env)
        print(f"gpu-latency: wrote {bundle} ({os.path.getsize(bundle) / 1e6:.1f} MB)")
    else:
        print("gpu-latency: no target/cuda/release/tunelab to pack; run scripts/cuda-toolchain.sh build first")


def find_tunelab(args):
    if args.tunelab:
        return args.tunelab
    cuda = os.path.join(ROOT, "target", "cuda")
    binary = os.path.join(cuda, "release", "tunelab")
    # Always unpacked when carried: the machine may keep a binary of an earlier call.
    for bundle in ("tunelab-bundle.tar.xz", "gpu-bundle.tar.xz"):
        bundle = os.path.join(cuda, bundle)
        if os.path.isfile(bundle):
            subprocess.run(["tar", "-xJf", bundle, "-C", cuda, "release/tunelab"], check=True)
            break
    return binary


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--tunelab", help="the tunelab binary (default: target/cuda/release/tunelab, "
                   "unpacked from target/cuda/tunelab-bundle.tar.xz or gpu-bundle.tar.xz if needed)")
    p.add_argument("--model", default=os.path.join(ROOT, "bench-assets", "minilm-f16"))
    p.add_argument("--data", default=os.path.join(ROOT, "bench-assets", "reviews.tsv"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for any one prompt")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--prep", action="store_true",
                   help="write --model, --data and target/cuda/tunelab-bundle.tar.xz here, then stop")
    args = p.parse_args()
    if args.prep:
        prep(args)
        return 0
    args.tunelab = os.path.abspath(find_tunelab(args))
    for need in (args.tunelab, os.path.join(args.model, "model.safetensors"), args.data):
        if not os.path.exists(need):
            print(f"gpu-latency: no {need} (see the header of {sys.argv[0]}: --prep, then carry)", file=sys.stderr)
            return 100
    out_dir = os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu-latency-")
    os.makedirs(out_dir, exist_ok=True)
    # As gpu-bench.sh: the CUDA libraries candle loads (cuBLAS, cuRAND) on the GPU machine.
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    os.environ["LD_LIBRARY_PATH"] = ":".join(["/usr/local/cuda/lib64"] + paths)
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])

    workdir = tempfile.mkdtemp(prefix="tunelab-latency-")
    try:
        ours = run_tunelab(args, workdir)
    except Exception as e:  # a failed half is reported, and the other still runs
        ours = {"failed": str(e)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    torch = {"skipped": "--skip-torch"} if args.skip_torch else run_torch(args)

    print(f"\n=== interactive latency on {args.device}, seconds (batch {args.batch}) ===")
    print(f"{'phase':10s} {'tunelab':>9s} {'pytorch':>9s}")
    for phase in PHASES:
        cell = lambda r: f"{r['seconds'][phase]:9.3f}" if phase in r.get("seconds", {}) else f"{'-':>9s}"
        print(f"{phase:10s} {cell(ours)} {cell(torch)}")
    if ours.get("fit_reported_s"):
        inner = ", ".join(f"{k} {v:.3f} s" for k, v in ours["fit_reported_s"].items())
        print(f"tunelab's own `fit:` lines (the loop only): {inner}")
    if "failed" in ours:
        print(f"tunelab failed: {ours['failed']}")
    if "skipped" in torch:
        print(f"pytorch: skipped ({torch['skipped']})")
    elif "failed" in torch:
        print(f"pytorch failed: {torch['failed']}")
    else:
        print(f"pytorch: losses {torch.get('losses')}, {torch.get('versions')}"
              + (f", max_memory_allocated {torch['max_memory_allocated_mib']} MiB" if "max_memory_allocated_mib" in torch else ""))
    if "show memory" in ours.get("outputs", {}):
        print("tunelab `show memory` after the two steps:\n" + ours["outputs"]["show memory"])
    report = {"device": args.device, "batch": args.batch, "model": args.model, "data": args.data,
              "tunelab": ours, "pytorch": torch}
    with open(os.path.join(out_dir, "latency.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {os.path.join(out_dir, 'latency.json')}")
    return 1 if "failed" in ours else 0


if __name__ == "__main__":
    sys.exit(main())
