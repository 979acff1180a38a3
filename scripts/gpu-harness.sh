#!/usr/bin/env bash
# The trusted harness on the GPU machine: CUDA build, a Qwen2.5-7B-shaped
# benchmark, then the step named by $1:
#   bench    local-bench of the baseline (2 runs) + noise floor of honest variants
#   cheats   noise floor of cheats + the PyTorch peer, side by side
#   seed2    honest and cheating cases again on another seed
#   final    local-bench of the baseline, one run, with the thresholds in hparams
#   floor SEED CASE...   noise-floor rows of the named cases on another seed (tournament calibrate)
# Needs in carry: .device (node.xz, deps/node_modules) and dist. Results in $OUT.
set -uo pipefail
source scripts/device-env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# How the runs are sandboxed here: which bwrap, and whether uid 65534 can use the GPU and read the checkout.
echo "bwrap: ${TOURNAMENT_BWRAP:-$(command -v bwrap)} ($(${TOURNAMENT_BWRAP:-bwrap} --version 2>&1)); caller uid $(id -u)"
ls -l /dev/nvidia* | awk '{print "  " $1, $NF}'; namei -m "$PWD" | tail -n +2 | awk '{print "  " $0}'
start=$(date +%s)
TOURNAMENT_BUILD_JOBS=16 node scripts/build-native.js > "$OUT/build-$1.log" 2>&1 || { tail -30 "$OUT/build-$1.log"; exit 1; }
echo "build seconds: $(( $(date +%s) - start ))"
bin/tournament setup-benchmark --preset 7b-shape --benchmark-dir /tmp/bench7b > /dev/null
case "$1" in
  bench)
    bin/tournament local-bench --benchmark-dir /tmp/bench7b --device cuda --runs 2 --warmup-steps 1 --json --work-dir /tmp/work > "$OUT/local-bench-7b.json"
    echo "local-bench exit: $?"
    node -e 'const v=require(process.argv[1]);console.log(JSON.stringify({accepted:v.accepted,reasons:v.reasons,tps:v.tokens_per_second,mfu:v.mfu,runs:v.runs.map(r=>({s:r.seconds,tps:r.tokens_per_second,overhead:r.overhead_seconds,checks:r.checks})),ref:v.reference_runs.map(r=>({s:r.seconds,tps:r.tokens_per_second,overhead:r.overhead_seconds}))},null,1))' "$OUT/local-bench-7b.json"
    bin/tournament calibrate --device cuda --benchmark-dir /tmp/bench7b --warmup-steps 1 --seed-count 1 --cases baseline,honest_math_attention,honest_fp32_loss 2>&1 | tee "$OUT/noise-honest.md"
    ;;
  cheats)
    bin/tournament calibrate --device cuda --benchmark-dir /tmp/bench7b --warmup-steps 1 --seed-count 1 --cases skip_last_step,freeze_layers,fewer_tokens,test/plugins/deferred_thread.cpp,honest_manual_adamw 2>&1 | tee "$OUT/noise-cheats.md"
    python3 scripts/peer-bench.py 5 16 2>/tmp/peer.err | tee "$OUT/peer.json" || tail -20 /tmp/peer.err
    ;;
  final)
    bin/tournament local-bench --benchmark-dir /tmp/bench7b --device cuda --runs 1 --warmup-steps 1 --work-dir /tmp/work
    echo "local-bench exit: $?"
    ;;
  seed2)
    bin/tournament calibrate --device cuda --benchmark-dir /tmp/bench7b --warmup-steps 1 --seed-count 1 --seed 2000 --cases baseline,honest_math_attention,skip_last_step,fewer_tokens,stale_logits 2>&1 | tee "$OUT/noise-seed2.md"
    ;;
  floor)
    seed=$2; shift 2
    bin/tournament calibrate --device cuda --benchmark-dir /tmp/bench7b --warmup-steps 1 --seed-count 1 --seed "$seed" --cases "$(IFS=,; echo "$*")" 2>&1 | tee "$OUT/noise-seed$seed.md"
    ;;
esac
