import type { Direction, JsonValue, SubscribeFrame, WhereOp, WireFilter, WireOrder } from './protocol.js';
import { encodeValue, type FieldTypes } from './values.js';

/** Options of collection() and doc(). */
export interface TargetOptions {
  /** Typed fields to decode (see FieldKind); others stay plain JSON. */
  fields?: FieldTypes;
}

const OPS: ReadonlySet<string> = new Set(['==', '!=', '<', '<=', '>', '>=', 'in', 'not-in', 'array-contains', 'array-contains-any']);

function segments(path: string, what: string): string[] {
  if (typeof path !== 'string' || path === '') throw new TypeError(`${what}: path is required`);
  const segs = path.split('/');
  for (const s of segs) {
    if (s === '' || s === '.' || s === '..') throw new TypeError(`${what}: bad path ${JSON.stringify(path)}`);
  }
  return segs;
}

/**
 * A query over one collection, built immutably:
 * `collection<Task>('tasks').where('status', '==', 'open').orderBy('created_at', 'desc').limit(20)`.
 * T is the shape of a document's data (after decoding).
 */
export class Query<T = Record<string, unknown>> {
  readonly kind = 'query' as const;
  readonly path: string;
  readonly filters: readonly WireFilter[];
  readonly orders: readonly WireOrder[];
  readonly max: number;
  readonly options: TargetOptions;
  declare readonly __type?: T;

  constructor(path: string, options: TargetOptions = {}, filters: readonly WireFilter[] = [], orders: readonly WireOrder[] = [], max = 0) {
    if (segments(path, 'collection').length % 2 !== 1) {
      throw new TypeError(`collection: ${JSON.stringify(path)} is a document path (collection paths have an odd number of segments)`);
    }
    this.path = path;
    this.options = options;
    this.filters = Object.freeze([...filters]);
    this.orders = Object.freeze([...orders]);
    this.max = max;
    Object.freeze(this);
  }

  /** Adds a filter. Values are encoded as for writes (a Date becomes RFC 3339). */
  where(field: string, op: WhereOp, value: unknown): Query<T> {
    if (!field) throw new TypeError('where: field is required');
    if (!OPS.has(op)) throw new TypeError(`where: unknown operator ${JSON.stringify(op)}`);
    const f: WireFilter = { field, op, value: encodeValue(value) as JsonValue };
    return new Query<T>(this.path, this.options, [...this.filters, f], this.orders, this.max);
  }

  /** Adds an ordering (ascending by default). */
  orderBy(field: string, direction: Direction = 'asc'): Query<T> {
    if (!field) throw new TypeError('orderBy: field is required');
    if (direction !== 'asc' && direction !== 'desc') throw new TypeError(`orderBy: bad direction ${JSON.stringify(direction)}`);
    return new Query<T>(this.path, this.options, this.filters, [...this.orders, { field, direction }], this.max);
  }

  /** Limits the result to n documents (n ≥ 1). */
  limit(n: number): Query<T> {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`limit: ${n} is not a positive integer`);
    return new Query<T>(this.path, this.options, this.filters, this.orders, n);
  }

  /** The subscribe frame of this query (without id and resume). */
  toFrame(): Omit<SubscribeFrame, 'id'> {
    const f: Omit<SubscribeFrame, 'id'> = { type: 'subscribe', collection: this.path };
    if (this.filters.length) f.where = [...this.filters];
    if (this.orders.length) f.order_by = [...this.orders];
    if (this.max) f.limit = this.max;
    return f;
  }

  /** A canonical key: equal queries share one subscription. */
  key(): string {
    return 'q:' + JSON.stringify([this.path, this.filters, this.orders, this.max]);
  }
}

/** One document by path (`tasks/t1`). */
export class DocRef<T = Record<string, unknown>> {
  readonly kind = 'doc' as const;
  readonly path: string;
  readonly options: TargetOptions;
  declare readonly __type?: T;

  constructor(path: string, options: TargetOptions = {}) {
    if (segments(path, 'doc').length % 2 !== 0) {
      throw new TypeError(`doc: ${JSON.stringify(path)} is a collection path (document paths have an even number of segments)`);
    }
    this.path = path;
    this.options = options;
    Object.freeze(this);
  }

  /** The document id (last path segment). */
  get id(): string {
    return this.path.slice(this.path.lastIndexOf('/') + 1);
  }

  /** The collection path this document lives in. */
  get parent(): string {
    return this.path.slice(0, this.path.lastIndexOf('/'));
  }

  toFrame(): Omit<SubscribeFrame, 'id'> {
    return { type: 'subscribe', doc: this.path };
  }

  key(): string {
    return 'd:' + this.path;
  }
}

/** A query or a document: anything one can subscribe to. */
export type Target<T> = Query<T> | DocRef<T>;

/** Starts a query over the collection at path. */
export function collection<T = Record<string, unknown>>(path: string, options?: TargetOptions): Query<T> {
  return new Query<T>(path, options);
}

/** Names one document. */
export function doc<T = Record<string, unknown>>(path: string, options?: TargetOptions): DocRef<T> {
  return new DocRef<T>(path, options);
}
