# The tuned example's matrix products (local_test/examples/tuned.cpp) at the
# Qwen2.5-7B shape, batch 16 x 1024, timed one by one on the GPU with CUDA
# events (median of several launches, random bf16 data), under cuBLAS and
# cuBLASLt (torch.backends.cuda.preferred_blas_library): TFLOP/s per product
# and ms per training step (count x time); then the step's large reductions.
# A measuring tool for issue 13.
#   python3 native/tools/gemm_shapes.py [--reps 10]
import argparse
import json
import sys

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--reps", type=int, default=10)
ap.add_argument("--json", default="")
args = ap.parse_args()

T, H, I, KV, V, L, C = 16384, 3584, 18944, 512, 152064, 28, 2048
QKV = H + 2 * KV
dev = "cuda"
bf = torch.bfloat16
torch.manual_seed(0)


def r(*shape, scale=0.02):
    return (torch.randn(*shape, device=dev, dtype=torch.float32) * scale).to(bf)


# Operands (kept alive across cases; the [T, I] ones shared)
n1, a, dh, dy, dn = r(T, H), r(T, H), r(T, H), r(T, H), r(T, H)
w_qkv, b_qkv, w_o = r(QKV, H), r(QKV), r(H, H)
w_g, w_d = r(I, H), r(H, I)
tI, tI2 = r(T, I), r(T, I)
dqkv = r(T, QKV)
w_head, hc, gc = r(V, H), r(C, H), r(C, V)
out_TH = torch.empty(T, H, device=dev, dtype=bf)

# name, count per step, flops, fn
cases = [
    ("fwd qkv addmm(b, n1, Wqkv^T)", L, 2 * T * H * QKV, lambda: torch.addmm(b_qkv, n1, w_qkv.t())),
    ("fwd o a Wo^T", L, 2 * T * H * H, lambda: a.mm(w_o.t())),
    ("fwd gate/up n2 Wg^T", 2 * L, 2 * T * H * I, lambda: n1.mm(w_g.t())),
    ("fwd down p Wd^T", L, 2 * T * I * H, lambda: tI.mm(w_d.t())),
    ("bwd dp dy Wd", L, 2 * T * H * I, lambda: dy.mm(w_d)),
    ("bwd dWd dy^T p", L, 2 * T * H * I, lambda: dy.t().mm(tI)),
    ("bwd dWg gate^T n2", 2 * L, 2 * T * H * I, lambda: tI.t().mm(n1)),
    ("bwd dn2 gate Wg", L, 2 * T * I * H, lambda: tI.mm(w_g)),
    ("bwd dn2.addmm_(up, Wu)", L, 2 * T * I * H, lambda: out_TH.addmm_(tI2, w_g)),
    ("bwd dWo dh^T a", L, 2 * T * H * H, lambda: dh.t().mm(a)),
    ("bwd da dh Wo", L, 2 * T * H * H, lambda: dh.mm(w_o)),
    ("bwd dWqkv dqkv^T n1", L, 2 * T * QKV * H, lambda: dqkv.t().mm(n1)),
    ("bwd dn1 dqkv Wqkv", L, 2 * T * QKV * H, lambda: dqkv.mm(w_qkv)),
    ("head logits hc W^T", 8, 2 * C * H * V, lambda: hc.mm(w_head.t())),
    ("head dh g W", 8, 2 * C * V * H, lambda: gc.mm(w_head)),
    ("head dW g^T hc", 8, 2 * C * V * H, lambda: gc.t().mm(hc)),
]


def bench(fn, reps):
    for _ in range(3):
        fn()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for s, e in ev:
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    t = sorted(s.elapsed_time(e) for s, e in ev)
    return t[len(t) // 2]


res = {}
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, default blas {torch.backends.cuda.preferred_blas_library()}")
for lib in ("cublas", "cublaslt"):
    torch.backends.cuda.preferred_blas_library(lib)
    for name, count, flops, fn in cases:
        ms = bench(fn, args.reps)
        res.setdefault(name, {"count": count, "flops": flops})[lib] = ms
tot = {"cublas": 0.0, "cublaslt": 0.0, "best": 0.0}
print(f"{'product':34s} {'n/step':>6s} {'cublas ms':>9s} {'TF/s':>5s} {'lt ms':>8s} {'TF/s':>5s} {'step ms (cublas)':>16s}")
for name, v in res.items():
    c, f = v["count"], v["flops"]
    tot["cublas"] += c * v["cublas"]
    tot["cublaslt"] += c * v["cublaslt"]
    tot["best"] += c * min(v["cublas"], v["cublaslt"])
    print(f"{name:34s} {c:6d} {v['cublas']:9.3f} {f / v['cublas'] / 1e9:5.0f} {v['cublaslt']:8.3f} {f / v['cublaslt'] / 1e9:5.0f} {c * v['cublas']:16.1f}")
flops = sum(v["count"] * v["flops"] for v in res.values())
print(f"per step: cublas {tot['cublas']:.1f} ms, cublaslt {tot['cublaslt']:.1f} ms, best of each {tot['best']:.1f} ms; "
      f"{flops / 1e12:.1f} TFLOP -> {flops / tot['cublas'] / 1e9:.0f} TFLOP/s (cublas)")

# The step's large reductions (the trace's "reduce" class, 25 ms a step in the
# 2026-12-04 profile): each layer's q/k/v bias gradient, a column sum of the
# [T, H + 2 KV] bf16 gradient, as a reduction and as a product with a row of
# ones (cuBLAS, float32 accumulation); the loss head's [8, V, H] chunk sum.
ones_T = torch.ones(1, T, device=dev, dtype=bf)
products = r(8, V, H)
reductions = [
    ("bias grad dqkv.sum(0)", L, T * QKV * 2, lambda: dqkv.sum(0)),
    ("bias grad ones[1, T] dqkv", L, T * QKV * 2, lambda: ones_T.mm(dqkv)),
    ("head products.sum(0) [8, V, H]", 1, 8 * V * H * 2, lambda: products.sum(0)),
]
red = {}
print(f"{'reduction':34s} {'n/step':>6s} {'ms':>9s} {'GB/s':>6s} {'step ms':>8s}")
for name, count, nbytes, fn in reductions:
    ms = bench(fn, args.reps)
    red[name] = {"count": count, "bytes": nbytes, "ms": ms}
    print(f"{name:34s} {count:6d} {ms:9.3f} {nbytes / ms / 1e6:6.0f} {count * ms:8.1f}")
d = (dqkv.float().sum(0) - ones_T.mm(dqkv).float().squeeze(0)).abs().max().item()
print(f"bias grad: sum and product differ by at most {d:.3g} (values about {dqkv.float().sum(0).abs().max().item():.3g})")
if args.json:
    json.dump({"cases": res, "totals_ms": tot, "reductions": red}, open(args.json, "w"), indent=1)
