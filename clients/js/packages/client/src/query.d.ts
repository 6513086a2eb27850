import type { Direction, SubscribeFrame, WhereOp, WireFilter, WireOrder } from './protocol.js';
import { type FieldTypes } from './values.js';
/** Options of collection() and doc(). */
export interface TargetOptions {
    /** Typed fields to decode (see FieldKind); others stay plain JSON. */
    fields?: FieldTypes;
}
/**
 * A query over one collection, built immutably:
 * `collection<Task>('tasks').where('status', '==', 'open').orderBy('created_at', 'desc').limit(20)`.
 * T is the shape of a document's data (after decoding).
 */
export declare class Query<T = Record<string, unknown>> {
    readonly kind: "query";
    readonly path: string;
    readonly filters: readonly WireFilter[];
    readonly orders: readonly WireOrder[];
    readonly max: number;
    readonly options: TargetOptions;
    readonly __type?: T;
    constructor(path: string, options?: TargetOptions, filters?: readonly WireFilter[], orders?: readonly WireOrder[], max?: number);
    /** Adds a filter. Values are encoded as for writes (a Date becomes RFC 3339). */
    where(field: string, op: WhereOp, value: unknown): Query<T>;
    /** Adds an ordering (ascending by default). */
    orderBy(field: string, direction?: Direction): Query<T>;
    /** Limits the result to n documents (n ≥ 1). */
    limit(n: number): Query<T>;
    /** The subscribe frame of this query (without id and resume). */
    toFrame(): Omit<SubscribeFrame, 'id'>;
    /** A canonical key: equal queries share one subscription. */
    key(): string;
}
/** One document by path (`tasks/t1`). */
export declare class DocRef<T = Record<string, unknown>> {
    readonly kind: "doc";
    readonly path: string;
    readonly options: TargetOptions;
    readonly __type?: T;
    constructor(path: string, options?: TargetOptions);
    /** The document id (last path segment). */
    get id(): string;
    /** The collection path this document lives in. */
    get parent(): string;
    toFrame(): Omit<SubscribeFrame, 'id'>;
    key(): string;
}
/** A query or a document: anything one can subscribe to. */
export type Target<T> = Query<T> | DocRef<T>;
/** Starts a query over the collection at path. */
export declare function collection<T = Record<string, unknown>>(path: string, options?: TargetOptions): Query<T>;
/** Names one document. */
export declare function doc<T = Record<string, unknown>>(path: string, options?: TargetOptions): DocRef<T>;
