#!/usr/bin/env python3
"""PyTorch + transformers side of benches/gpt2_cpu.sh: GPT-2 small (random weights) as a
language model on CPU, the recipe of `tunelab bench gpt2` — AdamW 2e-5 updates of batch
4 x 128 tokens (train mode, dropout 0.1), then greedy generation of 64 tokens with the
key/value cache. THREADS sets torch's thread count, STEPS the timed updates, DEVICE the
device (`cpu`, the default, or `cuda`: scripts/gpu-bench.sh takes the generation figure from
here, since shared/bench/torch_baseline.py has no generation job).
"""
import json, os, time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
torch.manual_seed(0)
steps, B, L, new = int(os.environ.get("STEPS", "10")), 4, 128, 64
device = torch.device(os.environ.get("DEVICE", "cpu"))
model = GPT2LMHeadModel(GPT2Config()).to(device).train()
opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
ids = torch.randint(0, 50000, (B, L), device=device)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def step():
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


for _ in range(2):
    step()
sync()
t = time.perf_counter()
for _ in range(steps):
    step()
sync()
train = steps * B * L / (time.perf_counter() - t)
model.eval()
prompt = torch.tensor([[464, 2068, 7586, 21831]], device=device)  # "The quick brown fox"
with torch.no_grad():
    model.generate(prompt[:, :1], max_new_tokens=4, do_sample=False, pad_token_id=50256)
    sync()
    t = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=50256)
    sync()
    gen = (out.shape[1] - prompt.shape[1]) / (time.perf_counter() - t)
print(json.dumps({
    "torch": torch.__version__,
    "device": str(device),
    "threads": torch.get_num_threads(),
    f"gpt2_small_b{B}_l{L}_fp32_tokens_per_s": round(train),
    "gpt2_small_generate_tokens_per_s": round(gen, 1),
}))
