#!/usr/bin/env python3
"""Copies a BERT checkpoint directory (all-MiniLM-L6-v2) with its weights stored in f16.

    scripts/minilm-f16.py SRC DST

Writes DST/model.safetensors with every F32 tensor of SRC/model.safetensors converted to
F16 (round to nearest even; other dtypes copied as they are) and the safetensors header
rewritten with the new dtypes and offsets, and copies config.json, tokenizer.json,
vocab.txt, tokenizer_config.json and special_tokens_map.json (those present). Halves the
model (all-MiniLM-L6-v2: 90.9 MB → 45.4 MB) so it fits, with the 20 MB CUDA bundle, in the
64 MiB a GPU machine's run carries. tunelab reads F16 weights and converts them to F32 on
load (src/model/bert/weights.rs); transformers' from_pretrained does the same (its default
torch_dtype is float32).

Standard library only (struct's 'e' format is IEEE half precision); numpy is used when it
is installed, which is faster.
"""

import json
import os
import shutil
import struct
import sys

COPIED = ["config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
F16_MAX = 65504.0


def to_f16(raw: bytes) -> bytes:
    """Little-endian F32 bytes → little-endian F16 bytes (values beyond ±65504 saturate)."""
    try:
        import numpy as np  # optional

        return np.frombuffer(raw, dtype="<f4").astype("<f2").tobytes()
    except ImportError:
        pass
    n = len(raw) // 4
    values = struct.unpack(f"<{n}f", raw)
    try:
        return struct.pack(f"<{n}e", *values)
    except OverflowError:
        clipped = [min(max(v, -F16_MAX), F16_MAX) for v in values]
        return struct.pack(f"<{n}e", *clipped)


def convert(src: str, dst: str) -> None:
    with open(src, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    meta = header.pop("__metadata__", None)
    out_header, chunks, offset = {}, [], 0
    # Tensors in the order of their data, so the file keeps its layout.
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        dtype = info["dtype"]
        if dtype == "F32":
            raw, dtype = to_f16(raw), "F16"
        out_header[name] = {"dtype": dtype, "shape": info["shape"], "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if meta is not None:
        out_header["__metadata__"] = meta
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)
    os.replace(tmp, dst)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    src, dst = sys.argv[1:]
    weights = os.path.join(src, "model.safetensors")
    if not os.path.isfile(weights):
        print(f"minilm-f16: no {weights}", file=sys.stderr)
        return 1
    os.makedirs(dst, exist_ok=True)
    for name in COPIED:
        if os.path.isfile(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    convert(weights, os.path.join(dst, "model.safetensors"))
    total = sum(os.path.getsize(os.path.join(dst, n)) for n in os.listdir(dst))
    print(f"minilm-f16: {dst}: {total / 1e6:.1f} MB ({os.path.getsize(weights) / 1e6:.1f} MB of f32 weights → "
          f"{os.path.getsize(os.path.join(dst, 'model.safetensors')) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
