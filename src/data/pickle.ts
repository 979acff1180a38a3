// A minimal pickle interpreter for what torch.save writes for one tensor, and
// a writer for the same. Nothing is ever called or imported: globals are kept as
// names, and only the few that rebuild a tensor are understood (the same
// allow-list idea as torch.load(weights_only=True)). Any other opcode or global
// is an error naming it.

export class PickleError extends Error {}

interface PGlobal { kind: 'global'; module: string; name: string }
interface PStorage { kind: 'storage'; dtype: string; key: string; location: string; numel: number }
export interface PTensor { kind: 'tensor'; storage: PStorage; offset: number; size: number[]; stride: number[] }
type PValue = null | boolean | number | string | PValue[] | PGlobal | PStorage | PTensor | Map<PValue, PValue> | { kind: 'reduced'; of: string };

const MARK = Symbol('mark');

/** Storage classes torch.save names, and the dtype each holds. */
const STORAGE_DTYPES: Record<string, string> = {
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
};

function isGlobal(v: unknown, module: string, name: string): boolean {
  return typeof v === 'object' && v !== null && (v as PGlobal).kind === 'global' && (v as PGlobal).module === module && (v as PGlobal).name === name;
}

function asInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new PickleError(`${what} is not an integer`);
  return v;
}

function asIntTuple(v: unknown, what: string): number[] {
  if (!Array.isArray(v)) throw new PickleError(`${what} is not a tuple`);
  return v.map((x, i) => asInt(x, `${what}[${i}]`));
}

function persistentLoad(pid: unknown): PStorage {
  if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') {
    throw new PickleError('unsupported persistent id (expected a torch storage reference)');
  }
  const [, type, key, location, numel] = pid;
  const t = type as PGlobal;
  if (!t || t.kind !== 'global' || t.module !== 'torch' || !(t.name in STORAGE_DTYPES)) {
    throw new PickleError(`unsupported storage type ${t && t.kind === 'global' ? `${t.module}.${t.name}` : String(type)}`);
  }
  if (typeof key !== 'string' || typeof location !== 'string') throw new PickleError('damaged storage reference');
  return { kind: 'storage', dtype: STORAGE_DTYPES[t.name], key, location, numel: asInt(numel, 'storage size') };
}

function reduce(fn: unknown, args: unknown): PValue {
  if (!Array.isArray(args)) throw new PickleError('REDUCE without an argument tuple');
  if (isGlobal(fn, 'torch._utils', '_rebuild_tensor_v2')) {
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if (args.length < 4) throw new PickleError('_rebuild_tensor_v2 with too few arguments');
    const storage = args[0] as PStorage;
    if (!storage || storage.kind !== 'storage') throw new PickleError('_rebuild_tensor_v2 without a storage');
    const size = asIntTuple(args[2], 'tensor size');
    const stride = asIntTuple(args[3], 'tensor stride');
    if (size.length !== stride.length) throw new PickleError('tensor size and stride differ in length');
    return { kind: 'tensor', storage, offset: asInt(args[1], 'storage offset'), size, stride };
  }
  if (isGlobal(fn, 'collections', 'OrderedDict')) return { kind: 'reduced', of: 'collections.OrderedDict' };
  const g = fn as PGlobal;
  throw new PickleError(`unsupported global ${g && g.kind === 'global' ? `${g.module}.${g.name}` : '(not a global)'}`);
}

/** Runs the pickle program and returns its result (tensors as PTensor). */
export function unpickle(data: Buffer): PValue {
  const stack: (PValue | typeof MARK)[] = [];
  const memo = new Map<number, PValue>();
  let p = 0;
  const need = (n: number) => {
    if (p + n > data.length) throw new PickleError('pickle data ends early');
  };
  const popMark = (): PValue[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) throw new PickleError('MARK missing');
    const items = stack.splice(i) as PValue[];
    items.shift();
    return items;
  };
  const pop = (): PValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) throw new PickleError('stack underflow');
    return v;
  };
  const top = (): PValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw new PickleError('stack underflow');
    return v;
  };
  const readLine = (): string => {
    const end = data.indexOf(0x0a, p);
    if (end < 0) throw new PickleError('pickle data ends early');
    const s = data.toString('utf8', p, end);
    p = end + 1;
    return s;
  };
  const get = (i: number) => {
    if (!memo.has(i)) throw new PickleError(`memo ${i} not set`);
    return memo.get(i)!;
  };
  while (true) {
    need(1);
    const op = data[p++];
    switch (op) {
      case 0x80: need(1); if (data[p] > 5) throw new PickleError(`pickle protocol ${data[p]} is not supported`); p += 1; break; // PROTO
      case 0x95: need(8); p += 8; break; // FRAME (protocol 4): framing is transparent here
      case 0x63: { const module = readLine(); const name = readLine(); stack.push({ kind: 'global', module, name }); break; } // GLOBAL
      case 0x93: { const name = pop(); const module = pop(); // STACK_GLOBAL
        if (typeof name !== 'string' || typeof module !== 'string') throw new PickleError('STACK_GLOBAL of non-strings');
        stack.push({ kind: 'global', module, name }); break; }
      case 0x71: need(1); memo.set(data[p], top()); p += 1; break; // BINPUT
      case 0x72: need(4); memo.set(data.readUInt32LE(p), top()); p += 4; break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: need(1); stack.push(get(data[p])); p += 1; break; // BINGET
      case 0x6a: need(4); stack.push(get(data.readUInt32LE(p))); p += 4; break; // LONG_BINGET
      case 0x28: stack.push(MARK); break; // MARK
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x61: { const v = pop(); const l = top(); if (!Array.isArray(l)) throw new PickleError('APPEND to a non-list'); l.push(v); break; }
      case 0x65: { const items = popMark(); const l = top(); if (!Array.isArray(l)) throw new PickleError('APPENDS to a non-list'); l.push(...items); break; }
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x73: { const v = pop(); const k = pop(); const d = top(); if (!(d instanceof Map)) throw new PickleError('SETITEM on a non-dict'); d.set(k, v); break; }
      case 0x75: { const items = popMark(); const d = top(); if (!(d instanceof Map)) throw new PickleError('SETITEMS on a non-dict');
        for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i], items[i + 1]); break; }
      case 0x58: { need(4); const n = data.readUInt32LE(p); p += 4; need(n); stack.push(data.toString('utf8', p, p + n)); p += n; break; } // BINUNICODE
      case 0x8c: { need(1); const n = data[p]; p += 1; need(n); stack.push(data.toString('utf8', p, p + n)); p += n; break; } // SHORT_BINUNICODE
      case 0x4b: need(1); stack.push(data[p]); p += 1; break; // BININT1
      case 0x4d: need(2); stack.push(data.readUInt16LE(p)); p += 2; break; // BININT2
      case 0x4a: need(4); stack.push(data.readInt32LE(p)); p += 4; break; // BININT
      case 0x8a: { need(1); const n = data[p]; p += 1; need(n); // LONG1: little-endian two's complement
        if (n > 8) throw new PickleError('integer too large');
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[p + i]);
        if (n > 0 && data[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) throw new PickleError('integer too large');
        stack.push(Number(v)); break; }
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4e: stack.push(null); break; // NONE
      case 0x51: stack.push(persistentLoad(pop())); break; // BINPERSID
      case 0x52: { const args = pop(); const fn = pop(); stack.push(reduce(fn, args)); break; } // REDUCE
      case 0x62: { pop(); break; } // BUILD: state of an OrderedDict or similar; ignored
      case 0x2e: { // STOP
        const v = pop();
        return v;
      }
      default:
        throw new PickleError(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${p - 1}`);
    }
  }
}

/** Pickle protocol 2 bytes for one tensor as torch.save writes it (storage key "0"). */
export function pickleTensor(t: { storageType: string; numel: number; size: number[]; stride: number[] }): Buffer {
  const parts: Buffer[] = [];
  const op = (...b: number[]) => parts.push(Buffer.from(b));
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    const h = Buffer.alloc(5);
    h[0] = 0x58;
    h.writeUInt32LE(b.length, 1);
    parts.push(h, b);
  };
  const global = (module: string, name: string) => parts.push(Buffer.from(`c${module}\n${name}\n`, 'utf8'));
  let memo = 0;
  const put = () => op(0x71, memo++);
  const int = (v: number) => {
    if (!Number.isSafeInteger(v) || v < 0) throw new PickleError(`cannot pickle ${v}`);
    if (v < 0x100) op(0x4b, v);
    else if (v < 0x10000) op(0x4d, v & 0xff, v >> 8);
    else if (v < 0x80000000) { const b = Buffer.alloc(5); b[0] = 0x4a; b.writeInt32LE(v, 1); parts.push(b); }
    else { const b = Buffer.alloc(10); b[0] = 0x8a; b[1] = 8; b.writeBigInt64LE(BigInt(v), 2); parts.push(b); }
  };
  const tuple = (vs: number[]) => { op(0x28); vs.forEach(int); op(0x74); };
  op(0x80, 2);
  global('torch._utils', '_rebuild_tensor_v2'); put();
  op(0x28); // args
  op(0x28); str('storage'); put(); global('torch', t.storageType); put(); str('0'); put(); str('cpu'); put(); int(t.numel); op(0x74);
  op(0x51); put(); // BINPERSID
  int(0);
  tuple(t.size); put();
  tuple(t.stride); put();
  op(0x89); // requires_grad False
  global('collections', 'OrderedDict'); put(); op(0x29, 0x52); put();
  op(0x74, 0x52); put();
  op(0x2e);
  return Buffer.concat(parts);
}
