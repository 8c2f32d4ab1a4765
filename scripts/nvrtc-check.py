"""Compiles tunelab's CUDA kernels (src/model/kernels/kernels.cu) with NVRTC, as the CUDA
build does at run time, and prints NVRTC's log. Needs libnvrtc, no GPU.

    python3 scripts/nvrtc-check.py LIBNVRTC KERNELS.cu [ARCH]

Called by `scripts/cuda-toolchain.sh check`; exits non-zero when NVRTC rejects the source.
"""

import ctypes
import sys


def main() -> int:
    lib = ctypes.CDLL(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        source = f.read()
    arch = sys.argv[3] if len(sys.argv) > 3 else "compute_90"
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), source, b"tunelab_kernels.cu", 0, None, None) != 0:
        print("nvrtcCreateProgram failed", file=sys.stderr)
        return 1
    options = (ctypes.c_char_p * 1)(f"--gpu-architecture={arch}".encode())
    rc = lib.nvrtcCompileProgram(prog, 1, options)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    text = log.value.decode(errors="replace").strip()
    if text:
        print(text)
    print(f"nvrtc ({arch}): {'ok' if rc == 0 else f'failed ({rc})'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
