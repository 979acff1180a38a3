// Fetching committed code from wherever a (checked) commitment points, with a
// size cap enforced while the bytes stream in, a time limit per attempt, a
// few quick retries for transient failures, and the sha256 checked at the end.
//
// URL mode connects only to public addresses: the host name is resolved by
// our own lookup, every address it resolves to is checked, and the connection
// goes to the checked address (no second resolution an attacker's DNS could
// answer differently); redirects are not followed. The local network may use
// loopback and private addresses.
import * as dns from 'dns';
import * as fs from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as net from 'net';
import * as path from 'path';
import type { Readable } from 'stream';
import type { CommitmentPayload } from '../chain/payload';
import { LOCAL_STORAGE_DIR } from '../chain/network';
import { r2Endpoint } from '../storage/r2';
import { sha256Hex } from '../storage/store';

/** A failed fetch. `retryable`: the source may answer later (network, 5xx); otherwise the commitment itself is at fault. */
export class FetchError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
    this.name = 'FetchError';
  }
}

export interface FetchOptions {
  maxBytes: number;
  /** per attempt */
  timeoutMs?: number;
  /** attempts within this call for retryable failures */
  attempts?: number;
  /** wait before the second attempt (x4 for each further one) */
  retryBaseMs?: number;
  /** the local network: private addresses allowed, .local_storage/ under cwd */
  local: boolean;
  cwd?: string;
  /** an S3-compatible endpoint instead of R2's (tests) */
  r2Endpoint?: string;
}

// Addresses a public bucket never has: this host, private networks, link-local,
// shared address space, documentation, benchmarking, multicast, reserved.
// IPv4-mapped IPv6 addresses are checked against the IPv4 rules by BlockList.
const NOT_PUBLIC = new net.BlockList();
for (const [a, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) NOT_PUBLIC.addSubnet(a, bits, 'ipv4');
for (const [a, bits] of [
  ['::', 128], ['::1', 128], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23], ['2001:db8::', 32],
  ['2002::', 16], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as const) NOT_PUBLIC.addSubnet(a, bits, 'ipv6');

export function isPublicAddress(ip: string): boolean {
  const family = net.isIP(ip);
  if (family === 0) return false;
  return !NOT_PUBLIC.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

type LookupCb = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

/** A dns.lookup that refuses names resolving to any non-public address. */
function publicOnlyLookup(hostname: string, options: dns.LookupOptions, cb: LookupCb): void {
  dns.lookup(hostname, { all: true }, (err, addrs) => {
    if (err) return cb(err, '');
    const bad = addrs.find((a) => !isPublicAddress(a.address));
    if (bad) return cb(Object.assign(new Error(`${hostname} resolves to ${bad.address}, not a public address`), { code: 'ENOTPUBLIC' }), '');
    if (options.all) return cb(null, addrs);
    cb(null, addrs[0].address, addrs[0].family);
  });
}

/** Reads a stream into memory, failing as soon as it passes `maxBytes`. */
function readCapped(stream: Readable, maxBytes: number, what: string, abort: () => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    stream.on('data', (c: Buffer) => {
      n += c.length;
      if (n > maxBytes) {
        abort();
        reject(new FetchError(`${what} is over the ${maxBytes}-byte limit`, false));
        return;
      }
      chunks.push(c);
    });
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', (e) => reject(new FetchError(`${what}: ${e.message}`, true)));
  });
}

function fetchUrl(url: string, o: FetchOptions): Promise<Buffer> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (!o.local && net.isIP(host) && !isPublicAddress(host)) return Promise.reject(new FetchError(`${host} is not a public address`, false));
  const get = u.protocol === 'https:' ? https.get : http.get;
  const timeoutMs = o.timeoutMs ?? 60000;
  return new Promise((resolve, reject) => {
    const req = get(u, { lookup: o.local ? undefined : (publicOnlyLookup as never), agent: false, timeout: timeoutMs }, (res) => {
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        res.resume();
        const redirect = status >= 300 && status < 400 ? ' (redirects are not followed)' : '';
        return reject(new FetchError(`${url}: HTTP ${status}${redirect}`, status >= 500 || status === 429 || status === 404));
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > o.maxBytes) {
        req.destroy();
        return reject(new FetchError(`${url} is ${declared} bytes, over the ${o.maxBytes}-byte limit`, false));
      }
      readCapped(res, o.maxBytes, url, () => req.destroy()).then(resolve, reject);
    });
    const deadline = setTimeout(() => req.destroy(new Error(`no complete answer within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    req.on('close', () => clearTimeout(deadline));
    req.on('timeout', () => req.destroy(new Error(`idle for ${Math.round(timeoutMs / 1000)} s`)));
    req.on('error', (e: NodeJS.ErrnoException) => reject(new FetchError(`${url}: ${e.message}`, e.code !== 'ENOTPUBLIC')));
  });
}

async function fetchR2(loc: Extract<CommitmentPayload['loc'], { kind: 'r2' }>, o: FetchOptions): Promise<Buffer> {
  const where = `r2://${loc.bucket}/${loc.key}`;
  // Loaded here, not at start-up: every CLI command imports this file through the validator.
  const { GetObjectCommand, S3Client } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    region: 'auto',
    // Built from checked fields only (commitments.ts): the host cannot be steered.
    endpoint: o.r2Endpoint ?? r2Endpoint(loc.account_id, loc.jurisdiction),
    forcePathStyle: true,
    credentials: { accessKeyId: loc.access_key_id as string, secretAccessKey: loc.secret_access_key as string },
    maxAttempts: 1, // retries are ours, with the size cap and time limit applying to each
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const abort = new AbortController();
  const deadline = setTimeout(() => abort.abort(), o.timeoutMs ?? 60000);
  try {
    // One byte past the cap is enough to know the object is too large.
    const r = await client.send(new GetObjectCommand({ Bucket: loc.bucket, Key: loc.key, Range: `bytes=0-${o.maxBytes}` }), { abortSignal: abort.signal });
    if (!r.Body) throw new FetchError(`${where}: empty response`, true);
    return await readCapped(r.Body as Readable, o.maxBytes, where, () => abort.abort());
  } catch (e) {
    if (e instanceof FetchError) throw e;
    const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const status = err.$metadata?.httpStatusCode;
    const permanent = status === 400 || status === 401 || status === 403;
    throw new FetchError(`${where}: ${status ? `HTTP ${status} ` : ''}${err.name ?? ''} ${abort.signal.aborted ? '(timed out)' : err.message ?? ''}`.trim(), !permanent);
  } finally {
    clearTimeout(deadline);
    client.destroy();
  }
}

function fetchLocal(key: string, o: FetchOptions): Buffer {
  const file = path.join(o.cwd ?? process.cwd(), LOCAL_STORAGE_DIR, key);
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new FetchError(`${LOCAL_STORAGE_DIR}/${key} does not exist`, true);
  }
  if (st.size > o.maxBytes) throw new FetchError(`${LOCAL_STORAGE_DIR}/${key} is ${st.size} bytes, over the ${o.maxBytes}-byte limit`, false);
  return fs.readFileSync(file);
}

function once(p: CommitmentPayload, o: FetchOptions): Promise<Buffer> {
  switch (p.loc.kind) {
    case 'url':
      return fetchUrl(p.loc.url, o);
    case 'r2':
      return fetchR2(p.loc, o);
    case 'local':
      return Promise.resolve().then(() => fetchLocal(p.loc.kind === 'local' ? p.loc.key : '', o));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fetches a checked commitment's code and verifies its size and sha256; throws FetchError. */
export async function fetchCommittedCode(p: CommitmentPayload, o: FetchOptions): Promise<Buffer> {
  const maxBytes = Math.min(o.maxBytes, p.size);
  const attempts = o.attempts ?? 3;
  for (let i = 1; ; i++) {
    try {
      const body = await once(p, { ...o, maxBytes });
      if (body.length !== p.size) throw new FetchError(`got ${body.length} bytes, committed ${p.size}`, false);
      const got = sha256Hex(body);
      if (got !== p.sha256) throw new FetchError(`the code's sha256 is ${got}, committed ${p.sha256}`, false);
      return body;
    } catch (e) {
      const err = e instanceof FetchError ? e : new FetchError((e as Error).message, true);
      if (!err.retryable || i >= attempts) throw err;
      await sleep((o.retryBaseMs ?? 1000) * 4 ** (i - 1));
    }
  }
}
