#!/usr/bin/env bash
# Issue 13's step profile, in one call on the GPU machine (one H200):
#   1. the engine built with CUDA (and its fused kernels), plus the measuring
#      tool native/tools/step_profile.cpp;
#   2. the plugins compiled with the harness's pinned flags (plugin_build.json);
#   3. tournament-step-profile --check-kernels: the fused kernels against the
#      same ops on the CPU; then each plugin timed side by side in one process
#      (same initialisation and Zipf-distributed data: final loss, the final
#      weights' probe loss and the logits' relative error against the first
#      plugin), and a Kineto trace of 2 steps of the last;
#   4. the trace summarised: GPU time per kernel class and kernel, idle time,
#      CUDA runtime calls (malloc, free, synchronisations).
#   scripts/gpu-profile.sh PLUGIN.cpp...     (the first is the reference, the last is traced)
#   PROF_ARGS="--repeat 2": extra arguments for the tool; PROF_TIMEOUT (s, default 200) for its run.
# Results under $OUT: profile.txt (also printed), trace-summary.json.
set -uo pipefail
source scripts/device-env.sh
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
LOG=/tmp/prof-logs; rm -rf "$LOG"; mkdir -p "$LOG"
{
  date -u '+date: %F %T UTC'
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm --format=csv,noheader
  echo "commit $(cat .commit 2>/dev/null || echo unknown)"
} | tee "$OUT/profile.txt"
stamp "build" | tee -a "$OUT/profile.txt"
TOURNAMENT_BUILD_JOBS=16 node scripts/build-native.js > "$LOG/build.log" 2>&1 || { tail -40 "$LOG/build.log"; cp "$LOG/build.log" "$OUT/"; exit 1; }
grep -h "tournament:" "$LOG/build.log" | head -5
cmake --build build --target tournament-step-profile --parallel 16 > "$LOG/build-tool.log" 2>&1 ||
  { tail -30 "$LOG/build-tool.log"; cp "$LOG/build-tool.log" "$OUT/"; exit 1; }
TOOL=$(find build -name tournament-step-profile -type f | head -1)
stamp "compile plugins" | tee -a "$OUT/profile.txt"
mapfile -t FLAGS < <(python3 -c '
import json; b = json.load(open("build/Release/plugin_build.json"))
print(b["cxx"]); [print(f) for f in b["cxx_flags"]]; [print("-I" + d) for d in b["include_dirs"]]')
CXX=${FLAGS[0]}; FLAGS=("${FLAGS[@]:1}")
sos=()
for f in "$@"; do
  so=/tmp/$(basename "$f" .cpp).so
  "$CXX" -std=c++17 -O2 -fPIC -shared -fvisibility=hidden "${FLAGS[@]}" -o "$so" "$f" > "$LOG/cc-$(basename "$f").log" 2>&1 &
  sos+=("$so")
done
wait
for f in "$@"; do [ -s "/tmp/$(basename "$f" .cpp).so" ] || { echo "compile failed: $f"; head -30 "$LOG/cc-$(basename "$f").log"; exit 1; }; done
stamp "profile" | tee -a "$OUT/profile.txt"
timeout ${PROF_TIMEOUT:-200} "$TOOL" ${PROF_ARGS:-} --check-kernels --trace /tmp/trace.json "${sos[@]}" 2>&1 | tee -a "$OUT/profile.txt"
stamp "summary" | tee -a "$OUT/profile.txt"
[ -f /tmp/trace.json ] && timeout 120 python3 - /tmp/trace.json "$OUT/trace-summary.json" <<'PY' 2>&1 | tee -a "$OUT/profile.txt"
import collections, json, re, sys
t = json.load(open(sys.argv[1]))
ev = [e for e in t.get("traceEvents", []) if e.get("ph") == "X"]
kern = [e for e in ev if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
rt = [e for e in ev if e.get("cat") in ("cuda_runtime", "cuda_driver")]
def cls(n):
    l = n.lower()
    if "adam" in l: return "adamw"
    if any(k in l for k in ("gemm", "nvjet", "xmma", "cutlass", "sm90_", "cublas")): return "matmul"
    if any(k in l for k in ("flash", "fmha", "cudnn", "attn", "sdpa")): return "attention"
    if "tournament" in l or "rms_" in l or "swiglu" in l or "rope_" in l: return "fused (ours)"
    if "softmax" in l or "nll" in l or "scatter" in l or "gather" in l: return "loss elementwise"
    if "embedding" in l or "indexselect" in l or "sort" in l or "radix" in l: return "embedding"
    if "reduce" in l: return "reduce"
    if "copy" in l or "memcpy" in l or "cat" in l: return "copy/cat"
    if "memset" in l or "fill" in l: return "fill"
    return "elementwise"
by_cls, by_name, cnt = collections.Counter(), collections.Counter(), collections.Counter()
for e in kern:
    n = e.get("name", "")
    by_cls[cls(n)] += e["dur"]; by_name[n[:110]] += e["dur"]; cnt[n[:110]] += 1
iv = sorted((e["ts"], e["ts"] + e["dur"]) for e in kern)
busy, cur_s, cur_e = 0.0, None, None
gaps = []
for s, e in iv:
    if cur_e is None: cur_s, cur_e = s, e; continue
    if s > cur_e:
        busy += cur_e - cur_s; gaps.append((s - cur_e, cur_e)); cur_s, cur_e = s, e
    else: cur_e = max(cur_e, e)
if cur_e is not None: busy += cur_e - cur_s
span = iv[-1][1] - iv[0][0] if iv else 0
steps = 2
out = []
out.append(f"trace: {len(kern)} GPU events, span {span/1e3:.1f} ms, busy {busy/1e3:.1f} ms, idle {(span-busy)/1e3:.1f} ms (2 steps; per step below)")
out.append("GPU time per class, ms per step:")
tot = sum(by_cls.values())
for k, v in by_cls.most_common(): out.append(f"  {k:18s} {v/1e3/steps:9.1f}  {100*v/tot:5.1f}%")
out.append(f"  {'sum':18s} {tot/1e3/steps:9.1f}")
out.append("top kernels, ms per step (count per step):")
for k, v in by_name.most_common(40): out.append(f"  {v/1e3/steps:8.2f} ({cnt[k]//steps:5d})  {k}")
rtc, rtn = collections.Counter(), collections.Counter()
for e in rt: rtc[e["name"]] += e["dur"]; rtn[e["name"]] += 1
out.append("CUDA runtime calls, ms per step of host time (count per step):")
for k, v in rtc.most_common(15): out.append(f"  {v/1e3/steps:8.2f} ({rtn[k]//steps:6d})  {k}")
gaps.sort(reverse=True)
out.append("largest GPU idle gaps (ms) and the runtime calls running then:")
for g, at in gaps[:12]:
    during = [e["name"] for e in rt if e["ts"] <= at + g and e["ts"] + e["dur"] >= at and e["dur"] > 50]
    out.append(f"  {g/1e3:7.2f} at {(at - iv[0][0])/1e3:8.1f} ms: {', '.join(sorted(set(during)))[:150]}")
small = sum(g for g, _ in gaps if g < 20)
out.append(f"idle in gaps < 20 us: {small/1e3:.1f} ms over {sum(1 for g, _ in gaps if g < 20)} gaps; >= 20 us: {(span-busy-small)/1e3:.1f} ms")
print("\n".join(out))
json.dump({"classes_ms": {k: v/1e3/steps for k, v in by_cls.items()}, "kernels_ms": {k: v/1e3/steps for k, v in by_name.most_common(200)},
           "runtime_ms": {k: v/1e3/steps for k, v in rtc.items()}, "span_ms": span/1e3, "busy_ms": busy/1e3}, open(sys.argv[2], "w"), indent=1)
PY
stamp "done" | tee -a "$OUT/profile.txt"
