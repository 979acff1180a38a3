# Sourced by scripts/gpu-*.sh on the GPU machine (no Node.js, no network there):
# the carried node on PATH, the carried node_modules linked in, a bwrap chosen,
# $OUT created. Needs in carry: .device (node.xz, deps/node_modules, bwrap/), as
# scripts/device-pack.sh writes it; found at ./.device or, when this checkout is
# the packed copy .gpu/, at ../.device.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ -d .device ]; then DEVICE_DIR=$PWD/.device; else DEVICE_DIR=$(cd .. && pwd)/.device; fi
[ -x /tmp/nodebin/node ] || { mkdir -p /tmp/nodebin && xz -dc "$DEVICE_DIR/node.xz" > /tmp/nodebin/node && chmod +x /tmp/nodebin/node; }
export PATH=/tmp/nodebin:$PATH
[ -e node_modules ] || ln -sfn "$DEVICE_DIR/deps/node_modules" node_modules
# Debian's bubblewrap may be missing there: use the one unpacked from its package when carried.
command -v bwrap >/dev/null || { [ -x "$DEVICE_DIR/bwrap/usr/bin/bwrap" ] && export TOURNAMENT_BWRAP=$DEVICE_DIR/bwrap/usr/bin/bwrap; }
