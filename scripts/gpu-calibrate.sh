#!/usr/bin/env bash
# `tournament calibrate` on the GPU machine (one H200), Qwen2.5-7B shape
# (random init, bf16, 16 x 1024 synthetic tokens, 5 timed steps after 1
# warmup step). A 7B calibration of a dozen cases takes about 4 minutes a seed,
# so it is split over calls on one warm machine: the first call copies this
# checkout to /tmp/gpu-cal, builds the engine and the benchmark there, and
# later calls (within the machine's idle window) reuse them.
#   scripts/gpu-calibrate.sh FIRST_SEED SEED_COUNT [CASES]
#   CAL_LAYERS=N   the 7B shape with only N decoder layers (its hidden size,
#                  vocabulary and batch kept): on an 80 GB card the judge's
#                  replay of every timed step (about 6 copies of the parameters)
#                  does not fit beside the whole 7B model's
# Results: $OUT/calibrate-FIRST_SEED.json (calibrate --json) and .md (its table),
# $OUT/memory.txt (host memory used and GPU memory used, MiB, every 2 s).
# Needs in carry: .gpu and .device, as scripts/device-pack.sh writes them.
set -uo pipefail
source scripts/device-env.sh
seed=${1:?usage: scripts/gpu-calibrate.sh FIRST_SEED SEED_COUNT [CASES]}
count=${2:?usage: scripts/gpu-calibrate.sh FIRST_SEED SEED_COUNT [CASES]}
cases=${3:-baseline,honest_fp32_loss,local_test/examples/tuned.cpp,drop:last:1,drop:last:2,drop:last:4,drop:last:8,drop:every:1,drop:every:2,drop:every:4,test/plugins/attack_trunc_last.cpp,test/plugins/attack_drop4_quarter.cpp}
WORK=/tmp/gpu-cal BENCH=/tmp/bench7b
if [ ! -f "$WORK/build/Release/tournament.node" ]; then
  rm -rf "$WORK" && mkdir -p "$WORK" && cp -a . "$WORK/" && cd "$WORK" || exit 1
  date -u '+date: %F %T UTC'; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  t=$(date +%s)
  TOURNAMENT_BUILD_JOBS=16 node scripts/build-native.js > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t )) s"
  bin/tournament setup-benchmark --preset 7b-shape --benchmark-dir "$BENCH" > /dev/null || exit 1
  if [ -n "${CAL_LAYERS:-}" ]; then
    python3 - "$BENCH/model/config.json" "$CAL_LAYERS" <<'PY' || exit 1
import json, sys
c = json.load(open(sys.argv[1])); c["num_hidden_layers"] = int(sys.argv[2]); json.dump(c, open(sys.argv[1], "w"), indent=2)
print(f"model: {sys.argv[2]} decoder layers")
PY
  fi
else
  cd "$WORK" || exit 1
fi
(while :; do echo "$(date +%s) $(free -m | awk 'NR==2{print $3}') $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits)"; sleep 2; done) >> "$OUT/memory.txt" &
sampler=$!
t=$(date +%s)
bin/tournament calibrate --device cuda --benchmark-dir "$BENCH" --warmup-steps 1 --seed "$seed" --seed-count "$count" \
  --cases "$cases" --work-dir /tmp/gpu-cal-work --json > "$OUT/calibrate-$seed.json" 2> "$OUT/calibrate-$seed.err"
echo "calibrate exit $? in $(( $(date +%s) - t )) s"; tail -3 "$OUT/calibrate-$seed.err"
kill $sampler
echo "peak host memory used $(sort -k2 -n "$OUT/memory.txt" | tail -1 | cut -d' ' -f2) MiB, GPU $(sort -k3 -n "$OUT/memory.txt" | tail -1 | cut -d' ' -f3) MiB"
node -e 'const { formatCalibration } = require("./dist/src/harness/report.js");
  console.log(formatCalibration(require(process.argv[1]), { hparamsFile: "hparams/hparams.json", written: false }))' "$OUT/calibrate-$seed.json" | tee "$OUT/calibrate-$seed.md"
