// A submission's source file: what every path that takes one (miner test,
// upload, commit, the harness's compile) checks before anything else, and the
// official baseline. Cheap, local checks only; compiling is the harness's.
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { sha256Hex } from '../storage/store';
import { PROJECT_ROOT } from '../util/paths';

/** The official baseline: the file miners start from and the validator's reference. */
export const BASELINE = path.join(PROJECT_ROOT, 'local_test', 'train.cpp');

export interface SourceFile {
  path: string;
  bytes: Uint8Array;
  text: string;
  sha256: string;
}

/** Blanks // and /* *\/ comments (and, unless kept, string/char literals), keeping line structure. */
function stripCommentsAndStrings(src: string, keepStrings = false): string {
  return src.replace(/\/\/[^\n]*|\/\*[\s\S]*?\*\/|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'/g, (m) => {
    if (m.startsWith('"') || m.startsWith("'")) return keepStrings ? m : '""';
    return m.replace(/[^\n]/g, ' ');
  });
}

/** True when the code defines (not just declares or calls) a function named inner_steps. */
function definesInnerSteps(src: string): boolean {
  const code = stripCommentsAndStrings(src);
  const re = /\binner_steps\s*\(/g;
  for (let m = re.exec(code); m; m = re.exec(code)) {
    let depth = 1;
    let i = m.index + m[0].length;
    for (; i < code.length && depth > 0; i++) {
      if (code[i] === '(') depth++;
      else if (code[i] === ')') depth--;
    }
    const after = code.slice(i).trimStart();
    if (/^(noexcept\s*)?(->\s*[\w:<>,\s]+)?\{/.test(after)) return true;
  }
  return false;
}

const INCLUDE_RE = /^[ \t]*#[ \t]*include[ \t]*[<"]tournament\/train_api\.h[>"]/m;

export interface SourceCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** The structure and size checks; `fatal` says whether a failure stops here (file unreadable). */
export function checkSource(file: string, maxBytes: number): { checks: SourceCheck[]; source?: SourceFile } {
  const checks: SourceCheck[] = [];
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    checks.push({ name: 'exists', ok: false, detail: `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as NodeJS.ErrnoException).code}` });
    return { checks };
  }
  if (!st.isFile()) {
    checks.push({ name: 'exists', ok: false, detail: `${file} is not a regular file` });
    return { checks };
  }
  checks.push({ name: 'exists', ok: true, detail: file });
  const sizeOk = st.size > 0 && st.size <= maxBytes;
  checks.push({ name: 'size', ok: sizeOk, detail: `${st.size} bytes (limit ${maxBytes})${st.size === 0 ? ': empty' : ''}` });
  if (!sizeOk) return { checks };
  const bytes = fs.readFileSync(file);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    if (text.includes('\0')) throw new Error('NUL byte');
  } catch {
    checks.push({ name: 'utf-8 text', ok: false, detail: 'not UTF-8 text' });
    return { checks };
  }
  checks.push({ name: 'utf-8 text', ok: true, detail: 'ok' });
  const inc = INCLUDE_RE.test(stripCommentsAndStrings(text, true));
  checks.push({ name: 'includes tournament/train_api.h', ok: inc, detail: inc ? 'ok' : 'add `#include <tournament/train_api.h>`' });
  const def = definesInnerSteps(text);
  checks.push({ name: 'defines inner_steps', ok: def, detail: def ? 'ok' : 'no definition of inner_steps(...) { ... } found' });
  return { checks, source: { path: file, bytes, text, sha256: sha256Hex(bytes) } };
}

/** Reads the file and insists every structure check passes (for upload/commit/submit). */
export function readCheckedSource(file: string, maxBytes: number): SourceFile {
  const { checks, source } = checkSource(file, maxBytes);
  const bad = checks.filter((c) => !c.ok);
  if (bad.length || !source) {
    throw new UserError(`${file} is not a valid submission: ${bad.map((c) => `${c.name}: ${c.detail}`).join('; ')}`, {
      hint: 'run `tournament miner test` on it for the full report',
    });
  }
  return source;
}
