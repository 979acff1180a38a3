#!/usr/bin/env python3
"""Builds test/fixtures/qwen2-tiny: a tiny random Qwen2 made by Hugging Face
transformers (the real implementation) and what it computes, for the engine's
correctness test (test/engine-reference.test.ts).

Writes config.json, model.safetensors (float32 weights) and expected.safetensors:
  input_ids  [2, 16] int64
  logits     [2, 16, V] float32
  loss       [] float32 (transformers' causal-LM loss with labels = input_ids)
  grad.<name> float32, the gradient of that parameter after loss.backward()
Run where torch and transformers are installed:  python3 scripts/make-qwen2-fixture.py OUT_DIR
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

GRADS = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.k_proj.bias",
    "model.layers.1.self_attn.v_proj.weight",
    "model.layers.1.self_attn.o_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
    "model.layers.0.input_layernorm.weight",
    "model.norm.weight",
    "lm_head.weight",
]


def main(out):
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
        use_sliding_window=False, attn_implementation="eager", torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(cfg).float()
    # Non-trivial biases and norms, so the test sees them used.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.1)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    # save_pretrained writes generation_config.json too; the engine needs only config.json.
    gen = os.path.join(out, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)

    ids = torch.randint(0, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    model.train()
    outputs = model(input_ids=ids, labels=ids)
    outputs.loss.backward()
    params = dict(model.named_parameters())
    expected = {
        "input_ids": ids.contiguous(),
        "logits": outputs.logits.detach().float().contiguous(),
        "loss": outputs.loss.detach().float().reshape([]),
    }
    for n in GRADS:
        expected["grad." + n] = params[n].grad.detach().float().contiguous()
    save_file(expected, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(
            "Tiny random Qwen2 (2 layers, hidden 64, 4 query / 2 key-value heads, vocab 256, float32) made by\n"
            f"transformers {__import__('transformers').__version__} on torch {torch.__version__} with "
            "scripts/make-qwen2-fixture.py;\nexpected.safetensors holds its input ids, logits, loss and the "
            "gradients of: " + ", ".join(GRADS) + ".\n"
        )
    print(json.dumps({"loss": float(outputs.loss), "files": sorted(os.listdir(out))}))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/qwen2-tiny")
