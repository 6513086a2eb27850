// Optimistic application of write operations to wire (JSON) data.
import type { WireWriteOp } from './protocol.js';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/** Splits a field path on dots (backquoted segments may contain dots). */
export function splitFieldPath(p: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (quoted) {
      if (c === '\\' && i + 1 < p.length) cur += p[++i];
      else if (c === '`') quoted = false;
      else cur += c;
    } else if (c === '`') quoted = true;
    else if (c === '.') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

function getPath(o: Obj | null, segs: string[]): unknown {
  let cur: unknown = o;
  for (const s of segs) {
    if (!isObj(cur)) return undefined;
    cur = cur[s];
  }
  return cur;
}

function setPath(o: Obj, segs: string[], v: unknown): void {
  let cur = o;
  for (let i = 0; i < segs.length - 1; i++) {
    const s = segs[i]!;
    if (!isObj(cur[s])) cur[s] = {};
    cur = cur[s] as Obj;
  }
  const last = segs[segs.length - 1]!;
  if (v === undefined) delete cur[last];
  else cur[last] = v;
}

/** Applies transforms ($transform objects) in v against the previous value. */
function resolve(v: unknown, prev: unknown, now: () => string): unknown {
  if (isObj(v) && typeof v.$transform === 'string') {
    switch (v.$transform) {
      case 'server_timestamp':
        return now();
      case 'increment':
        return (typeof prev === 'number' ? prev : 0) + (typeof v.by === 'number' ? v.by : 0);
      case 'array_union': {
        const base = Array.isArray(prev) ? [...prev] : [];
        for (const e of Array.isArray(v.values) ? v.values : []) {
          if (!base.some((x) => JSON.stringify(x) === JSON.stringify(e))) base.push(e);
        }
        return base;
      }
      case 'array_remove': {
        const drop = (Array.isArray(v.values) ? v.values : []).map((e) => JSON.stringify(e));
        return (Array.isArray(prev) ? prev : []).filter((x) => !drop.includes(JSON.stringify(x)));
      }
      default:
        return prev;
    }
  }
  if (isObj(v)) {
    const out: Obj = {};
    for (const [k, e] of Object.entries(v)) out[k] = resolve(e, isObj(prev) ? prev[k] : undefined, now);
    return out;
  }
  return clone(v);
}

/**
 * Returns the document data after op, given the data before (null: absent).
 * Null means the document does not exist afterwards. An update of an
 * absent document leaves it absent (the server refuses it with not_found).
 */
export function applyOp(before: Obj | null, op: WireWriteOp, now: () => string = () => new Date().toISOString()): Obj | null {
  switch (op.op) {
    case 'delete':
      return null;
    case 'create':
      return before !== null ? before : (resolve(op.data ?? {}, undefined, now) as Obj);
    case 'set': {
      if (!op.merge) return resolve(op.data ?? {}, before ?? undefined, now) as Obj;
      const out: Obj = clone(before ?? {});
      const fields = op.merge.length ? op.merge : Object.keys(op.data ?? {});
      for (const f of fields) {
        const segs = splitFieldPath(f);
        setPath(out, segs, resolve(getPath((op.data ?? {}) as Obj, segs), getPath(before, segs), now));
      }
      return out;
    }
    case 'update': {
      if (before === null) return null;
      const out: Obj = clone(before);
      for (const [f, v] of Object.entries(op.data ?? {})) {
        const segs = splitFieldPath(f);
        setPath(out, segs, resolve(v, getPath(before, segs), now));
      }
      return out;
    }
  }
}
