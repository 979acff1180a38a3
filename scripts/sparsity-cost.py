#!/usr/bin/env python3
"""What leaving out parts of a weight gradient's matrix product can save on a GPU (PyTorch, one card).

An MLP weight gradient of Qwen2.5-7B is a^T b with a [T, I] and b [T, H] (T = 16 x 1024 tokens, I = 18944, H = 3584).
A cheat that drops its smallest terms is only a speed cheat if some kernel skips them for less than the dense
product costs. This times, side by side on one card:
  - the dense bf16 product, and the same with a share of a's entries zeroed (the values do not change its time);
  - the same zeros as a sparse CSR operand (cuSPARSE), bf16 and float32, against dense float32;
  - 2:4 semi-structured sparsity (half of every group of four along T), the one pattern the tensor cores skip;
  - the dense product as a sum over chunks of tokens, all of them and one fewer (a block-sparse kernel's saving);
  - attack pass 39's form: the least-weighing quarter of the tokens sorted out and run from INT8 operands.
Prints one JSON object. Usage: python3 scripts/sparsity-cost.py [--tokens T --inter I --hidden H] [--reps N]
(on a machine without CUDA it times the CPU; give it a smaller shape there).
"""
import argparse
import json
import time

import torch


def timed(fn, reps):
    """Median milliseconds of fn over reps calls, after one untimed call."""
    cuda = torch.cuda.is_available()
    fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16 * 1024)
    ap.add_argument("--inter", type=int, default=18944)
    ap.add_argument("--hidden", type=int, default=3584)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    T, I, H = args.tokens, args.inter, args.hidden
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(T, I, device=dev, dtype=torch.bfloat16, generator=g)  # [T, I] the gradient at the MLP's output side
    b = torch.randn(T, H, device=dev, dtype=torch.bfloat16, generator=g)  # [T, H] the layer's normed input
    at = a.t().contiguous()                                                 # [I, T] as a kernel reads it
    name = torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    out = {"device": name, "torch": torch.__version__, "shape": [T, I, H], "ms": {}}
    ms = out["ms"]
    ms["dense_bf16"] = timed(lambda: at @ b, args.reps)

    for share in (0.085, 0.5):
        key = f"{int(share * 1000) / 10:g}pct"
        drop = torch.rand(I, T, device=dev, generator=g) < share
        az = at.masked_fill(drop, 0)  # [I, T] with a share of zeros
        ms[f"dense_bf16_zeros_{key}"] = timed(lambda: az @ b, args.reps)
        for dt, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            try:
                sp = az.to(dt).to_sparse_csr()
                bd = b.to(dt)
                ms[f"csr_{name}_{key}"] = timed(lambda: sp @ bd, max(3, args.reps // 4))
                del sp
            except Exception as e:  # not every build has every sparse kernel
                out.setdefault("unsupported", {})[f"csr_{name}_{key}"] = str(e).splitlines()[0][:200]
        del az, drop
    bf = b.float()
    atf = at.float()
    ms["dense_fp32"] = timed(lambda: atf @ bf, args.reps)
    del atf, bf

    # 2:4 along T: of every four consecutive tokens, each row of at keeps its two largest.
    try:
        from torch.sparse import to_sparse_semi_structured
        grp = at.view(I, T // 4, 4)
        idx = grp.abs().topk(2, dim=-1).indices
        mask = torch.zeros_like(grp, dtype=torch.bool).scatter_(-1, idx, True).view(I, T)
        a24 = at.masked_fill(~mask, 0)
        s24 = to_sparse_semi_structured(a24)
        ms["semi_structured_2of4_bf16"] = timed(lambda: s24 @ b, args.reps)
        ms["dense_bf16_2of4_values"] = timed(lambda: a24 @ b, args.reps)
        del s24, a24, mask, idx
    except Exception as e:
        out.setdefault("unsupported", {})["semi_structured_2of4_bf16"] = str(e).splitlines()[0][:200]

    # Whole chunks of C tokens (the coarsest tile a block-sparse kernel skips): all of them, and one fewer.
    C = 1024
    nchunks = T // C
    def chunked(keep):
        acc = torch.zeros(I, H, device=dev, dtype=torch.float32)
        for c in range(keep):
            acc.add_(at[:, c * C:(c + 1) * C] @ b[c * C:(c + 1) * C])
        return acc
    ms[f"chunks_{C}_all_{nchunks}"] = timed(lambda: chunked(nchunks), max(3, args.reps // 4))
    ms[f"chunks_{C}_keep_{nchunks - 1}"] = timed(lambda: chunked(nchunks - 1), max(3, args.reps // 4))
    # Attack pass 39's form: the tokens sorted by |a_t| |b_t|, the least-weighing quarter from INT8 operands
    # (torch._int_mm with one scale per operand, the cheapest INT8 form), the rest in bf16, with the norms, the sort,
    # the gathers and the quantisation; and the INT8 product alone, against dense bf16 on the same quarter.
    try:
        a_tok = a  # [T, I]
        q4 = T // 4
        def int8_chunk():
            bound = a_tok.float().norm(dim=1) * b.float().norm(dim=1)             # [T]
            order = bound.argsort()
            small, rest = order[:q4], order[q4:]
            a8, b8 = a_tok.index_select(0, small), b.index_select(0, small)       # [T/4, I], [T/4, H]
            sa, sb = a8.abs().amax().float() / 127, b8.abs().amax().float() / 127
            qa = (a8.float() / sa).round().to(torch.int8).t().contiguous()        # [I, T/4]
            qb = (b8.float() / sb).round().to(torch.int8).t().contiguous().t()     # [T/4, H], column-major as _int_mm takes it
            part = torch._int_mm(qa, qb).float() * (sa * sb)                      # [I, H]
            return part + a_tok.index_select(0, rest).t() @ b.index_select(0, rest)
        ms["int8_quarter_sorted_with_overheads"] = timed(int8_chunk, args.reps)
        qa = torch.randint(-127, 127, (I, q4), device=dev, dtype=torch.int8)
        qb = torch.randint(-127, 127, (H, q4), device=dev, dtype=torch.int8).t()
        ms["int8_quarter_product_alone"] = timed(lambda: torch._int_mm(qa, qb), args.reps)
        aq, bq = at[:, :q4].contiguous(), b[:q4].contiguous()
        ms["bf16_quarter_product_alone"] = timed(lambda: aq @ bq, args.reps)
    except Exception as e:
        out.setdefault("unsupported", {})["int8_quarter"] = str(e).splitlines()[0][:200]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
