// Client-side evaluation of a query's filters and ordering, used to place
// optimistic documents and to keep a view's documents in query order
// (changes carry no positions). It follows Firestore's rules for the JSON
// types the wire carries: a document lacking a filtered or ordered field
// does not match; values of different types order null < boolean < number
// < timestamp < string < bytes < reference < geo point < array < map.
import type { WireFilter, WireOrder } from './protocol.js';
import { Bytes, DocumentReference, GeoPoint, Timestamp } from './values.js';

const MISSING = Symbol('missing');

/** The value at a dotted field path, or MISSING. */
export function fieldValue(data: Readonly<Record<string, unknown>>, path: string): unknown {
  let cur: unknown = data;
  for (const seg of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !(seg in cur)) return MISSING;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

function typeRank(v: unknown): number {
  if (v === null) return 0;
  if (typeof v === 'boolean') return 1;
  if (typeof v === 'number') return 2;
  if (v instanceof Timestamp || v instanceof Date) return 3;
  if (typeof v === 'string') return 4;
  if (v instanceof Bytes) return 5;
  if (v instanceof DocumentReference) return 6;
  if (v instanceof GeoPoint) return 7;
  if (Array.isArray(v)) return 8;
  return 9;
}

/** Total order over values (Firestore's cross-type order). */
export function compareValues(a: unknown, b: unknown): number {
  const ra = typeRank(a);
  const rb = typeRank(b);
  if (ra !== rb) return ra - rb;
  switch (ra) {
    case 0:
      return 0;
    case 1:
      return Number(a) - Number(b);
    case 2: {
      const x = a as number;
      const y = b as number;
      if (Number.isNaN(x)) return Number.isNaN(y) ? 0 : -1;
      if (Number.isNaN(y)) return 1;
      return x < y ? -1 : x > y ? 1 : 0;
    }
    case 3: {
      const x = a instanceof Date ? Timestamp.fromDate(a) : (a as Timestamp);
      const y = b instanceof Date ? Timestamp.fromDate(b) : (b as Timestamp);
      return x.compare(y);
    }
    case 4:
      return a === b ? 0 : (a as string) < (b as string) ? -1 : 1;
    case 5:
      return compareValues((a as Bytes).toBase64(), (b as Bytes).toBase64());
    case 6:
      return compareValues((a as DocumentReference).path, (b as DocumentReference).path);
    case 7: {
      const x = a as GeoPoint;
      const y = b as GeoPoint;
      return x.latitude - y.latitude || x.longitude - y.longitude;
    }
    case 8: {
      const x = a as unknown[];
      const y = b as unknown[];
      for (let i = 0; i < Math.min(x.length, y.length); i++) {
        const c = compareValues(x[i], y[i]);
        if (c !== 0) return c;
      }
      return x.length - y.length;
    }
    default: {
      const x = Object.entries(a as Record<string, unknown>).sort(([k1], [k2]) => (k1 < k2 ? -1 : k1 > k2 ? 1 : 0));
      const y = Object.entries(b as Record<string, unknown>).sort(([k1], [k2]) => (k1 < k2 ? -1 : k1 > k2 ? 1 : 0));
      for (let i = 0; i < Math.min(x.length, y.length); i++) {
        const k = compareValues(x[i]![0], y[i]![0]);
        if (k !== 0) return k;
        const c = compareValues(x[i]![1], y[i]![1]);
        if (c !== 0) return c;
      }
      return x.length - y.length;
    }
  }
}

function equal(a: unknown, b: unknown): boolean {
  return typeRank(a) === typeRank(b) && compareValues(a, b) === 0;
}

/** Whether data matches every filter. */
export function matches(data: Readonly<Record<string, unknown>>, filters: readonly WireFilter[]): boolean {
  for (const f of filters) {
    const v = fieldValue(data, f.field);
    if (v === MISSING) return false;
    const w: unknown = f.value;
    switch (f.op) {
      case '==':
        if (!equal(v, w)) return false;
        break;
      case '!=':
        if (v === null || equal(v, w)) return false;
        break;
      case '<':
      case '<=':
      case '>':
      case '>=': {
        if (typeRank(v) !== typeRank(w)) return false;
        const c = compareValues(v, w);
        if (f.op === '<' ? c >= 0 : f.op === '<=' ? c > 0 : f.op === '>' ? c <= 0 : c < 0) return false;
        break;
      }
      case 'in':
        if (!Array.isArray(w) || !w.some((e) => equal(v, e))) return false;
        break;
      case 'not-in':
        if (v === null || !Array.isArray(w) || w.some((e) => equal(v, e))) return false;
        break;
      case 'array-contains':
        if (!Array.isArray(v) || !v.some((e) => equal(e, w))) return false;
        break;
      case 'array-contains-any':
        if (!Array.isArray(v) || !Array.isArray(w) || !v.some((e) => w.some((x) => equal(e, x)))) return false;
        break;
    }
  }
  return true;
}

/** Whether data has every ordered field (Firestore drops documents that lack one). */
export function hasOrderFields(data: Readonly<Record<string, unknown>>, orders: readonly WireOrder[]): boolean {
  return orders.every((o) => fieldValue(data, o.field) !== MISSING);
}

/**
 * Compares two documents by the orderings, then by document id (as
 * Firestore orders by __name__ last, in the direction of the last ordering).
 */
export function compareDocs(
  a: { id: string; data: Readonly<Record<string, unknown>> },
  b: { id: string; data: Readonly<Record<string, unknown>> },
  orders: readonly WireOrder[],
): number {
  for (const o of orders) {
    const x = fieldValue(a.data, o.field);
    const y = fieldValue(b.data, o.field);
    const c = compareValues(x === MISSING ? null : x, y === MISSING ? null : y);
    if (c !== 0) return o.direction === 'desc' ? -c : c;
  }
  const c = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  const last = orders[orders.length - 1];
  return last && last.direction === 'desc' ? -c : c;
}
