// Checkpoint planning: names, shapes, dtypes, byte ranges and file sizes are
// checked in TypeScript before the engine reads a byte.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../src/errors';
import type { ParameterInfo } from '../src/engine/native';
import { planCheckpointLoad, writeSafetensors } from '../src/engine/safetensors';
import { tmpDir } from './helpers/tmp';

const PARAMS: ParameterInfo[] = [
  { name: 'model.embed_tokens.weight', shape: [8, 4], dtype: 'bfloat16' },
  { name: 'model.norm.weight', shape: [4], dtype: 'bfloat16' },
  { name: 'lm_head.weight', shape: [8, 4], dtype: 'bfloat16' },
];

function tensor(name: string, shape: number[], dtype: 'BF16' | 'F32' = 'BF16') {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: Buffer.alloc(n * (dtype === 'F32' ? 4 : 2), 1) };
}

function dir(): string {
  return tmpDir('ckpt');
}

function rejects(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (e: unknown) => e instanceof UserError && re.test((e as Error).message));
}

describe('engine: safetensors checkpoints', () => {
  it('plans a single-file checkpoint: every parameter once, at its byte range', () => {
    const d = dir();
    writeSafetensors(path.join(d, 'model.safetensors'), PARAMS.map((p) => tensor(p.name, p.shape)));
    const plan = planCheckpointLoad(d, PARAMS);
    assert.deepEqual(plan.map((e) => e.name), PARAMS.map((p) => p.name));
    assert.deepEqual(plan.map((e) => e.nbytes), [64, 8, 64]);
    const size = fs.statSync(path.join(d, 'model.safetensors')).size;
    assert.ok(plan.every((e) => e.offset + e.nbytes <= size));
    assert.equal(plan[2].offset - plan[1].offset, 8);
  });

  it('plans a sharded checkpoint through model.safetensors.index.json, float32 shards too', () => {
    const d = dir();
    writeSafetensors(path.join(d, 'a.safetensors'), [tensor(PARAMS[0].name, [8, 4], 'F32')]);
    writeSafetensors(path.join(d, 'b.safetensors'), [tensor(PARAMS[1].name, [4]), tensor(PARAMS[2].name, [8, 4])]);
    const weight_map = { [PARAMS[0].name]: 'a.safetensors', [PARAMS[1].name]: 'b.safetensors', [PARAMS[2].name]: 'b.safetensors' };
    fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map }));
    const plan = planCheckpointLoad(d, PARAMS);
    assert.deepEqual(plan.map((e) => [path.basename(e.file), e.dtype]), [['a.safetensors', 'float32'], ['b.safetensors', 'bfloat16'], ['b.safetensors', 'bfloat16']]);
  });

  it('refuses a missing tensor, an extra tensor, a wrong shape, an unknown dtype, a truncated file', () => {
    const d1 = dir();
    writeSafetensors(path.join(d1, 'model.safetensors'), PARAMS.slice(0, 2).map((p) => tensor(p.name, p.shape)));
    rejects(() => planCheckpointLoad(d1, PARAMS), /has no tensor lm_head\.weight/);

    const d2 = dir();
    writeSafetensors(path.join(d2, 'model.safetensors'), [...PARAMS.map((p) => tensor(p.name, p.shape)), tensor('extra.weight', [2])]);
    rejects(() => planCheckpointLoad(d2, PARAMS), /1 tensor\(s\) the model does not: extra\.weight/);

    const d3 = dir();
    writeSafetensors(path.join(d3, 'model.safetensors'), [tensor(PARAMS[0].name, [4, 8]), ...PARAMS.slice(1).map((p) => tensor(p.name, p.shape))]);
    rejects(() => planCheckpointLoad(d3, PARAMS), /model\.embed_tokens\.weight has shape \[4,8\], the model needs \[8,4\]/);

    const d4 = dir();
    const file4 = path.join(d4, 'model.safetensors');
    writeSafetensors(file4, PARAMS.map((p) => tensor(p.name, p.shape)));
    const bytes = fs.readFileSync(file4);
    fs.writeFileSync(file4, Buffer.from(bytes.toString('latin1').replace('"BF16"', '"I8\u0020\u0020"'), 'latin1'));
    rejects(() => planCheckpointLoad(d4, PARAMS), /dtype I8/);

    const d5 = dir();
    const file5 = path.join(d5, 'model.safetensors');
    writeSafetensors(file5, PARAMS.map((p) => tensor(p.name, p.shape)));
    fs.truncateSync(file5, fs.statSync(file5).size - 10);
    rejects(() => planCheckpointLoad(d5, PARAMS), /model\.safetensors: truncated: tensor lm_head\.weight/);
  });

  it('says where no checkpoint is, and refuses a shard the index misplaces', () => {
    rejects(() => planCheckpointLoad(dir(), PARAMS), /no checkpoint in .*neither model\.safetensors nor/);
    const d = dir();
    writeSafetensors(path.join(d, 'a.safetensors'), PARAMS.map((p) => tensor(p.name, p.shape)));
    const weight_map = Object.fromEntries(PARAMS.map((p) => [p.name, 'a.safetensors']));
    weight_map[PARAMS[2].name] = 'b.safetensors';
    fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map }));
    rejects(() => planCheckpointLoad(d, PARAMS), /cannot open checkpoint file .*b\.safetensors|not where model\.safetensors\.index\.json says/);
  });
});
