#!/usr/bin/env python3
"""PyTorch + transformers side of benches/smollm2_cpu.sh: a llama-family LM with
SmolLM2-135M's shape (random weights: the same FLOPs as the real checkpoint tunelab loads)
fine-tuned on CPU with the recipe of `tunelab bench smollm2` — every weight trainable,
AdamW 2e-5 (weight decay 0.01), batch 4 x 64 tokens, one warm-up update. THREADS sets
torch's thread count, STEPS the timed updates.
"""
import json, os, time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
torch.manual_seed(0)
steps, B, L = int(os.environ.get("STEPS", "6")), 4, 64
config = LlamaConfig(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
)
model = LlamaForCausalLM(config).train()
opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
ids = torch.randint(0, 49152, (B, L))


def step():
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


step()
t = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({
    "torch": torch.__version__,
    "threads": torch.get_num_threads(),
    f"smollm2_135m_b{B}_l{L}_fp32_tokens_per_s": round(steps * B * L / (time.perf_counter() - t), 1),
}))
