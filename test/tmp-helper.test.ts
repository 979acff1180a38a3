// test/helpers/tmp.ts: the tests' temporary folders are gone when the process ends.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { liveTmpDirs, removeTmpDir, tmpDir } from './helpers/tmp';

describe('tmpDir helper', function () {
  it('makes a fresh folder under the temp dir and removes it on request, contents and all', function () {
    const a = tmpDir('unit test/x');
    const b = tmpDir('unit test/x');
    assert.notEqual(a, b);
    assert.equal(path.dirname(a), os.tmpdir());
    assert.match(path.basename(a), /^tt-unit_test_x-/);
    fs.mkdirSync(path.join(a, 'sub'));
    fs.writeFileSync(path.join(a, 'sub', 'f'), 'x');
    assert.ok(liveTmpDirs().includes(a));
    removeTmpDir(a);
    removeTmpDir(b);
    assert.ok(!fs.existsSync(a) && !fs.existsSync(b));
    assert.ok(!liveTmpDirs().includes(a));
  });

  for (const how of ['exits normally', 'throws', 'calls process.exit(3)']) {
    it(`removes every folder it made when the process ${how}`, function () {
      const end = { 'exits normally': '', throws: "throw new Error('boom');", 'calls process.exit(3)': 'process.exit(3);' }[how];
      const script = `
        const fs = require('fs'), path = require('path');
        const { tmpDir } = require(${JSON.stringify(path.join(__dirname, 'helpers', 'tmp.js'))});
        for (const n of ['one', 'two']) { const d = tmpDir('exit-' + n); fs.writeFileSync(path.join(d, 'f'), 'x'); console.log(d); }
        ${end}`;
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
      const made = r.stdout.trim().split('\n');
      assert.equal(made.length, 2, r.stdout + r.stderr);
      for (const d of made) assert.ok(!fs.existsSync(d), `${d} was left behind (${how}, status ${r.status})`);
    });
  }
});
