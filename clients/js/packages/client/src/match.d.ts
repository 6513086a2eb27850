import type { WireFilter, WireOrder } from './protocol.js';
/** The value at a dotted field path, or MISSING. */
export declare function fieldValue(data: Readonly<Record<string, unknown>>, path: string): unknown;
/** Total order over values (Firestore's cross-type order). */
export declare function compareValues(a: unknown, b: unknown): number;
/** Whether data matches every filter. */
export declare function matches(data: Readonly<Record<string, unknown>>, filters: readonly WireFilter[]): boolean;
/** Whether data has every ordered field (Firestore drops documents that lack one). */
export declare function hasOrderFields(data: Readonly<Record<string, unknown>>, orders: readonly WireOrder[]): boolean;
/**
 * Compares two documents by the orderings, then by document id (as
 * Firestore orders by __name__ last, in the direction of the last ordering).
 */
export declare function compareDocs(a: {
    id: string;
    data: Readonly<Record<string, unknown>>;
}, b: {
    id: string;
    data: Readonly<Record<string, unknown>>;
}, orders: readonly WireOrder[]): number;
