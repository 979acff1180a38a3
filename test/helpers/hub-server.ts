// A small stand-in for the Hugging Face hub on loopback, shaped like the real
// one where our code (and @huggingface/hub) looks: repo info with its commit
// sha, paginated tree listings with LFS sha256, resolve URLs that redirect LFS
// files to a "CDN" path serving byte ranges, and the hub's error answers
// (401/403/404 with X-Error-Code). A gated repo, as on the hub, shows its info
// and file list to anyone and refuses downloads: 401 without a token, 403 with
// a token whose account has not accepted its conditions. Faults can be
// injected: a connection cut after N bytes, bytes that do not match the listed
// sha256, a transfer that stalls until the server stops.
import * as crypto from 'crypto';
import * as http from 'http';
import type { AddressInfo } from 'net';

export interface FakeRepo {
  type: 'model' | 'dataset';
  name: string;
  files: Record<string, Buffer>;
  /** files stored in LFS (listed with sha256, served through a redirect); default: *.safetensors, *.parquet */
  lfs?: (path: string) => boolean;
  gated?: boolean;
}

export interface RequestRecord {
  method: string;
  url: string;
  range?: string;
  auth?: string;
}

export class FakeHub {
  readonly repos = new Map<string, FakeRepo & { sha: string }>();
  readonly log: RequestRecord[] = [];
  /** tokens the hub accepts; those in `granted` may read gated repos */
  tokens = new Set<string>(['hf_good', 'hf_nogate']);
  granted = new Set<string>(['hf_good']);
  /** path -> bytes after which the next transfer of that file is cut (one-shot) */
  cutAfter = new Map<string, number>();
  /** path -> byte offset of the file past which no transfer of it ever goes (every one is cut there) */
  cutAt = new Map<string, number>();
  /** paths whose served bytes are altered (the listing keeps the true sha256) */
  corrupt = new Set<string>();
  /** paths whose transfer sends half the bytes and then nothing more */
  stall = new Set<string>();
  pageSize = 3;
  private server = http.createServer((req, res) => this.handle(req, res));

  add(repo: FakeRepo): void {
    const sha = crypto.createHash('sha1').update(repo.type + repo.name + Object.keys(repo.files).join()).digest('hex');
    this.repos.set(`${repo.type}:${repo.name}`, { ...repo, sha });
  }

  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private isLfs(repo: FakeRepo, p: string): boolean {
    return repo.lfs ? repo.lfs(p) : /\.(safetensors|parquet)$/.test(p);
  }

  private fail(res: http.ServerResponse, status: number, code: string | undefined, message: string): void {
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-error-message': message };
    if (code) headers['x-error-code'] = code;
    res.writeHead(status, headers);
    res.end(JSON.stringify({ error: message }));
  }

  /** Access control as the hub does it (gating applies to downloads only); returns false (having answered) when refused. */
  private allowed(req: http.IncomingMessage, res: http.ServerResponse, repo: (FakeRepo & { sha: string }) | undefined, name: string, download = false): boolean {
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
    if (token && !this.tokens.has(token)) {
      this.fail(res, 401, undefined, 'Invalid credentials in Authorization header');
      return false;
    }
    if (!repo) {
      if (token) this.fail(res, 404, 'RepoNotFound', `Repository Not Found for url: ${name}.`);
      else this.fail(res, 401, 'RepoNotFound', `Repository Not Found for url: ${name}.`);
      return false;
    }
    if (!download || !repo.gated) return true;
    if (!token) {
      this.fail(res, 401, 'GatedRepo', `Access to model ${name} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
      return false;
    }
    if (!this.granted.has(token)) {
      this.fail(res, 403, 'GatedRepo', `Access to model ${name} is restricted and you are not in the authorized list.`);
      return false;
    }
    return true;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const u = new URL(req.url!, 'http://x');
    this.log.push({ method: req.method!, url: u.pathname + u.search, range: req.headers.range, auth: req.headers.authorization });
    const p = decodeURIComponent(u.pathname);
    let m: RegExpExecArray | null;
    if ((m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(p))) {
      const repo = this.repos.get(`${m[1].slice(0, -1)}:${m[2]}`);
      if (!this.allowed(req, res, repo, m[2])) return;
      if (m[3] !== 'main' && m[3] !== 'HEAD' && m[3] !== repo!.sha) return this.fail(res, 404, 'RevisionNotFound', `Invalid rev id: ${m[3]}`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ _id: 'x' + repo!.sha.slice(0, 8), id: repo!.name, sha: repo!.sha, private: false, gated: repo!.gated ? 'manual' : false, downloads: 0, likes: 0, lastModified: '2026-01-01T00:00:00.000Z' }));
      return;
    }
    if ((m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/tree\/([^/]+)(?:\/(.*))?$/.exec(p))) {
      const repo = this.repos.get(`${m[1].slice(0, -1)}:${m[2]}`);
      if (!this.allowed(req, res, repo, m[2])) return;
      const dir = m[4] ? m[4].replace(/\/$/, '') + '/' : '';
      const entries = Object.keys(repo!.files)
        .filter((f) => f.startsWith(dir))
        .sort()
        .map((f) => {
          const data = repo!.files[f];
          const oid = crypto.createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
          return this.isLfs(repo!, f)
            ? { type: 'file', oid, size: data.length, path: f, lfs: { oid: crypto.createHash('sha256').update(data).digest('hex'), size: data.length, pointerSize: 134 } }
            : { type: 'file', oid, size: data.length, path: f };
        });
      const cursor = Number(u.searchParams.get('cursor') ?? 0);
      const page = entries.slice(cursor, cursor + this.pageSize);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (cursor + this.pageSize < entries.length) {
        const next = new URL(u.pathname + u.search, this.url);
        next.searchParams.set('cursor', String(cursor + this.pageSize));
        headers.link = `<${next.href}>; rel="next"`;
      }
      res.writeHead(200, headers);
      res.end(JSON.stringify(page));
      return;
    }
    if ((m = /^\/(?:(datasets)\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(p))) {
      const type = m[1] ? 'dataset' : 'model';
      const repo = this.repos.get(`${type}:${m[2]}`);
      if (!this.allowed(req, res, repo, m[2], true)) return;
      if (m[3] !== 'main' && m[3] !== repo!.sha) return this.fail(res, 404, 'RevisionNotFound', `Invalid rev id: ${m[3]}`);
      const data = repo!.files[m[4]];
      if (!data) return this.fail(res, 404, 'EntryNotFound', `${m[4]} does not exist on "${m[3]}"`);
      if (this.isLfs(repo!, m[4])) {
        const sha256 = crypto.createHash('sha256').update(data).digest('hex');
        res.writeHead(302, {
          location: `/cdn/${type}/${m[2]}/${m[4]}?sig=x`,
          'x-linked-etag': `"${sha256}"`,
          'x-linked-size': String(data.length),
          etag: `"${repo!.sha}"`,
        });
        res.end();
        return;
      }
      const oid = crypto.createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
      return this.serve(req, res, m[4], data, `"${oid}"`);
    }
    if ((m = /^\/cdn\/(model|dataset)\/([^/]+\/[^/]+)\/(.+)$/.exec(p))) {
      const repo = this.repos.get(`${m[1]}:${m[2]}`);
      const data = repo?.files[m[3]];
      if (!data) return this.fail(res, 404, undefined, 'no such object');
      return this.serve(req, res, m[3], data, `"${crypto.createHash('sha256').update(data).digest('hex')}"`);
    }
    this.fail(res, 404, undefined, `no route ${p}`);
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse, file: string, data: Buffer, etag: string): void {
    let body = data;
    if (this.corrupt.has(file)) {
      body = Buffer.from(data);
      body[body.length >> 1] ^= 0xff;
    }
    let start = 0;
    let end = body.length - 1;
    const range = req.headers.range ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range) : null;
    const headers: Record<string, string> = { etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
    if (range) {
      start = Number(range[1]);
      if (range[2]) end = Math.min(end, Number(range[2]));
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` });
        res.end();
        return;
      }
      headers['content-range'] = `bytes ${start}-${end}/${body.length}`;
    }
    headers['content-length'] = String(end - start + 1);
    res.writeHead(range ? 206 : 200, headers);
    const part = body.subarray(start, end + 1);
    if (this.stall.has(file)) {
      res.write(part.subarray(0, part.length >> 1)); // and nothing more until stop() closes the connection
      return;
    }
    const at = this.cutAt.get(file);
    if (at !== undefined && end >= at) {
      res.write(part.subarray(0, Math.max(0, at - start)), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    const cut = this.cutAfter.get(file);
    if (cut !== undefined && part.length > 1) {
      this.cutAfter.delete(file);
      res.write(part.subarray(0, Math.min(cut, part.length - 1)), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(part);
  }
}
