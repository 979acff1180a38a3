#!/usr/bin/env python3
"""The PyTorch peer for side-by-side runs: Qwen2.5-7B-shaped model from
transformers, random init, bf16 parameters, fused AdamW, gradient
checkpointing on every layer (no torch.compile), batch x 1024 Zipf-like
tokens. Prints one JSON line: tokens/s, step time, peak memory.
    python3 scripts/peer-bench.py [steps] [batch]
"""
import json
import sys
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 16
seq = 1024
cfg = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                  num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=131072,
                  rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False,
                  attn_implementation="sdpa")
torch.manual_seed(0)
t0 = time.time()
with torch.device("cuda"):
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
setup = time.time() - t0
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.config.use_cache = False
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95), fused=True)
g = torch.Generator(device="cuda").manual_seed(42)
# Zipf-like ids: heavy head, long tail.
u = torch.rand((steps + 1, batch, seq), generator=g, device="cuda")
data = ((cfg.vocab_size ** u) - 1).long().clamp_(0, cfg.vocab_size - 1)


def step(ids):
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


step(data[steps])  # warmup on other data
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
t0 = time.time()
for i in range(steps):
    loss = step(data[i])
torch.cuda.synchronize()
dt = time.time() - t0
tokens = steps * batch * seq
print(json.dumps({"peer": "pytorch-eager-ckpt-fused-adamw", "torch": torch.__version__, "tokens_per_second": tokens / dt,
                  "step_seconds": dt / steps, "peak_memory_bytes": torch.cuda.max_memory_allocated(),
                  "final_loss": float(loss), "setup_seconds": setup}))
