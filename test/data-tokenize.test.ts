import { strict as assert } from 'assert';
import * as path from 'path';
import { loadTokenizer } from '../src/data/tokenizer';
import { Packer } from '../src/data/pack';
import { UserError } from '../src/errors';
import { Hub } from '../src/setup/hub';

// test/fixtures/tokenizer: a Qwen2-style byte-level BPE made by hand. Byte b has
// id b (byte-level alphabet: space is "Ġ"); merges, in rank order:
//   he=256 ll=257 hell=258 hello=259 Ġw=260 or=261 Ġwor=262 Ġworl=263 Ġworld=264
// and the special token <|endoftext|>=265. The pre-tokenizer is Qwen2's regex.
const FIX = path.join(__dirname, '..', '..', 'test', 'fixtures', 'tokenizer');

describe('data/tokenizer (the model\'s own tokenizer.json)', () => {
  const tok = loadTokenizer(FIX);
  const cases: [string, number[]][] = [
    ['hello world', [259, 264]],
    ['hello!', [259, 33]],
    ['Hello', [72, 101, 257, 111]], // no merge for "H e": bytes, then "l l", then nothing for "ll o"
    ['2024 hello', [50, 48, 50, 52, 32, 259]], // Qwen2 splits digits one by one; " hello" has no "Ġhello" merge
    ['héllo world\n\nhello', [104, 195, 169, 257, 111, 264, 10, 10, 259]], // é is two bytes
    ['hello<|endoftext|>world', [259, 265, 119, 261, 108, 100]], // the special token is matched whole
  ];
  for (const [text, ids] of cases) {
    it(`encodes ${JSON.stringify(text)}`, () => assert.deepEqual(tok.encode(text), ids));
  }
  it('adds no BOS/EOS of its own and knows the EOS token', () => {
    assert.deepEqual(tok.encode(''), []);
    assert.equal(tok.tokenToId('<|endoftext|>'), 265);
  });
  it('a missing tokenizer.json is a UserError', () => {
    assert.throws(() => loadTokenizer(path.join(FIX, 'nope')), (e: unknown) => e instanceof UserError && /tokenizer\.json: ENOENT/.test(e.message));
  });
});

describe('data/pack', () => {
  it('concatenates documents with EOS after each and cuts rows of seq_len, no padding', () => {
    const p = new Packer(2, 4, 9);
    assert.equal(p.add([1, 2]), true);
    assert.equal(p.add([3, 4, 5]), true);
    assert.equal(p.add([6, 7, 8]), false); // full: 8 tokens
    const t = p.result();
    assert.deepEqual([t.samples, t.seqLen, Array.from(t.ids)], [2, 4, [1, 2, 9, 3, 4, 5, 9, 6]]);
    assert.equal(p.documents, 3);
    assert.equal(p.add([1]), false);
  });

  it('caps a long document at maxRowsPerDocument rows of tokens, then its EOS', () => {
    const long = Array.from({ length: 20 }, (_, i) => 100 + i);
    // default: one row's worth (4 tokens) of each document, as the seed's truncation keeps
    const one = new Packer(3, 4, 9);
    assert.equal(one.maxRowsPerDocument, 1);
    one.add(long);
    one.add([1, 2]);
    one.add(long);
    assert.deepEqual(Array.from(one.result().ids), [100, 101, 102, 103, 9, 1, 2, 9, 100, 101, 102, 103]);
    assert.deepEqual([one.documents, one.truncated], [3, 2]);
    // a cap of 2: 8 tokens of the long document (straddling rows), EOS, then the next document
    const two = new Packer(3, 4, 9, 2);
    two.add(long);
    two.add([1, 2]);
    assert.deepEqual(Array.from(two.result().ids), [100, 101, 102, 103, 104, 105, 106, 107, 9, 1, 2, 9]);
    assert.equal(two.truncated, 1);
    // a document exactly at the cap is whole, not counted as cut
    const exact = new Packer(2, 4, 9, 1);
    exact.add([5, 6, 7, 8]);
    assert.equal(exact.truncated, 0);
    for (const bad of [0, -1, 1.5]) assert.throws(() => new Packer(2, 4, 9, bad), RangeError);
  });
});

describe('setup/hub error mapping', () => {
  const hub = new Hub({ endpoint: 'http://127.0.0.1:1' });
  it('a full disk', () => {
    const e = hub.explain(Object.assign(new Error('write failed'), { code: 'ENOSPC' }), 'model', 'a/b', 'model a/b: x.safetensors');
    assert.ok(e instanceof UserError);
    assert.match(e.message, /x\.safetensors: no space left on the device/);
    assert.match(e.hint!, /resumes/);
  });
});
