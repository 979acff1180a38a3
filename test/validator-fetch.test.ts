// Fetching committed code: only public addresses off the local network (no
// connection is ever made to a private one), the size cap enforced while the
// bytes stream, no redirects, time limits, retries for transient failures,
// and the sha256 checked.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import type { CommitmentPayload } from '../src/chain/payload';
import { codeKey, sha256Hex } from '../src/storage/store';
import { fetchCommittedCode, FetchError, isPublicAddress } from '../src/validator/fetch';
import { R2Store } from '../src/storage/r2';
import { startS3 } from './helpers/miner-s3';
import { removeTmpDir, tmpDir } from './helpers/tmp';

const CODE = Buffer.from('#include <tournament/train_api.h>\n// code\n');
const SHA = sha256Hex(CODE);
const KEY = codeKey(SHA);

describe('validator: fetching committed code', function () {
  this.timeout(30000);
  let server: http.Server;
  let port: number;
  let connections = 0;
  let handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;

  before(async () => {
    server = http.createServer((req, res) => handler(req, res));
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());
  beforeEach(() => {
    connections = 0;
    handler = (_req, res) => res.end(CODE);
  });

  const url = (host = '127.0.0.1') => `http://${host}:${port}/${KEY}`;
  const p = (u: string, over: Partial<CommitmentPayload> = {}): CommitmentPayload => ({ v: 1, sha256: SHA, size: CODE.length, loc: { kind: 'url', url: u }, ...over });
  const opts = { maxBytes: 262144, local: true, retryBaseMs: 5, timeoutMs: 2000 };
  const failure = async (pr: Promise<unknown>) => {
    try {
      await pr;
    } catch (e) {
      assert.ok(e instanceof FetchError, String(e));
      return e as FetchError;
    }
    assert.fail('expected a FetchError');
  };

  it('knows public from private, loopback, link-local and mapped addresses', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:a9fe:a9fe', '224.0.0.1', 'not-an-ip']) {
      assert.equal(isPublicAddress(a), false, a);
    }
    for (const a of ['1.1.1.1', '104.18.2.3', '2606:4700::1111']) assert.equal(isPublicAddress(a), true, a);
  });

  it('off the local network never connects to a private address, literal or resolved', async () => {
    for (const host of ['127.0.0.1', 'localhost', '[::1]']) {
      const e = await failure(fetchCommittedCode(p(url(host)), { ...opts, local: false }));
      assert.match(e.message, /not a public address/);
      assert.equal(e.retryable, false);
    }
    assert.equal(connections, 0, 'no connection was made');
  });

  it('fetches and checks the code (local network: loopback allowed)', async () => {
    assert.deepEqual(await fetchCommittedCode(p(url()), opts), CODE);
  });

  it('stops reading at the size cap, streamed or declared, and refuses a hash mismatch', async () => {
    handler = (_req, res) => {
      res.write(CODE);
      res.write(Buffer.alloc(100000, 0x20)); // more than committed, without a length
      res.end();
    };
    let e = await failure(fetchCommittedCode(p(url()), opts));
    assert.match(e.message, new RegExp(`over the ${CODE.length}-byte limit`));
    assert.equal(e.retryable, false);
    handler = (_req, res) => {
      res.setHeader('content-length', '999999');
      res.end();
    };
    e = await failure(fetchCommittedCode(p(url()), opts));
    assert.match(e.message, /999999 bytes, over/);
    handler = (_req, res) => res.end(Buffer.from(CODE).fill(0x41, 0, 1));
    e = await failure(fetchCommittedCode(p(url()), opts));
    assert.match(e.message, /sha256 is .*committed/);
    assert.equal(e.retryable, false);
  });

  it('does not follow redirects; retries server errors; gives up on time', async () => {
    handler = (_req, res) => {
      res.statusCode = 302;
      res.setHeader('location', 'http://169.254.169.254/latest/meta-data');
      res.end();
    };
    const e = await failure(fetchCommittedCode(p(url()), opts));
    assert.match(e.message, /HTTP 302 \(redirects are not followed\)/);

    let calls = 0;
    handler = (_req, res) => {
      if (++calls < 3) {
        res.statusCode = 503;
        res.end();
      } else res.end(CODE);
    };
    assert.deepEqual(await fetchCommittedCode(p(url()), opts), CODE);
    assert.equal(calls, 3);

    handler = (_req, res) => res.write(CODE.subarray(0, 5)); // never ends
    const t0 = Date.now();
    const slow = await failure(fetchCommittedCode(p(url()), { ...opts, timeoutMs: 300, attempts: 1 }));
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(slow.retryable, true);
  });

  it('reads local storage by content address, with the cap', async () => {
    const dir = tmpDir('validator-fetch');
    try {
      const file = path.join(dir, '.local_storage', KEY);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, CODE);
      const local = { v: 1, sha256: SHA, size: CODE.length, loc: { kind: 'local', key: KEY } } as CommitmentPayload;
      assert.deepEqual(await fetchCommittedCode(local, { ...opts, cwd: dir }), CODE);
      fs.writeFileSync(file, Buffer.alloc(CODE.length + 10));
      const e = await failure(fetchCommittedCode(local, { ...opts, cwd: dir }));
      assert.match(e.message, /over the/);
    } finally {
      removeTmpDir(dir);
    }
  });

  it('reads an R2 bucket with the committed read token, at most one byte past the committed size', async () => {
    const s3 = await startS3('code-bucket');
    const store = new R2Store({ bucket: s3.bucket, accountId: 'acct', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, endpoint: s3.endpoint });
    try {
      const r2 = (over: Record<string, string> = {}, size = CODE.length) =>
        ({ v: 1, sha256: SHA, size, loc: { kind: 'r2', account_id: 'acct', bucket: s3.bucket, key: KEY, access_key_id: s3.accessKeyId, secret_access_key: s3.secretAccessKey, ...over } }) as CommitmentPayload;
      const o = { ...opts, local: false, r2Endpoint: s3.endpoint, attempts: 1 };
      let e = await failure(fetchCommittedCode(r2(), o));
      assert.match(e.message, /NoSuchKey|404/);
      assert.equal(e.retryable, true, 'a missing object may appear (or the store may be down): retried later');
      await store.put(KEY, CODE, SHA);
      assert.deepEqual(await fetchCommittedCode(r2(), o), CODE);
      e = await failure(fetchCommittedCode(r2({}, CODE.length - 5), o));
      assert.match(e.message, new RegExp(`over the ${CODE.length - 5}-byte limit`));
      assert.equal(e.retryable, false);
    } finally {
      store.destroy();
      await s3.close();
    }
  });
});
