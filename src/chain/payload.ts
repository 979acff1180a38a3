// The commitment a miner puts on chain: what a validator needs to fetch the code
// and the code's sha256. It is JSON, carried as a SCALE-encoded string (compact
// length, then UTF-8), the convention Bittensor's own tools use for revealed
// commitments, so they show it as text too.
//
//   { "v": 1, "sha256": "<64 hex>", "size": <bytes>, "loc": <location> }
//   location: { "kind": "r2", "account_id", "bucket", "key", "jurisdiction"?, "access_key_id"?, "secret_access_key"? }
//             (a read-only token, published on reveal by design; never the write keys;
//              "jurisdiction" for buckets in an R2 jurisdiction, which have their own endpoint)
//           | { "kind": "url", "url" }        (a public bucket URL)
//           | { "kind": "local", "key" }      (--network local: .local_storage/<key>)
import { MAX_TIMELOCK_COMMITMENT_BYTES, TLE_OVERHEAD_BYTES } from './limits';

/**
 * R2 jurisdictions: a bucket created in one is reachable only at
 * https://<account>.<jurisdiction>.r2.cloudflarestorage.com. A closed list, since
 * the value becomes part of a host name a validator connects to.
 */
export const R2_JURISDICTIONS = ['eu', 'fedramp', 'us'] as const;
export type R2Jurisdiction = (typeof R2_JURISDICTIONS)[number];

/** An R2 account id and bucket name as R2 allows them: both end up in a URL a validator requests. */
export const R2_ACCOUNT_ID = /^[0-9A-Za-z-]{1,64}$/;
export const R2_BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function isR2Jurisdiction(v: unknown): v is R2Jurisdiction {
  return typeof v === 'string' && (R2_JURISDICTIONS as readonly string[]).includes(v);
}

export type CodeLocation =
  | { kind: 'r2'; account_id: string; bucket: string; key: string; jurisdiction?: R2Jurisdiction; access_key_id?: string; secret_access_key?: string }
  | { kind: 'url'; url: string }
  | { kind: 'local'; key: string };

export interface CommitmentPayload {
  v: 1;
  sha256: string;
  size: number;
  loc: CodeLocation;
}

export class PayloadError extends Error {}

/** The largest plaintext that still fits the chain's ciphertext bound. */
export const MAX_PAYLOAD_BYTES = MAX_TIMELOCK_COMMITMENT_BYTES - TLE_OVERHEAD_BYTES;

/** SCALE compact length prefix (lengths below 2^30 are all a payload can have). */
function compactLength(n: number): Uint8Array {
  if (n < 1 << 6) return Uint8Array.of(n << 2);
  if (n < 1 << 14) return Uint8Array.of(((n << 2) | 1) & 0xff, n >> 6);
  if (n < 1 << 30) {
    const v = (n << 2) | 2;
    return Uint8Array.of(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }
  throw new PayloadError(`length ${n} too large`);
}

/** Reads a SCALE compact length prefix: [length, prefix bytes]. */
function readCompactLength(b: Uint8Array): [number, number] {
  if (b.length === 0) throw new PayloadError('empty');
  switch (b[0] & 3) {
    case 0:
      return [b[0] >> 2, 1];
    case 1:
      if (b.length < 2) throw new PayloadError('truncated length');
      return [(b[0] | (b[1] << 8)) >>> 2, 2];
    case 2:
      if (b.length < 4) throw new PayloadError('truncated length');
      return [(b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 2, 4];
    default:
      throw new PayloadError('length too large');
  }
}

export function encodePayload(p: CommitmentPayload): Uint8Array {
  const json = Buffer.from(JSON.stringify(p), 'utf8');
  return Buffer.concat([compactLength(json.length), json]);
}

const HEX64 = /^[0-9a-f]{64}$/;

function str(o: Record<string, unknown>, k: string, optional = false): string | undefined {
  const v = o[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new PayloadError(`"${k}" must be a non-empty string`);
  return v;
}

/** Parses revealed bytes (SCALE string or bare JSON); throws PayloadError when they are not ours. */
export function decodePayload(bytes: Uint8Array): CommitmentPayload {
  // A SCALE string never starts with 0x7b ('{': compact mode 3, a length over 2^30).
  let text: string;
  if (bytes[0] === 0x7b) {
    text = Buffer.from(bytes).toString('utf8');
  } else {
    let len: number;
    let off: number;
    try {
      [len, off] = readCompactLength(bytes);
    } catch {
      throw new PayloadError('not a tournament commitment (bad length prefix)');
    }
    if (off + len !== bytes.length) throw new PayloadError('not a tournament commitment (length prefix does not match)');
    text = Buffer.from(bytes.subarray(off)).toString('utf8');
  }
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw new PayloadError('not a tournament commitment (not JSON)');
  }
  if (typeof o !== 'object' || o === null) throw new PayloadError('not a tournament commitment');
  const rec = o as Record<string, unknown>;
  if (rec.v !== 1) throw new PayloadError(`unsupported commitment version ${JSON.stringify(rec.v)}`);
  const sha256 = str(rec, 'sha256') as string;
  if (!HEX64.test(sha256)) throw new PayloadError('"sha256" must be 64 lowercase hex digits');
  if (!Number.isInteger(rec.size) || (rec.size as number) < 0) throw new PayloadError('"size" must be a non-negative integer');
  const loc = rec.loc as Record<string, unknown> | undefined;
  if (typeof loc !== 'object' || loc === null) throw new PayloadError('"loc" must be an object');
  let parsed: CodeLocation;
  switch (loc.kind) {
    case 'r2': {
      if (loc.jurisdiction !== undefined && !isR2Jurisdiction(loc.jurisdiction)) {
        throw new PayloadError(`"jurisdiction" must be one of ${R2_JURISDICTIONS.join(', ')}, got ${JSON.stringify(loc.jurisdiction)}`);
      }
      const account_id = str(loc, 'account_id') as string;
      const bucket = str(loc, 'bucket') as string;
      if (!R2_ACCOUNT_ID.test(account_id)) throw new PayloadError('"account_id" is not an R2 account id');
      if (!R2_BUCKET_NAME.test(bucket)) throw new PayloadError('"bucket" is not an R2 bucket name');
      parsed = {
        kind: 'r2',
        account_id,
        bucket,
        key: str(loc, 'key') as string,
        ...(loc.jurisdiction !== undefined ? { jurisdiction: loc.jurisdiction as R2Jurisdiction } : {}),
        access_key_id: str(loc, 'access_key_id', true),
        secret_access_key: str(loc, 'secret_access_key', true),
      };
      break;
    }
    case 'url':
      parsed = { kind: 'url', url: str(loc, 'url') as string };
      break;
    case 'local':
      parsed = { kind: 'local', key: str(loc, 'key') as string };
      break;
    default:
      throw new PayloadError(`unknown location kind ${JSON.stringify(loc.kind)}`);
  }
  return { v: 1, sha256, size: rec.size as number, loc: parsed };
}

/** A copy safe to print: the read secret, if any, replaced by a note. */
export function redactPayload(p: CommitmentPayload): CommitmentPayload {
  if (p.loc.kind === 'r2' && p.loc.secret_access_key) {
    return { ...p, loc: { ...p.loc, secret_access_key: '(read-only secret, hidden)' } };
  }
  return p;
}
