#!/usr/bin/env node
// Prints shape, min, max, sum and the position-weighted checksum of token files,
// as scripts/check-torch-load.py does, using our own reader (dist/ must be built).
const { readTokens } = require('../dist/src/data/tokens');
for (const file of process.argv.slice(2)) {
  const t = readTokens(file);
  let s = 0n, w = 0n, min = Infinity, max = -Infinity;
  for (let i = 0; i < t.ids.length; i++) {
    const v = t.ids[i];
    s += BigInt(v); w += BigInt(v) * BigInt(i);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  console.log(`${file}: shape (${t.samples}, ${t.seqLen}) min ${min} max ${max} sum ${s} wsum ${w}`);
}
