import type { WireWriteOp } from './protocol.js';
type Obj = Record<string, unknown>;
/** Splits a field path on dots (backquoted segments may contain dots). */
export declare function splitFieldPath(p: string): string[];
/**
 * Returns the document data after op, given the data before (null: absent).
 * Null means the document does not exist afterwards. An update of an
 * absent document leaves it absent (the server refuses it with not_found).
 */
export declare function applyOp(before: Obj | null, op: WireWriteOp, now?: () => string): Obj | null;
export {};
