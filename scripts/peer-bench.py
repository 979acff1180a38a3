#!/usr/bin/env python3
"""The PyTorch peer for side-by-side runs: a Qwen2.5-7B-shaped model from
transformers, random init, bf16 parameters, fused AdamW (lr 1e-4, wd 0.1,
betas 0.9/0.95), SDPA attention, batch x 1024 Zipf-like tokens, one warmup
step on other data, then `steps` timed steps. Prints one JSON line: tokens/s,
step time, peak memory, memory free once the parameters exist.

    python3 scripts/peer-bench.py [--steps 5] [--batch 16] [--compile [regional|full]] [--ckpt all|none|N]

--ckpt all     every decoder layer recomputed in backward (non-reentrant checkpointing)
--ckpt N       the first N layers recomputed, the rest keep their activations
--ckpt none    nothing recomputed (at 16 x 1024 this needs
               PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True; set it yourself,
               before Python starts)
--compile [regional|full]
               regional (the default): torch.compile, as PyTorch's own recipe for large models
               recommends: each decoder layer compiled (one graph, reused by all
               28 layers), and the head (lm_head and the shifted float32
               cross-entropy) compiled as a second graph. Compilation happens
               during the warmup step, outside the timed steps.
               full: the whole loss function (model and head) as one torch.compile
               (slower to compile).
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--seq", type=int, default=1024)
ap.add_argument("--compile", nargs="?", const="regional", default=None, choices=["regional", "full"])
ap.add_argument("--ckpt", default="all", help="all, none or a number of layers")
ap.add_argument("--layers", type=int, default=28, help="decoder layers (28 for Qwen2.5-7B; fewer for a smoke test)")
args = ap.parse_args()

cfg = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=args.layers,
                  num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=131072,
                  rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False,
                  attn_implementation="sdpa")
torch.manual_seed(0)
free_at_start, total = torch.cuda.mem_get_info()
t0 = time.time()
with torch.device("cuda"):
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
setup = time.time() - t0
torch.cuda.synchronize()
torch.cuda.empty_cache()  # the float32 copies made while initialising
free_after_params, _ = torch.cuda.mem_get_info()
params = sum(p.numel() for p in model.parameters())
model.config.use_cache = False
model.train()

layers = model.model.layers
n_ckpt = {"all": len(layers), "none": 0}.get(args.ckpt)
n_ckpt = int(args.ckpt) if n_ckpt is None else n_ckpt
if n_ckpt > 0:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # transformers 5: each decoder layer is a GradientCheckpointingLayer with its own switch.
    for i, layer in enumerate(layers):
        if i >= n_ckpt:
            assert hasattr(layer, "gradient_checkpointing"), "this transformers has no per-layer checkpointing switch"
            layer.gradient_checkpointing = False

if args.compile == "regional":
    for layer in layers:
        layer.compile()


def head(hidden, ids):  # lm_head and the loss as Hugging Face computes it: float32 logits, shifted
    logits = model.lm_head(hidden)
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))


head_fn = torch.compile(head) if args.compile == "regional" else head


def loss_of(ids):
    return head_fn(model.model(input_ids=ids).last_hidden_state, ids)


if args.compile == "full":
    loss_of = torch.compile(loss_of)


opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95), fused=True)
g = torch.Generator(device="cuda").manual_seed(42)
# Zipf-like ids: heavy head, long tail.
u = torch.rand((args.steps + 1, args.batch, args.seq), generator=g, device="cuda")
data = ((cfg.vocab_size ** u) - 1).long().clamp_(0, cfg.vocab_size - 1)


def step(ids):
    loss = loss_of(ids)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


t0 = time.time()
step(data[args.steps])  # warmup on other data (and compilation)
torch.cuda.synchronize()
warmup = time.time() - t0
torch.cuda.reset_peak_memory_stats()
t0 = time.time()
for i in range(args.steps):
    loss = step(data[i])
torch.cuda.synchronize()
dt = time.time() - t0
tokens = args.steps * args.batch * args.seq
name = f"pytorch-{'compiled-' + args.compile if args.compile else 'eager'}-ckpt-{args.ckpt}"
print(json.dumps({
    "peer": name, "torch": torch.__version__, "compile": args.compile, "checkpointed_layers": n_ckpt,
    "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""), "parameters": params,
    "tokens_per_second": tokens / dt, "step_seconds": dt / args.steps, "tokens": tokens,
    "peak_memory_bytes": torch.cuda.max_memory_allocated(), "reserved_peak_bytes": torch.cuda.max_memory_reserved(),
    "free_at_start_bytes": free_at_start, "free_after_params_bytes": free_after_params, "total_bytes": total,
    "final_loss": float(loss), "setup_seconds": setup, "warmup_seconds": warmup,
}), flush=True)
