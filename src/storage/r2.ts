// The miner's Cloudflare R2 bucket through the S3 API. Settings come from the
// environment or a .env file in the working directory (the environment wins):
//   TOURNAMENT_R2_ACCOUNT_ID, TOURNAMENT_R2_BUCKET_NAME,
//   TOURNAMENT_R2_ACCESS_KEY_ID, TOURNAMENT_R2_SECRET_ACCESS_KEY   (write token: used to upload, never published)
//   TOURNAMENT_R2_READ_ACCESS_KEY_ID, TOURNAMENT_R2_READ_SECRET_ACCESS_KEY
//                                  (read-only token: goes into the commitment for validators)
//   TOURNAMENT_R2_PUBLIC_URL       (instead of a read token: the bucket's public URL)
//   TOURNAMENT_R2_JURISDICTION     (optional: eu, fedramp or us for a bucket created in that jurisdiction)
//   TOURNAMENT_R2_ENDPOINT         (optional: another S3-compatible endpoint, e.g. for tests)
import { S3Client, PutObjectCommand, HeadObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { UserError } from '../errors';
import type { ObjectInfo, ObjectStore } from './store';
import { R2_ACCOUNT_ID, R2_BUCKET_NAME, R2_JURISDICTIONS, isR2Jurisdiction, CodeLocation, R2Jurisdiction } from '../chain/payload';

export interface R2Config {
  accountId: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  endpoint?: string;
  jurisdiction?: R2Jurisdiction;
  readAccessKeyId?: string;
  readSecretAccessKey?: string;
  publicUrl?: string;
}

const REQUIRED = ['TOURNAMENT_R2_ACCOUNT_ID', 'TOURNAMENT_R2_BUCKET_NAME', 'TOURNAMENT_R2_ACCESS_KEY_ID', 'TOURNAMENT_R2_SECRET_ACCESS_KEY'] as const;

export function r2ConfigFromEnv(env: Record<string, string | undefined>): R2Config {
  const missing = REQUIRED.filter((k) => !env[k]);
  if (missing.length) {
    throw new UserError(`missing R2 settings: ${missing.join(', ')}`, {
      hint: 'set them in the environment or in a .env file in this folder (see `tournament miner upload --help`)',
    });
  }
  const cfg: R2Config = {
    accountId: env.TOURNAMENT_R2_ACCOUNT_ID as string,
    bucket: env.TOURNAMENT_R2_BUCKET_NAME as string,
    accessKeyId: env.TOURNAMENT_R2_ACCESS_KEY_ID as string,
    secretAccessKey: env.TOURNAMENT_R2_SECRET_ACCESS_KEY as string,
    endpoint: env.TOURNAMENT_R2_ENDPOINT || undefined,
    jurisdiction: undefined,
    readAccessKeyId: env.TOURNAMENT_R2_READ_ACCESS_KEY_ID || undefined,
    readSecretAccessKey: env.TOURNAMENT_R2_READ_SECRET_ACCESS_KEY || undefined,
    publicUrl: env.TOURNAMENT_R2_PUBLIC_URL || undefined,
  };
  if (!R2_ACCOUNT_ID.test(cfg.accountId)) throw new UserError('TOURNAMENT_R2_ACCOUNT_ID must be the account id (letters, digits, dashes)');
  if (!R2_BUCKET_NAME.test(cfg.bucket)) throw new UserError(`TOURNAMENT_R2_BUCKET_NAME ${JSON.stringify(cfg.bucket)} is not a valid bucket name`);
  const j = env.TOURNAMENT_R2_JURISDICTION || undefined;
  if (j !== undefined) {
    if (!isR2Jurisdiction(j)) throw new UserError(`TOURNAMENT_R2_JURISDICTION must be one of ${R2_JURISDICTIONS.join(', ')}, got ${JSON.stringify(j)}`, { hint: 'leave it unset for a bucket without a jurisdiction' });
    cfg.jurisdiction = j;
  }
  if (!!cfg.readAccessKeyId !== !!cfg.readSecretAccessKey) {
    throw new UserError('set both TOURNAMENT_R2_READ_ACCESS_KEY_ID and TOURNAMENT_R2_READ_SECRET_ACCESS_KEY, or neither');
  }
  if (cfg.publicUrl && !/^https?:\/\/[^\s]+$/.test(cfg.publicUrl)) throw new UserError('TOURNAMENT_R2_PUBLIC_URL must be an http(s) URL');
  return cfg;
}

/** Where a validator will fetch `key` from: the public URL or the bucket with the read-only token. */
export function r2Location(cfg: R2Config, key: string): CodeLocation {
  if (cfg.publicUrl) return { kind: 'url', url: `${cfg.publicUrl.replace(/\/+$/, '')}/${key}` };
  if (cfg.readAccessKeyId && cfg.readSecretAccessKey) {
    return {
      kind: 'r2',
      account_id: cfg.accountId,
      bucket: cfg.bucket,
      key,
      ...(cfg.jurisdiction ? { jurisdiction: cfg.jurisdiction } : {}),
      access_key_id: cfg.readAccessKeyId,
      secret_access_key: cfg.readSecretAccessKey,
    };
  }
  throw new UserError('validators could not fetch your code: no read access is configured', {
    hint: 'set TOURNAMENT_R2_PUBLIC_URL (the bucket\'s public URL) or TOURNAMENT_R2_READ_ACCESS_KEY_ID and TOURNAMENT_R2_READ_SECRET_ACCESS_KEY (a read-only token); the write token is never published',
  });
}

const REFUSALS: Record<string, string> = {
  NoSuchBucket: 'the bucket does not exist',
  AccessDenied: 'access denied (does the token have write access to this bucket?)',
  InvalidAccessKeyId: 'the access key id is not known',
  SignatureDoesNotMatch: 'the secret access key is wrong',
  InvalidBucketName: 'the bucket name is invalid',
  Forbidden: 'access denied (check the access key id, the secret and the token\'s permissions)',
};

const BY_STATUS: Record<number, string> = {
  401: REFUSALS.Forbidden,
  403: REFUSALS.Forbidden,
};

function describeS3Error(e: unknown, what: string, where: string): UserError {
  const err = e as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const name = err.name ?? err.code ?? 'Error';
  const status = err.$metadata?.httpStatusCode;
  const reason =
    REFUSALS[name] ?? (status && BY_STATUS[status]) ?? (status ? `HTTP ${status} ${name}` : `${name}: ${err.message || err.code || 'network error'}`);
  return new UserError(`${what} failed at ${where}: ${reason}`);
}

/** The S3 endpoint of an account's buckets: jurisdictions have their own host. */
export function r2Endpoint(accountId: string, jurisdiction?: R2Jurisdiction): string {
  return `https://${accountId}.${jurisdiction ? `${jurisdiction}.` : ''}r2.cloudflarestorage.com`;
}

export interface R2StoreOptions {
  bucket: string;
  accountId: string;
  accessKeyId: string;
  secretAccessKey: string;
  jurisdiction?: R2Jurisdiction;
  /** another S3-compatible endpoint instead of R2's (tests) */
  endpoint?: string;
  maxAttempts?: number;
}

export class R2Store implements ObjectStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  constructor({ bucket, accountId, accessKeyId, secretAccessKey, jurisdiction, endpoint, maxAttempts = 4 }: R2StoreOptions) {
    // The SDK version is pinned; its notice about future Node versions is noise in a CLI.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.bucket = bucket;
    const url = endpoint ?? r2Endpoint(accountId, jurisdiction);
    this.description = `bucket ${bucket} at ${url}`;
    this.client = new S3Client({
      region: 'auto',
      endpoint: url,
      forcePathStyle: true,
      credentials: { accessKeyId, secretAccessKey },
      maxAttempts, // the SDK retries network errors, 5xx and throttling with backoff
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  static forUpload(cfg: R2Config, maxAttempts?: number): R2Store {
    return new R2Store({ ...cfg, maxAttempts });
  }

  async put(key: string, body: Uint8Array, sha256: string): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: 'text/x-c++src', Metadata: { sha256 } }),
      );
    } catch (e) {
      throw describeS3Error(e, `upload of ${key}`, this.description);
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: Number(r.ContentLength ?? 0), sha256: r.Metadata?.sha256 };
    } catch (e) {
      const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (err.name === 'NotFound' || err.name === 'NoSuchKey' || err.$metadata?.httpStatusCode === 404) return null;
      throw describeS3Error(e, `lookup of ${key}`, this.description);
    }
  }

  async get(key: string): Promise<Uint8Array> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!r.Body) throw new Error('empty response');
      return await r.Body.transformToByteArray();
    } catch (e) {
      throw describeS3Error(e, `download of ${key}`, this.description);
    }
  }

  destroy(): void {
    this.client.destroy();
  }
}
