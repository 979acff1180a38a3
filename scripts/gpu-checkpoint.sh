#!/usr/bin/env bash
# Checkpoint starts on the GPU machine (one H200), for the mechanics (random
# weights from scripts/make-checkpoint.js: the losses mean nothing):
#   1. the engine built with CUDA, a Qwen2.5-7B-shaped benchmark with a
#      sharded bf16 checkpoint (15.2 GB) in its model folder;
#   2. the perturbation alone, as the evaluator runs it at GO (chunks of 2^24
#      elements, normal(1, 2^-8) in float32, multiply, round once) over
#      7.6G bf16 elements, timed with a device sync either side; and the share
#      of elements it changes;
#   3. local-bench on it: checkpoint_seconds (the per-run copy into the
#      parameter memory, outside the clock) and the run's overhead and tokens/s.
#   scripts/gpu-checkpoint.sh prepare     steps 1-2 (build, benchmark, checkpoint, perturbation)
#   scripts/gpu-checkpoint.sh bench       step 3 (needs `prepare` on the same warm machine: call it
#                                         right after, before the machine is given back when idle)
# Not yet run: written 2026-12-02 without device access to a checkout carrying it.
# Needs in carry: .gpu and .device, as scripts/device-pack.sh writes them; it
# works in /tmp/gpu-ckpt, a copy of this checkout, so that the build and the
# benchmark outlive one call on a warm machine. Results under $OUT.
set -uo pipefail
source scripts/device-env.sh
BENCH=/tmp/bench7b-ckpt
WORK=/tmp/gpu-ckpt
case "${1:-}" in
  prepare)
    rm -rf "$WORK" && mkdir -p "$WORK" && cp -a . "$WORK/" && cd "$WORK" || exit 1
    date -u '+date: %F %T UTC'; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    t=$(date +%s)
    TOURNAMENT_BUILD_JOBS=16 node scripts/build-native.js > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    echo "build: $(( $(date +%s) - t )) s"
    rm -rf "$BENCH"
    bin/tournament setup-benchmark --preset 7b-shape --benchmark-dir "$BENCH" > "$OUT/setup.log" 2>&1 || { tail -5 "$OUT/setup.log"; exit 1; }
    node scripts/make-checkpoint.js --benchmark-dir "$BENCH" || exit 1
    PYTHONUNBUFFERED=1 python3 - <<'PY'
import time, torch
n, chunk, sigma = 7_615_616_512, 1 << 24, 2.0 ** -8
p = torch.empty(n, dtype=torch.bfloat16, device="cuda")
for off in range(0, n, 1 << 28):
    p[off:off + (1 << 28)].normal_(0, 0.02)
before = p[: 1 << 26].clone()
g = torch.Generator(device="cuda")
def perturb(seed):
    g.manual_seed(seed)
    for off in range(0, n, chunk):
        part = p[off:off + chunk]
        f = torch.normal(1.0, sigma, part.shape, generator=g, device="cuda", dtype=torch.float32)
        part.copy_(part.float().mul_(f))
times = []
for seed in (1, 2, 3):
    torch.cuda.synchronize(); t = time.perf_counter(); perturb(seed); torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
    if seed == 1:
        changed = (p[: 1 << 26] != before).float().mean().item()
print(f"perturbation of {n} bf16 elements: {', '.join(f'{x:.4f}' for x in times)} s; share of elements changed: {changed:.3f}")
host = torch.empty(n * 2, dtype=torch.uint8, pin_memory=True)
dev = p.view(torch.uint8)
for _ in range(2):
    torch.cuda.synchronize(); t = time.perf_counter(); dev.copy_(host); torch.cuda.synchronize()
    print(f"pinned host -> device copy of {n * 2 / 1e9:.1f} GB: {time.perf_counter() - t:.3f} s")
PY
    ;;
  bench)
    cd "$WORK" || { echo "no $WORK: run prepare first on this machine"; exit 1; }
    bin/tournament local-bench --benchmark-dir "$BENCH" --device cuda --runs 1 --warmup-steps 1 --json --work-dir /tmp/gpu-ckpt-work \
      > "$OUT/local-bench.json" 2> "$OUT/local-bench.err"
    echo "local-bench exit $?"; tail -5 "$OUT/local-bench.err"
    node -e '
      const v = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      for (const [who, rs] of [["submission", v.runs], ["reference", v.reference_runs]])
        for (const r of rs) console.log(who, "seconds", r.seconds, "tokens/s", r.tokens_per_second, "overhead", r.overhead_seconds, "checkpoint_seconds", r.checkpoint_seconds);
      console.log("accepted", v.accepted, v.reasons.join("; "));' "$OUT/local-bench.json"
    ;;
  *) echo "usage: scripts/gpu-checkpoint.sh prepare|bench" >&2; exit 2 ;;
esac
