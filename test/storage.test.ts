import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as path from 'path';
import { R2Store, r2ConfigFromEnv, r2Endpoint, r2Location } from '../src/storage/r2';
import { loadEnv, parseDotenv } from '../src/util/env';
import { LocalStore, uploadCode, downloadCode, codeKey, sha256Hex } from '../src/storage/store';
import { UserError } from '../src/errors';
import { startS3, LoopbackS3 } from './helpers/miner-s3';
import { deadServer } from './helpers/dead-server';
import { removeTmpDir, tmpDir } from './helpers/tmp';
import { fetchCommitted } from '../src/storage/fetch';
import { decodePayload, encodePayload, PayloadError, CodeLocation, CommitmentPayload } from '../src/chain/payload';

const CODE = new TextEncoder().encode('#include <tournament/train_api.h>\n// code\n');

describe('storage: R2 through the S3 API, against a loopback S3 server', function () {
  let s3: LoopbackS3;
  before(async () => (s3 = await startS3()));
  after(async () => s3?.close());

  const store = (over: Partial<{ bucket: string; key: string; secret: string; endpoint: string }> = {}) =>
    new R2Store({ bucket: over.bucket ?? s3.bucket, accountId: 'acct', accessKeyId: over.key ?? s3.accessKeyId, secretAccessKey: over.secret ?? s3.secretAccessKey, endpoint: over.endpoint ?? s3.endpoint, maxAttempts: 2 });

  it('uploads under the content address, records the sha256, and downloads it back', async function () {
    const st = store();
    const r = await uploadCode(st, CODE);
    assert.equal(r.sha256, sha256Hex(CODE));
    assert.equal(r.key, codeKey(r.sha256));
    assert.equal(r.uploaded, true);
    const info = await st.head(r.key);
    assert.deepEqual(info, { size: CODE.length, sha256: r.sha256 });
    assert.deepEqual(Buffer.from(await downloadCode(st, r.key, r.sha256)), Buffer.from(CODE));
    const again = await uploadCode(st, CODE);
    assert.equal(again.uploaded, false, 'the same bytes are not uploaded twice');
    st.destroy();
  });

  it('refuses a download whose hash does not match what was committed', async function () {
    const st = store();
    const r = await uploadCode(st, CODE);
    await assert.rejects(downloadCode(st, r.key, 'f'.repeat(64)), /has sha256 .* not the committed/);
    await assert.rejects(downloadCode(st, r.key, r.sha256, 3), /over the 3-byte limit/);
    st.destroy();
  });

  // (s3rver checks the access key id but not the signature, so a wrong secret is not tried here.)
  it('turns refusals into clear UserErrors: unknown key, missing bucket, server down', async function () {
    const down = await deadServer();
    try {
      const cases: [R2Store, RegExp][] = [
        [store({ key: 'NOPE' }), /access key id is not known|access denied/],
        [store({ bucket: 'no-such-bucket' }), /bucket does not exist/],
        [store({ endpoint: down.url('http') }), /failed at bucket miner-bucket at http:\/\/127\.0\.0\.1:\d+: .*ECONNRESET/],
      ];
      for (const [st, re] of cases) {
        await assert.rejects(uploadCode(st, CODE), (e: unknown) => {
          assert.ok(e instanceof UserError, `not a UserError: ${e}`);
          assert.match((e as Error).message, re);
          assert.ok(!(e as Error).message.includes('S3RVER'), 'no credentials in messages');
          return true;
        });
        st.destroy();
      }
    } finally {
      await down.close();
    }
  });
});

describe('storage: settings from the environment and .env', function () {
  const full = {
    TOURNAMENT_R2_ACCOUNT_ID: 'abc123',
    TOURNAMENT_R2_BUCKET_NAME: 'my-bucket',
    TOURNAMENT_R2_ACCESS_KEY_ID: 'writeid',
    TOURNAMENT_R2_SECRET_ACCESS_KEY: 'writesecret',
  };

  it('names every missing variable, without values', function () {
    assert.throws(() => r2ConfigFromEnv({ TOURNAMENT_R2_ACCOUNT_ID: 'abc' }), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.match((e as Error).message, /TOURNAMENT_R2_BUCKET_NAME, TOURNAMENT_R2_ACCESS_KEY_ID, TOURNAMENT_R2_SECRET_ACCESS_KEY/);
      return true;
    });
    assert.throws(() => r2ConfigFromEnv({ ...full, TOURNAMENT_R2_BUCKET_NAME: 'Bad_Bucket' }), /not a valid bucket name/);
    assert.throws(() => r2ConfigFromEnv({ ...full, TOURNAMENT_R2_READ_ACCESS_KEY_ID: 'x' }), /both/);
  });

  it('commits a public URL or a read-only token, never the write token', function () {
    const key = codeKey('a'.repeat(64));
    assert.throws(() => r2Location(r2ConfigFromEnv(full), key), /no read access/);
    assert.deepEqual(r2Location(r2ConfigFromEnv({ ...full, TOURNAMENT_R2_PUBLIC_URL: 'https://pub.example.dev/' }), key), { kind: 'url', url: `https://pub.example.dev/${key}` });
    const loc = r2Location(r2ConfigFromEnv({ ...full, TOURNAMENT_R2_READ_ACCESS_KEY_ID: 'rid', TOURNAMENT_R2_READ_SECRET_ACCESS_KEY: 'rsec' }), key);
    assert.equal(loc.kind, 'r2');
    assert.ok(!JSON.stringify(loc).includes('writesecret') && !JSON.stringify(loc).includes('writeid'));
  });

  it('carries an R2 jurisdiction from an allow-list into the endpoint and the commitment', function () {
    const key = codeKey('b'.repeat(64));
    const read = { TOURNAMENT_R2_READ_ACCESS_KEY_ID: 'rid', TOURNAMENT_R2_READ_SECRET_ACCESS_KEY: 'rsec' };
    const eu = r2ConfigFromEnv({ ...full, ...read, TOURNAMENT_R2_JURISDICTION: 'eu' });
    assert.equal(eu.jurisdiction, 'eu');
    assert.equal(r2Endpoint('acct', 'eu'), 'https://acct.eu.r2.cloudflarestorage.com');
    assert.equal(r2Endpoint('acct', 'fedramp'), 'https://acct.fedramp.r2.cloudflarestorage.com');
    assert.equal(r2Endpoint('acct'), 'https://acct.r2.cloudflarestorage.com');
    const store = R2Store.forUpload(eu);
    assert.equal(store.description, 'bucket my-bucket at https://abc123.eu.r2.cloudflarestorage.com');
    store.destroy();
    const loc = r2Location(eu, key);
    assert.equal(loc.kind === 'r2' && loc.jurisdiction, 'eu');
    const payload: CommitmentPayload = { v: 1, sha256: 'b'.repeat(64), size: 1, loc };
    assert.deepEqual(decodePayload(encodePayload(payload)), payload, 'validators read the jurisdiction back');
    assert.equal((r2Location(r2ConfigFromEnv({ ...full, ...read }), key) as { jurisdiction?: string }).jurisdiction, undefined);
    assert.throws(() => r2ConfigFromEnv({ ...full, TOURNAMENT_R2_JURISDICTION: 'mars' }), /TOURNAMENT_R2_JURISDICTION must be one of eu, fedramp, us/);
    // a revealed commitment is attacker-controlled: only listed jurisdictions and R2-shaped names become host names
    const forged = (l: Record<string, unknown>) => encodePayload({ ...payload, loc: { ...loc, ...l } as CodeLocation });
    assert.throws(() => decodePayload(forged({ jurisdiction: 'evil.example.com/' })), PayloadError);
    assert.throws(() => decodePayload(forged({ account_id: 'evil.example.com#' })), /not an R2 account id/);
    assert.throws(() => decodePayload(forged({ bucket: '../x' })), /not an R2 bucket name/);
  });

  it('reads .env (comments, quotes, export) with the environment winning', function () {
    assert.deepEqual(parseDotenv('# c\nexport A=1\nB="two words"\nC=\'x\' \nD=3 # trailing\nnot a line\n'), { A: '1', B: 'two words', C: 'x', D: '3' });
    const dir = tmpDir('dotenv');
    try {
      fs.writeFileSync(path.join(dir, '.env'), 'TOURNAMENT_R2_BUCKET_NAME=from-file\nTOURNAMENT_R2_ACCOUNT_ID=file\n');
      const env = loadEnv(dir, { TOURNAMENT_R2_ACCOUNT_ID: 'from-env' });
      assert.equal(env.TOURNAMENT_R2_BUCKET_NAME, 'from-file');
      assert.equal(env.TOURNAMENT_R2_ACCOUNT_ID, 'from-env');
    } finally {
      removeTmpDir(dir);
    }
  });
});

describe('storage: local folder and atomic writes', function () {
  let dir: string;
  beforeEach(() => (dir = tmpDir('local-store')));
  afterEach(() => removeTmpDir(dir));

  it('round-trips through .local_storage and keeps keys inside it', async function () {
    const st = new LocalStore(path.join(dir, '.local_storage'));
    const r = await uploadCode(st, CODE);
    assert.ok(fs.existsSync(path.join(dir, '.local_storage', r.key)));
    assert.deepEqual(Buffer.from(await downloadCode(st, r.key, r.sha256)), Buffer.from(CODE));
    await assert.rejects(st.put('../escape', CODE), /escapes/);
    await assert.rejects(st.get('tournament/train/missing.cpp'), UserError);
  });

  it('writes whole objects only: no temporary file is left beside them', async function () {
    const st = new LocalStore(path.join(dir, '.local_storage'));
    const r = await uploadCode(st, CODE);
    await st.put(r.key, new TextEncoder().encode('replaced'), '');
    const folder = path.dirname(path.join(dir, '.local_storage', r.key));
    assert.deepEqual(fs.readdirSync(folder), [path.basename(r.key)]);
    assert.equal(fs.readFileSync(path.join(folder, path.basename(r.key)), 'utf8'), 'replaced');
  });
});

describe('storage: fetching what a commitment points at (the validator side)', function () {
  let s3: LoopbackS3;
  let dir: string;
  before(async () => (s3 = await startS3('fetch-bucket')));
  after(async () => s3?.close());
  beforeEach(() => (dir = tmpDir('fetch')));
  afterEach(() => removeTmpDir(dir));

  const payloadFor = (loc: CodeLocation): CommitmentPayload => ({ v: 1, sha256: sha256Hex(CODE), size: CODE.length, loc });

  it('from R2 with the read-only token, from a public URL, and from .local_storage', async function () {
    const st = new R2Store({ bucket: s3.bucket, accountId: 'acct', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, endpoint: s3.endpoint });
    const { key } = await uploadCode(st, CODE);
    st.destroy();
    const viaR2 = await fetchCommitted(payloadFor({ kind: 'r2', account_id: 'acct', bucket: s3.bucket, key, access_key_id: s3.accessKeyId, secret_access_key: s3.secretAccessKey }), { r2Endpoint: s3.endpoint });
    assert.deepEqual(Buffer.from(viaR2), Buffer.from(CODE));

    const server = http.createServer((req, res) => {
      if (req.url === `/${key}`) res.end(Buffer.from(CODE));
      else if (req.url === '/tampered') res.end('something else');
      else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    try {
      assert.deepEqual(Buffer.from(await fetchCommitted(payloadFor({ kind: 'url', url: `${base}/${key}` }))), Buffer.from(CODE));
      await assert.rejects(fetchCommitted(payloadFor({ kind: 'url', url: `${base}/tampered` })), /not the committed/);
      await assert.rejects(fetchCommitted(payloadFor({ kind: 'url', url: `${base}/missing` })), /HTTP 404/);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }

    await uploadCode(new LocalStore(path.join(dir, '.local_storage')), CODE);
    assert.deepEqual(Buffer.from(await fetchCommitted(payloadFor({ kind: 'local', key }), { cwd: dir })), Buffer.from(CODE));
    await assert.rejects(fetchCommitted(payloadFor({ kind: 'local', key }), { cwd: dir, maxBytes: 4 }), /over the 4-byte limit/);
  });
});
