#!/usr/bin/env bash
# Issue 13's performance table, in one call on the GPU machine (one H200):
#   0. the matrix-product floor: one step's products timed alone (PERF_GEMM);
#   1. the engine built with CUDA, a Qwen2.5-7B-shaped benchmark (random init,
#      bf16, 16 x 1024 synthetic tokens, 5 timed steps after 1 warmup step);
#   2. each submission through the full `local-bench` path (compile in the
#      sandbox, reference run of the official baseline, the submission's run,
#      verification); every reference run is our baseline through that same
#      path, so the baseline row comes from them;
#   3. the memory probe (test/plugins/memory_probe.cpp) through local-bench:
#      GiB a submission can allocate at the start of the timed call;
#   4. the PyTorch peers (scripts/peer-bench.py), as far as the deadline allows;
#   5. one table: tokens/s, MFU (6 x params x tokens over 790 TFLOP/s), step
#      time, peak memory, memory free to the submission, ratio to each peer.
#
#   scripts/gpu-perf.sh [SUBMISSION.cpp ...]     (default: local_test/examples/*.cpp)
# Environment:
#   PERF_RUNS=1            local-bench runs per submission
#   PERF_BASELINE=0        1: also local-bench the baseline as a submission
#   PERF_PEERS="compiled:none compiled:all eager:all"   peers in this order, MODE:CKPT each
#                          (MODE eager, compiled (regional) or full; CKPT all, none or N)
#   PERF_GEMM=1            0: skip the matrix-product floor (about 12 s)
#   PERF_PROBE=1           0: skip the memory probe (about 30 s)
#   PERF_DEADLINE=560      seconds for the whole script; a peer that cannot
#                          finish before it is skipped, and the table says so
# Results: $OUT/table.md (also printed last), $OUT/perf.json, $OUT/logs.tgz.
# Needs in carry: .gpu and .device, as scripts/device-pack.sh writes them.
set -uo pipefail
source scripts/device-env.sh
T0=$(date +%s)
DEADLINE=${PERF_DEADLINE:-560}
RUNS=${PERF_RUNS:-1}
PEERS=${PERF_PEERS-compiled:none compiled:all eager:all}
LOG=/tmp/perf-logs; rm -rf "$LOG"; mkdir -p "$LOG"
BENCH=/tmp/bench7b
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }

{
  date -u '+date: %F %T UTC'
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
  echo "bwrap: ${TOURNAMENT_BWRAP:-$(command -v bwrap)}; caller uid $(id -u); commit $(cat .commit 2>/dev/null || echo unknown)"
} | tee "$LOG/machine.txt"

if [ "${PERF_GEMM:-1}" = 1 ]; then
  stamp "matrix-product floor of one 16 x 1024 step (torch.matmul, bf16)"
  PYTHONUNBUFFERED=1 timeout 120 python3 - > "$LOG/gemm-floor.txt" 2>&1 <<'PY'
# The matrix products of one Qwen2.5-7B training step at 16 x 1024 tokens
# (forward, input and weight gradients), each timed alone with CUDA events
# (median of 5 after 2 warmups), and flash attention forward + backward: the
# floor under any implementation that runs these products as they are.
import torch, torch.nn.functional as F
T, H, I, KV, V, L = 16384, 3584, 18944, 512, 152064, 28
def t(fn):
    for _ in range(2): fn()
    ts = []
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b) / 1e3)
    return sorted(ts)[2]
def linear(M, K, N):  # forward, input gradient, weight gradient
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16); w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
    dy = torch.randn(M, N, device="cuda", dtype=torch.bfloat16)
    r = (t(lambda: x @ w.t()), t(lambda: dy @ w), t(lambda: dy.t() @ x))
    # The same products with the weight kept transposed ([K, N], a copy a step
    # could make once) and dW taken as (x^T dy)^T: cuBLAS's speed depends on
    # the operands' layout, not only on the shape.
    wT = w.t().contiguous()
    alt = (t(lambda: x @ wT), t(lambda: dy @ wT.t()), t(lambda: x.t() @ dy), t(lambda: w.t().contiguous()))
    del x, w, wT, dy; return r, alt
total, flops = 0.0, 0.0
for name, K, N, per_step in [("q/o", H, H, 2 * L), ("k/v", H, KV, 2 * L), ("qkv fused", H, H + 2 * KV, 0), ("gate/up", H, I, 2 * L),
                             ("gate+up fused", H, 2 * I, 0), ("down", I, H, L), ("lm_head", H, V, 1)]:
    (f, di, dw), (af, adi, adw, tr) = linear(T, K, N) if N != V else linear(4096, K, N)
    if N == V: f, di, dw, af, adi, adw = 4 * f, 4 * di, 4 * dw, 4 * af, 4 * adi, 4 * adw  # lm_head timed on a quarter of the rows (memory)
    tf = 2 * T * K * N / 1e12
    print(f"{name:14s} [{T}x{K}] x [{K}x{N}]: fwd {f*1e3:6.2f} ms ({tf/f:5.0f} TF/s)  dX {di*1e3:6.2f} ms ({tf/di:5.0f})  dW {dw*1e3:6.2f} ms ({tf/dw:5.0f})  x{per_step} per step")
    print(f"{'':14s} weight transposed: fwd {af*1e3:6.2f} ms ({tf/af:5.0f})  dX {adi*1e3:6.2f} ms ({tf/adi:5.0f})  dW^T {adw*1e3:6.2f} ms ({tf/adw:5.0f});  the transposed copy {tr*1e3:.3f} ms")
    total += per_step * (f + di + dw); flops += per_step * 3 * tf
q = torch.randn(16, 28, 1024, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
k = torch.randn(16, 4, 1024, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
v = torch.randn(16, 4, 1024, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
def att():
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True); o.backward(torch.ones_like(o))
ta = t(att)
print(f"flash attention fwd+bwd (GQA 28/4, causal, 16 x 1024): {ta*1e3:.2f} ms per layer, backend {torch._fused_sdp_choice(q, k, v, is_causal=True, enable_gqa=True)}")
print(f"matrix products per step: {total:.3f} s ({flops/total:.0f} TF/s effective); with attention {total + L*ta:.3f} s -> at most {T/(total + L*ta):,.0f} tokens/s")
PY
  cat "$LOG/gemm-floor.txt"
fi

stamp "build"
TOURNAMENT_BUILD_JOBS=16 node scripts/build-native.js > "$LOG/build.log" 2>&1 || { tail -40 "$LOG/build.log"; tar czf "$OUT/logs.tgz" -C /tmp perf-logs; exit 1; }
bin/tournament setup-benchmark --preset 7b-shape --benchmark-dir "$BENCH" > "$LOG/setup.log" 2>&1 || { tail -5 "$LOG/setup.log"; exit 1; }

bench() {  # NAME FILE [local-bench options...]
  local name=$1 file=$2; shift 2
  local limit; limit=$(( $(left) - 20 ))
  [ "$limit" -gt 60 ] || { stamp "skip local-bench $name: deadline"; return; }
  stamp "local-bench $name ($file)"
  timeout "$limit" bin/tournament local-bench "$file" --benchmark-dir "$BENCH" --device cuda --warmup-steps 1 \
    --json --work-dir /tmp/perf-work "$@" > "$LOG/lb-$name.json" 2> "$LOG/lb-$name.err"
  echo "  exit $?"
  grep -h "memory_probe:" "$LOG/lb-$name.err" | head -3
}

subs=("$@")
[ ${#subs[@]} -gt 0 ] || subs=(local_test/examples/*.cpp)
for f in "${subs[@]}"; do [ -f "$f" ] && bench "$(basename "$f" .cpp)" "$f" --runs "$RUNS"; done
[ "${PERF_PROBE:-1}" = 1 ] && bench memory_probe test/plugins/memory_probe.cpp --runs 1
[ "${PERF_BASELINE:-0}" = 1 ] && bench baseline local_test/train.cpp --runs "$RUNS"

for spec in $PEERS; do
  mode=${spec%%:*} ckpt=${spec#*:}
  name="peer-$mode-$ckpt"
  # Measured on the H200 (2026-12-02): eager about 32 s, regional compilation about 50 s, whole-model longer.
  need=$(case $mode in eager) echo 40 ;; compiled) echo 60 ;; *) echo 200 ;; esac)
  if [ "$(left)" -lt "$need" ]; then stamp "skip $name: $(left) s left, needs about $need"; echo "{\"peer\":\"$name\",\"skipped\":\"deadline\"}" > "$LOG/$name.json"; continue; fi
  args=(--steps 5 --batch 16 --ckpt "$ckpt")
  case $mode in compiled) args+=(--compile regional) ;; full) args+=(--compile full) ;; esac
  env=()
  [ "$ckpt" = none ] && env=(PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)
  stamp "$name"
  env "${env[@]}" PYTHONUNBUFFERED=1 timeout $(( $(left) - 10 )) python3 scripts/peer-bench.py "${args[@]}" > "$LOG/$name.json" 2> "$LOG/$name.err"
  rc=$?; echo "  exit $rc"
  [ $rc -eq 0 ] || { tail -3 "$LOG/$name.err"; echo "{\"peer\":\"$name\",\"failed\":$rc}" > "$LOG/$name.json"; }
done
stamp "table"

python3 - "$LOG" "$OUT" <<'EOF'
import glob, json, os, re, statistics, sys
log, out = sys.argv[1], sys.argv[2]
PEAK = 790e12
GiB = 2 ** 30
machine = open(os.path.join(log, "machine.txt")).read().strip()

def load(p):
    try:
        return json.load(open(p))
    except Exception as e:
        return {"error": str(e)}

probe = None
for p in glob.glob(os.path.join(log, "lb-memory_probe.*")):  # the verdict's reasons carry the probe's line
    for m in re.finditer(r"memory_probe: (\d+) x 1 GiB.*?free ([\d.-]+) of ([\d.-]+) GiB", open(p, errors="replace").read()):
        probe = {"gib": int(m.group(1)), "free_gib": float(m.group(2)), "total_gib": float(m.group(3))}

rows, ref_runs, params = [], [], None
for p in sorted(glob.glob(os.path.join(log, "lb-*.json"))):
    name = os.path.basename(p)[3:-5]
    v = load(p)
    if "runs" not in v:
        rows.append({"name": name, "note": "local-bench gave no verdict: " + v.get("error", "")[:80]})
        continue
    params = v.get("parameters") or params
    ref_runs += [r for r in v.get("reference_runs", []) if r.get("tokens_per_second")]
    if name == "memory_probe":
        continue
    done = [r for r in v["runs"] if r.get("tokens_per_second")]
    rows.append({
        "name": name + (" (submission)" if name == "baseline" else ""),
        "tps": statistics.median([r["tokens_per_second"] for r in done]) if done else None,
        "step": statistics.median([r["step_seconds"] for r in done]) if done else None,
        "peak": max((r["reported_peak_memory_bytes"] or 0) for r in done) if done else None,
        "params": v.get("parameters"), "ours": True,
        "verdict": ("ACCEPTED" if v["accepted"] else "REJECTED: " + "; ".join(v["reasons"])[:300]) + f" ({len(v['runs'])} run(s))",
        "checks": [r.get("checks") for r in v["runs"]],
    })
if ref_runs:
    rows.insert(0, {
        "name": f"baseline (local_test/train.cpp, the reference runs, n={len(ref_runs)})",
        "tps": statistics.median([r["tokens_per_second"] for r in ref_runs]),
        "step": statistics.median([r["step_seconds"] for r in ref_runs]),
        "peak": max(r["reported_peak_memory_bytes"] or 0 for r in ref_runs),
        "params": params, "ours": True, "verdict": "the reference",
    })
peers = []
for p in sorted(glob.glob(os.path.join(log, "peer-*.json"))):
    v = load(p)
    name = os.path.basename(p)[:-5]
    if "tokens_per_second" not in v:
        peers.append({"name": name, "note": "skipped (deadline)" if v.get("skipped") else f"failed ({v})"[:120]})
        continue
    peers.append({"name": v["peer"], "tps": v["tokens_per_second"], "step": v["step_seconds"], "peak": v["peak_memory_bytes"],
                  "params": v["parameters"], "free": v["free_after_params_bytes"] / GiB, "ours": False})

def f(x, fmt):
    return "" if x is None else format(x, fmt)

timed_peers = [p for p in peers if p.get("tps")]
head = ["what", "tokens/s", "MFU", "step s", "peak GiB", "free GiB"] + [f"/ {p['name'].replace('pytorch-', '')}" for p in timed_peers] + ["verdict"]
lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
for r in rows + peers:
    if r.get("tps") is None:
        lines.append(f"| {r['name']} | {r.get('note', 'no timed run')} |")
        continue
    param_bytes = 2 * (r["params"] or 0)
    peak = (r["peak"] + param_bytes) / GiB if r["ours"] else r["peak"] / GiB  # ours: the runner's peak + the shared parameters
    free = (probe["gib"] if probe else None) if r["ours"] else r["free"]
    mfu = 6 * r["params"] * r["tps"] / PEAK if r["params"] else None
    ratios = [f(r["tps"] / p["tps"], ".3f") for p in timed_peers]
    lines.append("| " + " | ".join([r["name"], f(r["tps"], ",.0f"), f(mfu and 100 * mfu, ".1f") + "%", f(r["step"], ".3f"),
                                    f(peak, ".1f"), f(free, ".0f")] + ratios + [r.get("verdict", "")]) + " |")
notes = [
    machine,
    "tokens/s: 16 x 1024 x 5 tokens over the trusted clock (ours: local-bench, median of runs) or over 5 synchronised steps (peers).",
    "MFU: 6 x parameters x tokens/s over 790 TFLOP/s (the H200's measured bf16 matrix rate).",
    "peak GiB: ours = the runner's caching-allocator peak in the timed call + the bf16 parameters (trusted shared memory; the 4.6 GiB logits buffer not counted); peers = torch.cuda.max_memory_allocated (parameters included).",
    "free GiB: ours = 1 GiB blocks the memory probe could allocate at the start of the timed call"
    + (f" (cudaMemGetInfo there: {probe['free_gib']} of {probe['total_gib']} GiB free)" if probe else " (probe gave no count)")
    + "; peers = cudaMemGetInfo free once the parameters exist.",
]
# Evaluation cost (issue 13 item 5): where one local-bench evaluation's wall-clock time goes.
cost = []
for p in sorted(glob.glob(os.path.join(log, "lb-*.json"))):
    v = load(p)
    name = os.path.basename(p)[3:-5]
    cost.append(f"- {name}:")
    for who, rs in (("reference", v.get("reference_runs", [])), ("submission", v.get("runs", []))):
        for i, r in enumerate(rs):
            ph = r.get("phase_seconds") or {}
            if ph:
                cost.append(f"  - {who} run {i + 1}: " + ", ".join(f"{k} {x:.2f}" for k, x in ph.items()) + f" (sum {sum(ph.values()):.1f} s)")
table = "\n".join(lines) + "\n\n" + "\n".join("- " + n for n in notes) + "\n"
if cost:
    table += "\nEvaluation cost, wall-clock seconds (local-bench --json, per run: phase_seconds):\n" + "\n".join(cost) + "\n"
open(os.path.join(out, "table.md"), "w").write(table)
json.dump({"rows": rows, "peers": peers, "probe": probe, "machine": machine}, open(os.path.join(out, "perf.json"), "w"), indent=1, default=str)
print(table)
EOF
tar czf "$OUT/logs.tgz" -C /tmp perf-logs
stamp "done"
