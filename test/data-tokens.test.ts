import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../src/errors';
import { readTokens, torchSaveBytes, writeTokens, TokenSet } from '../src/data/tokens';
import { buildStoredZip, ZipReader } from '../src/data/zip';
import { unpickle } from '../src/data/pickle';
import { Rng, syntheticTokens, Zipf } from '../src/data/synthetic';
import { removeTmpDir, tmpDir } from './helpers/tmp';

const FIX = path.join(__dirname, '..', '..', 'test', 'fixtures', 'tokens');


function arange(samples: number, seqLen: number): TokenSet {
  const ids = new Int32Array(samples * seqLen);
  for (let i = 0; i < ids.length; i++) ids[i] = i;
  return { samples, seqLen, ids };
}

/** A torch.save-shaped zip around a given pickle and storage. */
function torchZip(pkl: Buffer, storage: Buffer, archive = 'train'): Buffer {
  return Buffer.concat(
    buildStoredZip([
      { name: `${archive}/data.pkl`, data: pkl },
      { name: `${archive}/data/0`, data: storage },
      { name: `${archive}/version`, data: Buffer.from('3\n') },
    ]),
  );
}

/** The pickle Python's torch.save (protocol 2) writes for a (rows, cols) tensor: TUPLE2 and friends. */
function pythonStylePickle(storage: string, numel: number, size: [number, number], stride: [number, number]): Buffer {
  const u = (s: string) => { const b = Buffer.from(s); const h = Buffer.alloc(5); h[0] = 0x58; h.writeUInt32LE(b.length, 1); return Buffer.concat([h, b]); };
  const k = (v: number) => Buffer.from([0x4b, v]);
  const put = (i: number) => Buffer.from([0x71, i]);
  return Buffer.concat([
    Buffer.from([0x80, 0x02]), Buffer.from('ctorch._utils\n_rebuild_tensor_v2\n'), put(0),
    Buffer.from('(('), u('storage'), put(1), Buffer.from(`ctorch\n${storage}\n`), put(2), u('0'), put(3), u('cpu'), put(4),
    k(numel), Buffer.from('t'), put(5), Buffer.from('Q'),
    k(0), k(size[0]), k(size[1]), Buffer.from([0x86]), put(6), k(stride[0]), k(stride[1]), Buffer.from([0x86]), put(7),
    Buffer.from([0x89]), Buffer.from('ccollections\nOrderedDict\n'), put(8), Buffer.from(')R'), put(9),
    Buffer.from('t'), put(10), Buffer.from('R'), put(11), Buffer.from('.'),
  ]);
}

function int64(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeBigInt64LE(BigInt(v), i * 8));
  return b;
}

function throwsUser(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (e: unknown) => e instanceof UserError && re.test(e.message), `expected a UserError matching ${re}`);
}

describe('data/tokens: torch.save format', () => {
  // Each test's temp folder goes after it (and at exit at the latest, by the helper).
  const made: string[] = [];
  const tmpdir = () => {
    const d = tmpDir('tokens');
    made.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of made.splice(0)) removeTmpDir(d);
  });

  it('round-trips writeTokens/readTokens (torch.save zip and safetensors)', () => {
    const dir = tmpdir();
    const t = syntheticTokens({ samples: 7, seqLen: 33, vocabSize: 151936, seed: 3 });
    for (const name of ['train.pt', 'train.safetensors']) {
      const f = path.join(dir, name);
      writeTokens(f, t);
      const back = readTokens(f);
      assert.equal(back.samples, 7);
      assert.equal(back.seqLen, 33);
      assert.deepEqual(Array.from(back.ids), Array.from(t.ids));
    }
    assert.deepEqual(fs.readdirSync(dir).sort(), ['train.pt', 'train.safetensors'], 'no temp files left behind');
  });

  it('writes the layout torch.load expects: archive/data.pkl, data/0 aligned to 64 bytes, version, byteorder', () => {
    const buf = Buffer.concat(torchSaveBytes(arange(3, 4)));
    const zip = new ZipReader(buf);
    assert.deepEqual(zip.names().sort(), [
      'archive/.data/serialization_id', 'archive/byteorder', 'archive/data.pkl', 'archive/data/0', 'archive/version',
    ]);
    assert.equal(zip.read('archive/version').toString(), '3\n');
    assert.equal(zip.read('archive/byteorder').toString(), 'little');
    const data = zip.read('archive/data/0');
    assert.equal((data.byteOffset - buf.byteOffset) % 64, 0, "storage starts on a 64-byte boundary of the file");
    assert.equal(data.length, 12 * 8);
    assert.equal(data.readBigInt64LE(11 * 8), 11n);
    const t = unpickle(zip.read('archive/data.pkl')) as any;
    assert.equal(t.kind, 'tensor');
    assert.deepEqual([t.storage.dtype, t.storage.numel, t.offset, t.size, t.stride], ['int64', 12, 0, [3, 4], [4, 1]]);
    // Same tokens, same bytes.
    assert.ok(Buffer.concat(torchSaveBytes(arange(3, 4))).equals(buf));
  });

  // Files made by libtorch 1.13's torch::pickle_save here, and by Python torch.save in PyTorch 2.11 on the
  // H200 (scripts/check-torch-load.py --save-reference): a 3x4 int64 arange, an int32 copy, the transpose.
  for (const [maker, i64, i32, transposed] of [
    ['libtorch 1.13 torch::pickle_save', 'libtorch113-i64.pt', 'libtorch113-i32.pt', 'libtorch113-i64_t.pt'],
    ['PyTorch 2.11 torch.save', 'pytorch211-i64.pt', 'pytorch211-i32.pt', 'pytorch211-i64-t.pt'],
  ]) {
    it(`reads files written by ${maker} (int64, int32, transposed strides)`, () => {
      const want = Array.from({ length: 12 }, (_, i) => i);
      for (const f of [i64, i32]) {
        const t = readTokens(path.join(FIX, f));
        assert.deepEqual([t.samples, t.seqLen, Array.from(t.ids)], [3, 4, want], f);
      }
      const tt = readTokens(path.join(FIX, transposed));
      assert.deepEqual([tt.samples, tt.seqLen, Array.from(tt.ids)], [4, 3, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]]);
    });
  }

  it('reads the pickle Python torch.save writes (TUPLE2 opcodes, any archive name)', () => {
    const dir = tmpdir();
    const f = path.join(dir, 'train.pt');
    fs.writeFileSync(f, torchZip(pythonStylePickle('LongStorage', 6, [2, 3], [3, 1]), int64([5, 4, 3, 2, 1, 0])));
    const t = readTokens(f);
    assert.deepEqual([t.samples, t.seqLen, Array.from(t.ids)], [2, 3, [5, 4, 3, 2, 1, 0]]);
  });

  describe('malformed input is a UserError naming the file and the problem', () => {
    let dir: string;
    before(() => (dir = tmpDir('tokens-bad')));
    after(() => removeTmpDir(dir));
    const write = (name: string, bytes: Buffer) => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, bytes);
      return f;
    };
    it('missing file', () => throwsUser(() => readTokens(path.join(dir, 'nope.pt')), /nope\.pt.*ENOENT/));
    it('not a zip', () => throwsUser(() => readTokens(write('text.pt', Buffer.from('hello world, not a tensor'))), /text\.pt: neither a torch\.save zip/));
    it('truncated zip', () => {
      const good = Buffer.concat(torchSaveBytes(arange(4, 8)));
      throwsUser(() => readTokens(write('trunc.pt', good.subarray(0, good.length - 100))), /trunc\.pt: .*truncated/);
    });
    it('zip without data.pkl', () => {
      const f = write('nopkl.pt', Buffer.concat(buildStoredZip([{ name: 'x/other', data: Buffer.from('x') }])));
      throwsUser(() => readTokens(f), /nopkl\.pt: no <archive>\/data\.pkl/);
    });
    it('float tensor', () => throwsUser(() => readTokens(path.join(FIX, 'libtorch113-f32.pt')), /f32\.pt: expected a 2-D int64 or int32 tensor, found a 2-D float32/));
    it('1-D tensor', () => throwsUser(() => readTokens(path.join(FIX, 'libtorch113-i64_1d.pt')), /found a 1-D int64 tensor/));
    it('storage shorter than declared', () => {
      const f = write('short.pt', torchZip(pythonStylePickle('LongStorage', 6, [2, 3], [3, 1]), int64([1, 2, 3])));
      throwsUser(() => readTokens(f), /short\.pt: storage train\/data\/0 is truncated/);
    });
    it('view past the storage', () => {
      const f = write('view.pt', torchZip(pythonStylePickle('LongStorage', 6, [2, 3], [4, 1]), int64([1, 2, 3, 4, 5, 6])));
      throwsUser(() => readTokens(f), /view\.pt: the tensor's view reaches element 6/);
    });
    it('negative ids', () => {
      const f = write('neg.pt', torchZip(pythonStylePickle('LongStorage', 4, [2, 2], [2, 1]), int64([1, 2, -3, 4])));
      throwsUser(() => readTokens(f), /neg\.pt: negative token id -3 at \[1, 0\]/);
    });
    it('corrupted storage bytes (CRC)', () => {
      const good = Buffer.concat(torchSaveBytes(arange(2, 2)));
      const zip = new ZipReader(good);
      const off = zip.read('archive/data/0').byteOffset - good.byteOffset;
      const bad = Buffer.from(good);
      bad[off] ^= 1;
      throwsUser(() => readTokens(write('crc.pt', bad)), /crc\.pt: archive\/data\/0: CRC-32 mismatch/);
    });
    it('unknown pickle global', () => {
      const pkl = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('cos\nsystem\n'), Buffer.from('(X\x02\x00\x00\x00lst'), Buffer.from('R.')]);
      const f = write('evil.pt', torchZip(pkl, Buffer.alloc(0)));
      throwsUser(() => readTokens(f), /evil\.pt: unsupported global os\.system/);
    });
    it('safetensors without "tokens"', () => {
      const json = Buffer.from(JSON.stringify({ ids: { dtype: 'I64', shape: [1, 1], data_offsets: [0, 8] } }));
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(BigInt(json.length));
      throwsUser(() => readTokens(write('x.safetensors', Buffer.concat([head, json, Buffer.alloc(8)]))), /x\.safetensors: no tensor named "tokens" .*found: ids/);
    });
  });
});

describe('data/synthetic', () => {
  it('is deterministic for a seed and fixed across machines (golden values)', () => {
    const a = syntheticTokens({ samples: 4, seqLen: 8, vocabSize: 2048, seed: 42 });
    const b = syntheticTokens({ samples: 4, seqLen: 8, vocabSize: 2048, seed: 42 });
    assert.deepEqual(Array.from(a.ids), Array.from(b.ids));
    const c = syntheticTokens({ samples: 4, seqLen: 8, vocabSize: 2048, seed: 43 });
    assert.notDeepEqual(Array.from(a.ids), Array.from(c.ids));
    const r = new Rng(42);
    assert.deepEqual([r.nextU32(), r.nextU32(), r.nextU32()], GOLDEN_U32);
    assert.deepEqual(Array.from(a.ids.slice(0, 8)), GOLDEN_IDS);
  });

  it('follows Zipf(1): rank 0 about twice as frequent as rank 1, ids within the vocab', () => {
    const zipf = new Zipf(1000);
    const rng = new Rng(1);
    const counts = new Int32Array(1000);
    const n = 200000;
    for (let i = 0; i < n; i++) counts[zipf.sample(rng)]++;
    let h = 0;
    for (let k = 1; k <= 1000; k++) h += 1 / k;
    assert.ok(Math.abs(counts[0] / n - 1 / h) < 0.01, `p(0) = ${counts[0] / n}, want ${1 / h}`);
    assert.ok(Math.abs(counts[0] / counts[1] - 2) < 0.1);
    assert.ok(counts[999] > 0);
  });
});

const GOLDEN_U32 = [2837322924, 544945897, 479756282];
const GOLDEN_IDS = [126, 0, 0, 0, 769, 2, 1586, 316];
