#!/usr/bin/env bash
# Everything issue 2 measures on the GPU machine, in one call:
#   the CUDA build, the reference fixture from transformers, the engine's tests
#   on that build, torch.load of our token file. Results land in $OUT.
# Needs in carry: .device (node.xz, deps/node_modules) and dist.
set -uo pipefail
source scripts/device-env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'

echo "== build"
start=$(date +%s)
TOURNAMENT_BUILD_JOBS=16 node scripts/build-native.js > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build seconds: $(( $(date +%s) - start ))"; grep "tournament:" "$OUT/build.log"

echo "== fixture"
python3 scripts/make-qwen2-fixture.py test/fixtures/qwen2-tiny && mkdir -p "$OUT/qwen2-tiny" && cp test/fixtures/qwen2-tiny/* "$OUT/qwen2-tiny/"

echo "== engine tests on the CUDA build (CPU device)"
node node_modules/mocha/bin/mocha.js --no-config --timeout 600000 dist/test/engine-reference.test.js 2>&1 | tail -15

echo "== torch.load of a token file"
node -e "const t=require('./dist/src/data/tokens.js'),s=require('./dist/src/data/synthetic.js');t.writeTokens('/tmp/tok.pt',s.syntheticTokens({samples:8,seqLen:16,vocabSize:1000,seed:3}))" && python3 scripts/check-torch-load.py /tmp/tok.pt
python3 scripts/check-torch-load.py --save-reference /tmp/torchref && tar czf "$OUT/torchref.tgz" -C /tmp torchref

# The 7B-shaped benchmark through the trusted harness, beside the PyTorch peer: scripts/gpu-harness.sh.
