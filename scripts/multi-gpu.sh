#!/usr/bin/env bash
# Issue 15's measurements, on a host with two GPUs (NOT RUN YET: no 2-GPU
# machine was lent when this was written; every number it prints is new):
#   scaling     the baseline on 1 GPU (gpus_per_evaluation 1) and data-parallel
#               on 2 GPUs (gpus_per_evaluation 2, --gpus 0,1) through the full
#               local-bench path, same seeds: tokens/s of each and the ratio;
#   throughput  evaluations per hour: K evaluations of the baseline one after
#               the other on cuda:0, then the same K split over cuda:0 and
#               cuda:1 at once (one evaluation per GPU, as `evaluate --gpus 0,1`
#               schedules them; two local-bench processes, because the packed
#               checkout carries only local-bench's dependencies, not the
#               validator's);
#   floor       the noise floor with G = 2: the baseline against itself and the
#               skip-share cheat (test/plugins-multi/skip_share.cpp) on several
#               seeds, every verification number of every run.
# Qwen2.5-7B shape, random init, bf16, 16 x 1024 tokens, 5 timed steps after
# 1 warmup step (scripts/gpu-perf.sh's settings).
#
#   scripts/multi-gpu.sh [scaling] [throughput] [floor]     (default: all three)
# Environment:
#   MULTI_RUNS=2        local-bench runs (seeds) for scaling
#   MULTI_K=4           evaluations for throughput (even)
#   MULTI_SEEDS=3       seeds for floor (one local-bench --runs call per case)
#   MULTI_DEADLINE=560  seconds for the whole script (one device call is 10 min)
# Results: $OUT/multi.md (printed last), $OUT/logs.tgz.
# Packing: scripts/device-pack.sh DEST, then carry [".gpu", ".device"] and run
# `cd .gpu && scripts/multi-gpu.sh scaling` on the 2-GPU kind (one part per
# call fits the 10 minutes better than all three).
set -uo pipefail
source scripts/device-env.sh
T0=$(date +%s)
DEADLINE=${MULTI_DEADLINE:-560}
RUNS=${MULTI_RUNS:-2}
K=${MULTI_K:-4}
SEEDS=${MULTI_SEEDS:-3}
PARTS=${*:-scaling throughput floor}
LOG=/tmp/multi-logs; rm -rf "$LOG"; mkdir -p "$LOG"
BENCH=/tmp/bench7b
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
finish() { tar czf "$OUT/logs.tgz" -C /tmp multi-logs; }
trap finish EXIT

{
  date -u '+date: %F %T UTC'
  nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv,noheader
  nvidia-smi topo -m 2>/dev/null | head -5
  echo "commit $(cat .commit 2>/dev/null || echo unknown)"
} | tee "$LOG/machine.txt"
[ "$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)" -ge 2 ] || { echo "this needs two GPUs" >&2; exit 2; }

stamp "build"
TOURNAMENT_BUILD_JOBS=32 node scripts/build-native.js > "$LOG/build.log" 2>&1 || { tail -40 "$LOG/build.log"; exit 1; }
# Two ranks on CUDA need NCCL's headers at build time (CMakeLists.txt says when it found them).
grep -h "NCCL headers\|no nccl.h" "$LOG/build.log"
[ -d "$BENCH" ] || bin/tournament setup-benchmark --preset 7b-shape --benchmark-dir "$BENCH" > "$LOG/setup.log" 2>&1 || { tail -5 "$LOG/setup.log"; exit 1; }

# hparams with two ranks per evaluation; everything else as shipped.
node -e 'const h=require("./hparams/hparams.json"); h.gpus_per_evaluation=2; process.stdout.write(JSON.stringify(h, null, 2))' > "$LOG/hparams-2.json"

lb() {  # NAME FILE [local-bench options...]: one JSON verdict in $LOG/NAME.json
  local name=$1 file=$2; shift 2
  local limit; limit=$(( $(left) - 20 ))
  [ "$limit" -gt 60 ] || { stamp "skip $name: deadline"; return 1; }
  stamp "local-bench $name"
  timeout "$limit" bin/tournament local-bench "$file" --benchmark-dir "$BENCH" --warmup-steps 1 --json \
    --work-dir "/tmp/multi-work-$name" "$@" > "$LOG/$name.json" 2> "$LOG/$name.err"
  echo "  exit $?"
}

for part in $PARTS; do
  case $part in
    scaling)
      lb one-gpu local_test/train.cpp --gpus 0 --runs "$RUNS" --seed 101
      lb two-gpu local_test/train.cpp --gpus 0,1 --hparams "$LOG/hparams-2.json" --runs "$RUNS" --seed 101
      ;;
    throughput)
      stamp "throughput: $K evaluations on cuda:0, one after the other"
      t=$(date +%s)
      for i in $(seq 1 "$K"); do lb "serial-$i" local_test/train.cpp --gpus 0 --runs 1 || break; done
      echo "serial $K $(( $(date +%s) - t ))" | tee -a "$LOG/throughput.txt"
      stamp "throughput: $K evaluations, one per GPU at a time"
      t=$(date +%s)
      for g in 0 1; do
        ( for i in $(seq 1 $(( K / 2 ))); do lb "gpu$g-$i" local_test/train.cpp --gpus "$g" --runs 1 || break; done ) &
      done
      wait
      echo "parallel $K $(( $(date +%s) - t ))" | tee -a "$LOG/throughput.txt"
      ;;
    floor)
      lb floor-baseline local_test/train.cpp --gpus 0,1 --hparams "$LOG/hparams-2.json" --runs "$SEEDS" --seed 1000
      lb floor-skip_share test/plugins-multi/skip_share.cpp --gpus 0,1 --hparams "$LOG/hparams-2.json" --runs "$SEEDS" --seed 1000
      ;;
    *) echo "unknown part $part (scaling, throughput, floor)" >&2; exit 2 ;;
  esac
done

python3 - "$LOG" "$OUT" <<'PY'
import json, os, sys
log, out = sys.argv[1], sys.argv[2]
def verdict(name):
    try:
        return json.load(open(os.path.join(log, name + ".json")))
    except Exception as e:
        return {"error": str(e)}
lines = ["# Several GPUs: measurements (scripts/multi-gpu.sh)", "", open(os.path.join(log, "machine.txt")).read(), ""]
one, two = verdict("one-gpu"), verdict("two-gpu")
if "runs" in one or "runs" in two:
    lines += ["## Scaling: the baseline, 1 GPU vs data-parallel on 2", "", "| evaluation | accepted | tokens/s per run | median | MFU |", "|---|---|---|---|---|"]
    for name, v in [("1 GPU", one), ("2 GPUs (DP)", two)]:
        tps = [r.get("tokens_per_second") for r in v.get("runs", [])]
        lines.append(f"| {name} | {v.get('accepted')} | {', '.join(f'{x:,.0f}' if x else '-' for x in tps)} | {v.get('tokens_per_second') or '-'} | {v.get('mfu') or '-'} |")
    if one.get("tokens_per_second") and two.get("tokens_per_second"):
        lines += ["", f"2-GPU / 1-GPU tokens/s: {two['tokens_per_second'] / one['tokens_per_second']:.2f}"]
tp = os.path.join(log, "throughput.txt")
if os.path.exists(tp):
    lines += ["", "## Evaluations per hour (baseline, 1 run each)", ""]
    for l in open(tp):
        kind, k, s = l.split()
        lines.append(f"- {kind}: {k} evaluations in {s} s = {int(k) * 3600 / max(1, int(s)):.1f} per hour")
rows = [(n, verdict("floor-" + n)) for n in ("baseline", "skip_share")]
if any("runs" in v for _, v in rows):
    lines += ["", "## Noise floor with G = 2 (against the DP baseline on 2 GPUs)", "",
              "| submission | seed | accepted | probe loss - ref (moved) | cell loss dev. | batch loss shift | logits rel. err | update rel. err | max tensor rel. err | failures |", "|---|---|---|---|---|---|---|---|---|---|"]
    for n, v in rows:
        for r in v.get("runs", []):
            c = r.get("checks") or {}
            f = lambda k: f"{c[k]:.3g}" if k in c else "-"
            moved = f"{c['reference_probe_loss'] - c['initial_probe_loss']:.3g}" if c else "-"
            d = f"{c['probe_loss'] - c['reference_probe_loss']:+.3g}" if c else "-"
            lines.append(f"| {n} | {r['seed']} | {r['ok']} | {d} ({moved}) | {f('cell_loss_deviation')} | {f('batch_loss_shift')} | {f('logits_rel_error')} | {f('update_rel_error')} | {f('max_tensor_rel_error')} | {', '.join(x['code'] for x in r['failures']) or '-'} |")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "multi.md"), "w").write(text)
print(text)
PY
