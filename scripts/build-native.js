#!/usr/bin/env node
// Builds the native engine with cmake-js into build/. Offline: package.json's
// "binary.napi_versions" makes cmake-js use the node-api-headers package
// instead of downloading Node's headers.
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const root = path.join(__dirname, '..');
const cmakeJs = path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const jobs = process.env.TOURNAMENT_BUILD_JOBS || String(require('os').availableParallelism?.() ?? 2);
const args = [cmakeJs, 'compile', '--out', 'build', '--parallel', jobs];
if (process.env.TOURNAMENT_DEBUG_BUILD) args.push('--debug');
const t0 = Date.now();
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  process.stderr.write(
    '\nnative build failed. It needs cmake, a C++17 compiler and libtorch:\n' +
      '  Debian/Ubuntu: apt-get install -y build-essential cmake libtorch-dev\n' +
      '  or set LIBTORCH=/path/to/libtorch, or install PyTorch for python3.\n',
  );
  process.exit(r.status || 1);
}
process.stderr.write(`native build finished in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
