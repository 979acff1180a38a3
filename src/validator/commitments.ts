// A revealed commitment is attacker-controlled input: every field is checked
// against a pattern or an allow-list before anything is fetched, and the
// location must name the content address of the committed sha256, so a
// commitment can point at exactly one object. Anything else is a rejection
// with its reason, never an error of the validator.
import { decodePayload, PayloadError, type CommitmentPayload } from '../chain/payload';
import { MAX_TIMELOCK_COMMITMENT_BYTES } from '../chain/limits';
import { codeKey } from '../storage/store';

export type CommitmentCheck = { ok: true; payload: CommitmentPayload } | { ok: false; reason: string };

/** Cloudflare account ids and R2 API token ids are 32 hex digits, token secrets 64 (the sha256 of the token value). */
const ACCOUNT_ID = /^[0-9a-f]{32}$/;
const R2_ACCESS_KEY_ID = /^[0-9a-f]{32}$/;
const R2_SECRET = /^[0-9a-f]{64}$/;
/** R2 bucket names: 3 to 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit. */
const BUCKET = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;
const MAX_URL_CHARS = 512;

export interface CommitmentRules {
  /** the local network: local storage and plain-http / private-address URLs are allowed */
  local: boolean;
  maxCodeBytes: number;
}

function fail(reason: string): CommitmentCheck {
  return { ok: false, reason };
}

/** Decodes and checks revealed bytes; a rejection says which field is wrong and why. */
export function checkCommitment(bytes: Uint8Array, rules: CommitmentRules): CommitmentCheck {
  if (bytes.length === 0) return fail('empty commitment');
  if (bytes.length > MAX_TIMELOCK_COMMITMENT_BYTES) return fail(`commitment is ${bytes.length} bytes, over the chain's ${MAX_TIMELOCK_COMMITMENT_BYTES}`);
  let p: CommitmentPayload;
  try {
    p = decodePayload(bytes);
  } catch (e) {
    if (e instanceof PayloadError) return fail(e.message);
    throw e;
  }
  if (p.size < 1 || p.size > rules.maxCodeBytes) return fail(`"size" ${p.size} is outside 1..${rules.maxCodeBytes} (max_code_bytes)`);
  const key = codeKey(p.sha256);
  // decodePayload has already checked the kind, the jurisdiction (an allow-list) and the rough shapes.
  const loc = p.loc;
  switch (loc.kind) {
    case 'r2': {
      if (!ACCOUNT_ID.test(loc.account_id)) return fail('"account_id" must be 32 lowercase hex digits (a Cloudflare account id)');
      if (!BUCKET.test(loc.bucket)) return fail('"bucket" is not a valid R2 bucket name');
      if (loc.key !== key) return fail(`"key" must be the content address ${key}`);
      if (!loc.access_key_id || !loc.secret_access_key) return fail('r2 location without a read-only token (access_key_id and secret_access_key)');
      if (!R2_ACCESS_KEY_ID.test(loc.access_key_id)) return fail('"access_key_id" must be 32 lowercase hex digits (an R2 token id)');
      if (!R2_SECRET.test(loc.secret_access_key)) return fail('"secret_access_key" must be 64 lowercase hex digits (an R2 token secret)');
      break;
    }
    case 'url': {
      if (loc.url.length > MAX_URL_CHARS) return fail(`"url" is longer than ${MAX_URL_CHARS} characters`);
      let u: URL;
      try {
        u = new URL(loc.url);
      } catch {
        return fail('"url" is not a URL');
      }
      if (u.protocol !== 'https:' && !(rules.local && u.protocol === 'http:')) return fail(`"url" must be https${rules.local ? ' (or http on the local network)' : ''}`);
      if (u.username || u.password) return fail('"url" must not carry credentials');
      if (u.port && !rules.local) return fail('"url" must use the default port');
      if (u.search || u.hash) return fail('"url" must not have a query or fragment');
      if (!u.pathname.endsWith(`/${key}`)) return fail(`"url" must end with the content address /${key}`);
      break;
    }
    case 'local':
      if (!rules.local) return fail('a local-storage commitment is only valid on the local network');
      if (loc.key !== key) return fail(`"key" must be the content address ${key}`);
      break;
  }
  return { ok: true, payload: p };
}
