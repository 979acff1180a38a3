// The engine's own C++ tests (native/tests/), built beside the runner.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { PROJECT_ROOT } from '../src/util/paths';

describe('native tests', function () {
  this.timeout(120000);
  it('the post-kill fingerprint is a keyed hash of the bytes: swaps, bit flips and far changes show', function () {
    const exe = path.join(PROJECT_ROOT, 'build', 'Release', 'tournament-native-tests');
    assert.ok(fs.existsSync(exe), `${exe} is missing: run npm run build`);
    const r = spawnSync(exe, [], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /swapping two words changes the digest/);
  });
  it("the engine's bf16 products on the CPU accumulate in float32, also where libtorch's own do not", function () {
    const exe = path.join(PROJECT_ROOT, 'build', 'Release', 'tournament-products-test');
    assert.ok(fs.existsSync(exe), `${exe} is missing: run npm run build`);
    const r = spawnSync(exe, [], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /linear's weight gradient accumulates in float32/);
  });
  it("the loss head's record: rows matched by their tokens, a row held twice recorded twice, the tensors as they were at the call", function () {
    const exe = path.join(PROJECT_ROOT, 'build', 'Release', 'tournament-batches-test');
    assert.ok(fs.existsSync(exe), `${exe} is missing: run npm run build`);
    const r = spawnSync(exe, [], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /a row the batch holds twice is recorded in both places/);
  });
});
