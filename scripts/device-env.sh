# Sourced by scripts/gpu-*.sh on the GPU machine (no Node.js, no network there):
# the carried node on PATH, the carried node_modules linked in, a bwrap chosen,
# $OUT created. Needs in carry: .device (node.xz, deps/node_modules, bwrap/).
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -x /tmp/nodebin/node ] || { mkdir -p /tmp/nodebin && xz -dc .device/node.xz > /tmp/nodebin/node && chmod +x /tmp/nodebin/node; }
export PATH=/tmp/nodebin:$PATH
[ -e node_modules ] || ln -s .device/deps/node_modules node_modules
# Debian's bubblewrap may be missing there: use the one unpacked from its package when carried.
command -v bwrap >/dev/null || { [ -x .device/bwrap/usr/bin/bwrap ] && export TOURNAMENT_BWRAP=$PWD/.device/bwrap/usr/bin/bwrap; }
