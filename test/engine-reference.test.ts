// The engine against the real implementation: a tiny random Qwen2 made by
// Hugging Face transformers (scripts/make-qwen2-fixture.py), its logits, loss
// and gradients, matched by our engine on the CPU in float32.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { openModel } from '../src/engine/model';
import { loadAddon, NativeModel } from '../src/engine/native';
import { PROJECT_ROOT } from '../src/util/paths';
import { readSafetensorsHeader } from '../src/engine/safetensors';
import { skipBecause } from './helpers/pending-guard';
import { tmpDir } from './helpers/tmp';

const FIXTURE = path.join(PROJECT_ROOT, 'test', 'fixtures', 'qwen2-tiny');

function readExpected(): Record<string, { shape: number[]; data: Float32Array | BigInt64Array }> {
  const file = path.join(FIXTURE, 'expected.safetensors');
  const { dataStart, tensors } = readSafetensorsHeader(file);
  const buf = fs.readFileSync(file);
  const out: Record<string, { shape: number[]; data: Float32Array | BigInt64Array }> = {};
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = buf.subarray(dataStart + t.data_offsets[0], dataStart + t.data_offsets[1]);
    const copy = new Uint8Array(bytes).buffer;  // aligned copy
    out[name] = { shape: t.shape, data: t.dtype === 'I64' ? new BigInt64Array(copy) : new Float32Array(copy) };
  }
  return out;
}

/** ||a - b|| / ||b|| */
function relError(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

describe('engine vs Hugging Face transformers (tiny Qwen2 fixture)', function () {
  let expected: ReturnType<typeof readExpected>;
  before(function () {
    assert.ok(fs.existsSync(path.join(FIXTURE, 'expected.safetensors')), `fixture ${FIXTURE} is missing (it is in the repository; scripts/make-qwen2-fixture.py makes it)`);
    expected = readExpected();
  });

  // float32 on the CPU: differences are summation order only. The tolerances
  // are about 100x the float32 rounding seen (about 1e-7 relative).
  const LOGITS_TOL = 1e-5;
  const LOSS_TOL = 1e-5;
  const GRAD_TOL = 1e-4;

  const kernels = ['math', 'sdpa'] as const;
  for (const attention of kernels) {
    it(`matches logits, loss and gradients with ${attention} attention`, async function () {
      if (attention === 'sdpa' && !loadAddon().info().sdpa) {
        skipBecause(this, `this libtorch build (${loadAddon().info().torchVersion}) has no scaled-dot-product attention`);
      }
      const { model, weights } = await openModel({ modelDir: FIXTURE, device: 'cpu', dtype: 'float32', attention, seed: 0 });
      assert.equal(weights, 'checkpoint');
      const ids = expected.input_ids;
      const [batch, seqLen] = ids.shape;
      const gradNames = Object.keys(expected).filter((k) => k.startsWith('grad.')).map((k) => k.slice(5));
      assert.ok(gradNames.length >= 5, 'fixture should hold several gradients');
      const r = (model as NativeModel).forwardBackward({
        ids: Int32Array.from(ids.data as BigInt64Array, (v) => Number(v)),
        batch,
        seqLen,
        grads: gradNames,
      });
      assert.deepEqual(r.logitsShape, expected.logits.shape);
      const le = relError(r.logits, expected.logits.data as Float32Array);
      assert.ok(le < LOGITS_TOL, `logits rel. error ${le}`);
      const refLoss = (expected.loss.data as Float32Array)[0];
      assert.ok(Math.abs(r.loss - refLoss) < LOSS_TOL, `loss ${r.loss} vs ${refLoss}`);
      for (const n of gradNames) {
        const ge = relError(r.grads[n], expected[`grad.${n}`].data as Float32Array);
        assert.ok(ge < GRAD_TOL, `gradient of ${n}: rel. error ${ge}`);
      }
    });
  }

  it('refuses a checkpoint whose shapes do not match the config', async function () {
    const tmp = tmpDir('qwen2-bad');
    const cfg = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'config.json'), 'utf8'));
    cfg.intermediate_size += 2;
    fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(cfg));
    fs.copyFileSync(path.join(FIXTURE, 'model.safetensors'), path.join(tmp, 'model.safetensors'));
    await assert.rejects(
      openModel({ modelDir: tmp, device: 'cpu', dtype: 'float32', attention: 'math', seed: 0 }),
      /mlp\.(gate|up|down)_proj\.weight has shape/,
    );
  });
});
