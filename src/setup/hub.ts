// The Hugging Face hub, through @huggingface/hub (revisions, file listings with
// their checksums, download URLs and ETags), plus our own ranged transfer of the
// bytes so that downloads resume where they stopped:
//   - a file downloads to "<name>.partial" with "<name>.partial.json" beside it
//     (size, ETag, revision); a later run continues it with an HTTP Range request
//     if the ETag still matches, else starts over;
//   - the finished file is checked (sha256 of LFS files, git blob sha1 of small
//     ones, as the hub lists them), fsynced and only then renamed into place, so
//     nothing half-written ever carries a final name;
//   - dropped connections are retried from the current offset a few times.
// The hub's address comes from HF_ENDPOINT (tests point it at a loopback server).
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { HubApiError, datasetInfo, fileDownloadInfo, listFiles, modelInfo } from '@huggingface/hub';
import { UserError } from '../errors';
import type { HubEnv } from './env';
import { Progress } from './progress';

type RepoType = 'model' | 'dataset';

export interface RemoteFile {
  path: string;
  size: number;
  /** sha256 of the content (LFS files) */
  sha256?: string;
  /** git blob sha1 (every file the hub lists) */
  gitOid?: string;
}

interface ErrorDetail {
  status: number;
  code?: string;
  message?: string;
}

const RETRIES = 5;

export class Hub {
  readonly endpoint: string;
  private readonly token?: string;
  private readonly tokenSource?: string;
  private lastError?: ErrorDetail;
  /** Milliseconds to wait before retry n (tests make it 0). */
  backoffMs = (n: number) => 500 * 2 ** n;

  constructor(env: HubEnv) {
    this.endpoint = env.endpoint;
    this.token = env.token;
    this.tokenSource = env.tokenSource;
    if (this.token && !this.token.startsWith('hf_')) {
      throw new UserError(`HF_TOKEN from ${this.tokenSource} does not look like a Hugging Face token (they start with "hf_")`, {
        hint: 'create one at https://huggingface.co/settings/tokens',
      });
    }
  }

  /** fetch that remembers the hub's X-Error-Code / X-Error-Message of the last failure. */
  private readonly fetch: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    if (!res.ok) {
      this.lastError = {
        status: res.status,
        code: res.headers.get('x-error-code') ?? undefined,
        message: res.headers.get('x-error-message') ?? undefined,
      };
    }
    return res;
  };

  private common() {
    return { hubUrl: this.endpoint, fetch: this.fetch, ...(this.token ? { accessToken: this.token } : {}) };
  }

  private repoUrl(type: RepoType, name: string): string {
    return `${this.endpoint}/${type === 'dataset' ? 'datasets/' : ''}${name}`;
  }

  /** Turns any failure talking to the hub into a UserError saying what to do. */
  explain(err: unknown, type: RepoType, name: string, what: string): UserError {
    if (err instanceof UserError) return err;
    const kind = type === 'dataset' ? 'dataset' : 'model';
    if (err instanceof HubApiError || (err as { statusCode?: number }).statusCode) {
      const status = (err as HubApiError).statusCode;
      const d = this.lastError && this.lastError.status === status ? this.lastError : undefined;
      const code = d?.code;
      const serverSays = d?.message || (err as Error).message.split('. URL:')[0];
      const page = this.repoUrl(type, name);
      const getToken = 'set HF_TOKEN (a read token from https://huggingface.co/settings/tokens) in the environment or in .env';
      // A gated repository lists its files to anyone and refuses the downloads:
      // 401 without a token, 403 with one whose account has not accepted the licence.
      if ((status === 401 || status === 403) && (code === 'GatedRepo' || /gated|restricted/i.test(serverSays))) {
        return new UserError(`${what}: ${kind} ${name} is gated: its files need a token of an account that accepted its licence (HTTP ${status}${code ? `, ${code}` : ''})`, {
          hint: this.token
            ? `accept the licence at ${page} while logged in as the account of HF_TOKEN (from ${this.tokenSource}), then run again`
            : `accept the licence at ${page}, then ${getToken}`,
        });
      }
      if (status === 401 && !this.token) {
        // Without a token the hub answers a private, gated or missing repository alike.
        return new UserError(`${what}: ${kind} ${name} needs a token: it is private or gated, or it does not exist (HTTP 401${code ? `, ${code}` : ''}; without a token the hub does not say which)`, {
          hint: `${getToken}; if the repository is gated, accept its licence at ${page} first; check the name in hparams.json`,
        });
      }
      if (status === 401 && code !== 'RepoNotFound') {
        return new UserError(`${what}: the hub rejected HF_TOKEN from ${this.tokenSource} (HTTP 401: ${serverSays})`, {
          hint: 'the token is invalid or expired; create one at https://huggingface.co/settings/tokens',
        });
      }
      if (status === 403) {
        return new UserError(`${what}: access to ${kind} ${name} is forbidden (HTTP 403${code ? `, ${code}` : ''}: ${serverSays})`, {
          hint: 'check that your HF_TOKEN has read access to this repository (a fine-grained token needs it granted)',
        });
      }
      if (status === 404 || status === 401) {
        return new UserError(`${what}: not found at ${this.endpoint} (HTTP ${status}${code ? `, ${code}` : ''}): ${kind} ${name}`, {
          hint: code === 'RevisionNotFound' ? 'the revision does not exist' : 'check benchmark_model_name / benchmark_dataset_name in hparams.json',
        });
      }
      return new UserError(`${what}: the hub answered HTTP ${status}: ${serverSays}`, { hint: status >= 500 ? 'the hub has trouble; try again later' : undefined });
    }
    const net = networkCode(err);
    if (net) {
      return new UserError(`${what}: cannot reach ${this.endpoint} (${net})`, {
        hint:
          'check the network connection (and HF_ENDPOINT if you set it), then run again: downloads resume. Without network, ' +
          '`setup-benchmark --preset tiny` (a tiny model for the CPU) or `--preset 7b-shape` (Qwen2.5-7B\'s shape, random init, for GPU measurements) set up offline',
      });
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC') return new UserError(`${what}: no space left on the device`, { hint: 'free some disk space and run again: the download resumes' });
    if (code === 'EACCES' || code === 'EROFS') return new UserError(`${what}: cannot write (${code})`);
    if (err instanceof TypeError && /access token/i.test(err.message)) return new UserError(`HF_TOKEN: ${err.message}`);
    return err instanceof Error ? Object.assign(err, { message: `${what}: ${err.message}` }) as UserError : new UserError(`${what}: ${String(err)}`);
  }

  /** The commit sha a revision (branch, tag or sha) points at. */
  async resolveRevision(type: RepoType, name: string, revision = 'main'): Promise<string> {
    try {
      const p = { ...this.common(), name, revision, additionalFields: ['sha'] as const };
      const info = type === 'model' ? await modelInfo(p as any) : await datasetInfo(p as any);
      const sha = (info as { sha?: string }).sha;
      if (!sha) throw new UserError(`${type} ${name}: the hub gave no commit sha for revision ${revision}`);
      return sha;
    } catch (e) {
      throw this.explain(e, type, name, `${type} ${name}`);
    }
  }

  /** Every file under `dir` (recursive) at a revision, with sizes and checksums. */
  async listFiles(type: RepoType, name: string, revision: string, dir?: string): Promise<RemoteFile[]> {
    const out: RemoteFile[] = [];
    try {
      for await (const f of listFiles({ ...this.common(), repo: { type, name }, revision, recursive: true, ...(dir ? { path: dir } : {}) })) {
        if (f.type !== 'file') continue;
        out.push({ path: f.path, size: f.lfs?.size ?? f.size, sha256: f.lfs?.oid, gitOid: f.lfs ? undefined : f.oid });
      }
    } catch (e) {
      throw this.explain(e, type, name, `listing ${type} ${name}${dir ? `/${dir}` : ''}`);
    }
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** Download URL and ETag of a file (the hub's own HEAD-like probe). */
  async fileInfo(type: RepoType, name: string, revision: string, file: string): Promise<{ url: string; etag: string; size: number }> {
    try {
      const info = await fileDownloadInfo({ ...this.common(), repo: { type, name }, revision, path: file });
      if (!info) throw new UserError(`${type} ${name}: ${file} does not exist at revision ${revision.slice(0, 12)}`);
      return { url: info.url, etag: info.etag, size: info.size };
    } catch (e) {
      throw this.explain(e, type, name, `${type} ${name}: ${file}`);
    }
  }

  /** GET with an optional byte range, authorised; errors are thrown as HubApiError-like objects. */
  async get(url: string, start = 0, end?: number): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (start > 0 || end !== undefined) headers.Range = `bytes=${start}-${end === undefined ? '' : end - 1}`;
    const res = await this.fetch(url, { headers });
    if (!res.ok) {
      await res.body?.cancel();
      throw Object.assign(new Error(`HTTP ${res.status} for ${url}`), { statusCode: res.status });
    }
    return res;
  }

  /** Bytes [start, end) of a file, retried on dropped connections. */
  async range(url: string, start: number, end: number): Promise<ArrayBuffer> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.get(url, start, end);
        const buf = await res.arrayBuffer();
        if (res.status === 200) return buf.slice(start, end); // server ignored the range
        if (buf.byteLength !== end - start) throw Object.assign(new Error('short read'), { code: 'ECONNRESET' });
        return buf;
      } catch (e) {
        if (attempt >= RETRIES || !networkCode(e)) throw e;
        await sleep(this.backoffMs(attempt));
      }
    }
  }

  /**
   * Downloads a file to `dest`, resuming a previous partial download, verifying
   * its checksum. Returns the sha256 of the content. A complete file already at
   * `dest` is verified and kept.
   */
  async download(type: RepoType, name: string, revision: string, file: RemoteFile, dest: string): Promise<string> {
    const what = `${type === 'dataset' ? 'dataset ' : ''}${name}: ${file.path}`;
    try {
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      if (fs.existsSync(dest)) {
        if (fs.statSync(dest).size === file.size) {
          const h = await hashFile(dest);
          if (checksumMatches(file, h)) return h.sha256;
        }
        fs.rmSync(dest);
      }
      const info = await this.fileInfo(type, name, revision, file.path);
      if (info.size !== file.size) throw new UserError(`${what}: the hub lists ${file.size} bytes but serves ${info.size}`);
      const partial = `${dest}.partial`;
      const metaFile = `${partial}.json`;
      const meta = { etag: info.etag, size: file.size, revision };
      let have = 0;
      try {
        const old = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
        const sz = fs.statSync(partial).size;
        if (old.etag === meta.etag && old.size === meta.size && sz <= file.size) have = sz;
      } catch {
        // nothing to resume
      }
      if (have === 0) fs.rmSync(partial, { force: true });
      fs.writeFileSync(metaFile, JSON.stringify(meta));
      const hashes = newHashes(file.size);
      if (have > 0) await feedFile(partial, hashes, have);
      const progress = new Progress(`  ${file.path}`, file.size);
      if (have > 0) process.stderr.write(`  ${file.path}: resuming at ${have} of ${file.size} bytes\n`);
      const fd = fs.openSync(partial, have > 0 ? 'r+' : 'w');
      try {
        for (let attempt = 0; have < file.size; attempt++) {
          try {
            const res = await this.get(info.url, have);
            if (have > 0 && res.status !== 206) {
              // The server ignored the range: start over.
              have = 0;
              fs.ftruncateSync(fd, 0);
              Object.assign(hashes, newHashes(file.size));
            }
            if (!res.body) throw Object.assign(new Error('empty response body'), { code: 'ECONNRESET' });
            for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
              const c = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
              if (have + c.length > file.size) throw new UserError(`${what}: the server sent more than the ${file.size} bytes listed`);
              writeAll(fd, c, have);
              hashes.update(c);
              have += c.length;
              progress.update(have);
            }
            if (have < file.size) throw Object.assign(new Error('connection closed early'), { code: 'ECONNRESET' });
          } catch (e) {
            if (e instanceof UserError || attempt >= RETRIES || !networkCode(e)) throw e;
            process.stderr.write(`\n  ${file.path}: connection lost at ${have} bytes (${networkCode(e)}); retrying\n`);
            await sleep(this.backoffMs(attempt));
          }
        }
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      progress.done();
      const h = hashes.digest();
      if (!checksumMatches(file, h)) {
        fs.rmSync(partial, { force: true });
        fs.rmSync(metaFile, { force: true });
        throw new UserError(
          `${what}: checksum mismatch (${file.sha256 ? `sha256 ${h.sha256}, the hub lists ${file.sha256}` : `git sha1 ${h.gitOid}, the hub lists ${file.gitOid}`}); the corrupted download was deleted`,
          { hint: 'run again to download it afresh' },
        );
      }
      fs.renameSync(partial, dest);
      fs.rmSync(metaFile, { force: true });
      return h.sha256;
    } catch (e) {
      throw this.explain(e, type, name, what);
    }
  }
}

function writeAll(fd: number, buf: Buffer, pos: number): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off, pos + off);
}

interface Hashes {
  update(b: Buffer): void;
  digest(): { sha256: string; gitOid: string };
}

/** sha256 and git blob sha1 ("blob <size>\0" + content) in one pass. */
function newHashes(size: number): Hashes {
  const s256 = crypto.createHash('sha256');
  const s1 = crypto.createHash('sha1').update(`blob ${size}\0`);
  return {
    update(b) {
      s256.update(b);
      s1.update(b);
    },
    digest: () => ({ sha256: s256.digest('hex'), gitOid: s1.digest('hex') }),
  };
}

/** Feeds the first `limit` bytes of `file` (all of it by default) into `into`. */
async function feedFile(file: string, into: Hashes, limit = Infinity): Promise<void> {
  const stream = fs.createReadStream(file, { highWaterMark: 1 << 20, ...(Number.isFinite(limit) ? { end: limit - 1 } : {}) });
  for await (const chunk of stream) into.update(chunk as Buffer);
}

async function hashFile(file: string): Promise<{ sha256: string; gitOid: string }> {
  const h = newHashes(fs.statSync(file).size);
  await feedFile(file, h);
  return h.digest();
}

function checksumMatches(file: RemoteFile, h: { sha256: string; gitOid: string }): boolean {
  if (file.sha256) return file.sha256 === h.sha256;
  if (file.gitOid) return file.gitOid === h.gitOid;
  return true; // the hub listed no checksum: nothing to compare
}

const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ECONNABORTED']);

/** The network error code behind a failed fetch or stream, if that is what it was. */
function networkCode(err: unknown): string | undefined {
  let e = err as { code?: string; cause?: unknown; message?: string; name?: string } | undefined;
  for (let depth = 0; e && depth < 5; depth++) {
    if (e.code && NET_CODES.has(e.code)) return e.code;
    e = e.cause as typeof e;
  }
  const m = (err as Error)?.message;
  if (m === 'terminated' || m === 'fetch failed') {
    const cause = (err as { cause?: Error }).cause;
    return cause?.message ? `${m}: ${cause.message}` : m;
  }
  return undefined;
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
}
