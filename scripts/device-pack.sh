#!/usr/bin/env bash
# Packs a checkout for the GPU machine, which has no Node.js, no npm registry
# and no bubblewrap. Writes into DEST (a checkout whose .git/info/exclude
# ignores /.gpu/ and /.device/; the device tool sends DEST's working tree):
#   DEST/.gpu/      this checkout's tracked and untracked source, dist/ included
#                   (built here first), without node_modules, build, benchmark
#   DEST/.device/   node.xz (this machine's node), deps/node_modules (only what
#                   local-bench and scripts/build-native.js load at run time:
#                   yargs, bindings, node-addon-api, node-api-headers, cmake-js
#                   and their dependencies), bwrap/ (Debian's bubblewrap, unpacked)
# Then: run with carry [".gpu", ".device"] and a command `cd .gpu && scripts/gpu-perf.sh`
# (scripts/device-env.sh finds ../.device). Everything that travels must stay under 64 MiB.
#   scripts/device-pack.sh DEST            (e.g. /work/main)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dest=$(cd "${1:?usage: scripts/device-pack.sh DEST}" && pwd)
[ "$src" != "$dest" ] || { echo "DEST must be another checkout (its .gpu/ gets this one's source)" >&2; exit 2; }

# 1. Source, with the TypeScript compiled (the GPU machine has no tsc).
(cd "$src" && node node_modules/typescript/bin/tsc -p tsconfig.json)
rm -rf "$dest/.gpu" && mkdir -p "$dest/.gpu"
(cd "$src" && { git ls-files --cached --others --exclude-standard; find dist -type f; } | sort -u | tar -cf - -T -) |
  tar -xf - -C "$dest/.gpu"

git -C "$src" describe --always --dirty > "$dest/.gpu/.commit"

# 2. Node itself, compressed once.
mkdir -p "$dest/.device"
node_bin=$(readlink -f "$(command -v node)")
if [ ! -f "$dest/.device/node.xz" ] || [ "$(cat "$dest/.device/node.version" 2>/dev/null)" != "$(node --version)" ]; then
  xz -T2 -6 -c "$node_bin" > "$dest/.device/node.xz"
  node --version > "$dest/.device/node.version"
fi

# 3. The run-time dependency closure of the packages the GPU scripts load.
rm -rf "$dest/.device/deps"
mkdir -p "$dest/.device/deps/node_modules"
node - "$src" "$dest/.device/deps/node_modules" <<'EOF'
const fs = require('fs'), path = require('path');
const [root, out] = process.argv.slice(2);
const nm = path.join(root, 'node_modules');
const done = new Set();
// Resolve a dependency as Node would: the nearest node_modules up from the dependent package.
function find(name, fromDir) {
  for (let d = fromDir; d.startsWith(nm); d = path.dirname(d)) {
    const p = path.join(d, 'node_modules', name);
    if (fs.existsSync(path.join(p, 'package.json'))) return p;
  }
  const p = path.join(nm, name);
  if (fs.existsSync(path.join(p, 'package.json'))) return p;
  throw new Error(`cannot find ${name} from ${fromDir}`);
}
function walk(dir) {
  if (done.has(dir)) return;
  done.add(dir);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
    try { walk(find(dep, dir)); } catch (e) { if (!(pkg.optionalDependencies || {})[dep]) throw e; }
  }
}
// Plus every package the CLI loads at start-up (the validator's chain code is imported eagerly).
const Module = require('module');
const loaded = new Set();
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  const file = resolve.call(this, request, parent, ...rest);
  const m = file.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (m) loaded.add(m[1]);
  return file;
};
require(path.join(root, 'dist', 'src', 'cli.js'));
Module._resolveFilename = resolve;
for (const top of ['yargs', 'bindings', 'node-addon-api', 'node-api-headers', 'cmake-js', ...loaded]) walk(path.join(nm, top));
for (const dir of done) {
  const rel = path.relative(nm, dir);
  fs.cpSync(dir, path.join(out, rel), { recursive: true, filter: (s) => !/\/node_modules$/.test(s) || s === dir });
}
console.log(`device-pack: ${done.size} packages`);
EOF
# better-sqlite3's sources and build intermediates (the validator's store; local-bench never opens it):
# only its loader and the compiled addon travel.
bs="$dest/.device/deps/node_modules/better-sqlite3"
if [ -d "$bs" ]; then
  rm -rf "$bs/deps" "$bs/src" "$bs/build/deps" "$bs/build/Release/obj" "$bs/build/Release/obj.target" \
    "$bs/build/Release/.deps" "$bs/build/Release/sqlite3.a" "$bs/build/Release/test_extension.node"
fi
# Documentation and type declarations are not needed at run time.
find "$dest/.device/deps/node_modules" \( -name '*.md' -o -name '*.d.ts' -o -name '*.map' -o -name 'CHANGELOG*' \) -type f -delete

# 4. Debian's bubblewrap, unpacked (the GPU host has none; it runs from there).
if [ ! -x "$dest/.device/bwrap/usr/bin/bwrap" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download bubblewrap >/dev/null)
  dpkg -x "$tmp"/bubblewrap_*.deb "$dest/.device/bwrap"
  rm -rf "$tmp"
fi

du -sh "$dest/.gpu" "$dest/.device"
total=$(du -sb "$dest/.gpu" "$dest/.device" | awk '{s+=$1} END {print s}')
echo "device-pack: $((total / 1048576)) MiB to carry (limit 64 MiB with the rest of DEST's working tree)"
