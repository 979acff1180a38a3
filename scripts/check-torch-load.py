#!/usr/bin/env python3
"""Checks that token files written by `tournament setup-benchmark` load in PyTorch.

    python3 scripts/check-torch-load.py benchmark/data/train.pt [more.pt ...]
    python3 scripts/check-torch-load.py --save-reference OUT_DIR

For each file: torch.load(weights_only=True) (and mmap=True where this PyTorch has
it), then prints shape, dtype, min, max, sum and a position-weighted checksum
sum(t.flatten() * arange(numel)), the same numbers `node scripts/token-checksum.js`
prints for the file, so both sides can be compared by eye.

--save-reference writes files made by this PyTorch's own torch.save (a 3x4 int64
arange, its transpose, an int32 copy), for use as test fixtures of readTokens.
"""
import sys

import torch


def checksum(t):
    flat = t.contiguous().view(-1).to(torch.int64)
    w = (flat * torch.arange(flat.numel(), dtype=torch.int64)).sum().item()
    return int(flat.sum().item()), int(w)


def check(path):
    t = torch.load(path, weights_only=True)
    if not isinstance(t, torch.Tensor):
        raise SystemExit(f"{path}: torch.load returned {type(t).__name__}, not a tensor")
    s, w = checksum(t)
    print(f"{path}: torch {torch.__version__} shape {tuple(t.shape)} dtype {t.dtype} "
          f"min {int(t.min())} max {int(t.max())} sum {s} wsum {w}")
    try:
        m = torch.load(path, weights_only=True, mmap=True)
        print(f"  mmap=True: equal {bool(torch.equal(m, t))}")
    except TypeError:
        print("  mmap=True: not supported by this PyTorch")


def save_reference(out):
    import os
    os.makedirs(out, exist_ok=True)
    t = torch.arange(12, dtype=torch.int64).reshape(3, 4)
    torch.save(t, f"{out}/torch-i64.pt")
    torch.save(t.t(), f"{out}/torch-i64-t.pt")
    torch.save(t.to(torch.int32), f"{out}/torch-i32.pt")
    print(f"wrote reference files with torch {torch.__version__} to {out}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    if args[0] == "--save-reference":
        save_reference(args[1])
    else:
        for p in args:
            check(p)
