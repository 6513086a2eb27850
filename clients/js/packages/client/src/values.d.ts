/** A Firestore timestamp with nanosecond precision. Immutable. */
export declare class Timestamp {
    /** Whole seconds since the Unix epoch. */
    readonly seconds: number;
    /** Nanoseconds within the second, 0..999999999. */
    readonly nanoseconds: number;
    constructor(seconds: number, nanoseconds: number);
    static fromDate(d: Date): Timestamp;
    static fromMillis(ms: number): Timestamp;
    static now(): Timestamp;
    /**
     * Parses RFC 3339 (`2026-01-02T03:04:05.123456789Z`, any offset, up to
     * nine fraction digits). Throws a RangeError for anything else.
     */
    static parse(s: string): Timestamp;
    toMillis(): number;
    toDate(): Date;
    /** Negative, zero or positive as this is before, equal to or after other. */
    compare(other: Timestamp): number;
    isEqual(other: Timestamp): boolean;
    /** RFC 3339 in UTC with nine fraction digits (the wire form). */
    toISOString(): string;
    toJSON(): string;
    toString(): string;
}
/** Compares two RFC 3339 strings as instants (not as text). */
export declare function compareTimes(a: string, b: string): number;
/** Binary data (Firestore bytes). Immutable copy of its input. */
export declare class Bytes {
    #private;
    private constructor();
    static fromUint8Array(a: Uint8Array): Bytes;
    /** Decodes standard base64 (with padding). Throws on bad input. */
    static fromBase64(s: string): Bytes;
    toUint8Array(): Uint8Array;
    toBase64(): string;
    get length(): number;
    isEqual(other: Bytes): boolean;
    toJSON(): string;
}
/** A reference to a document, by database-relative path (`tasks/t1`). */
export declare class DocumentReference {
    readonly path: string;
    constructor(path: string);
    /** The last path segment. */
    get id(): string;
    isEqual(other: DocumentReference): boolean;
    toJSON(): string;
}
/** A geo point. */
export declare class GeoPoint {
    readonly latitude: number;
    readonly longitude: number;
    constructor(latitude: number, longitude: number);
    isEqual(other: GeoPoint): boolean;
    toJSON(): {
        latitude: number;
        longitude: number;
    };
}
/**
 * How a declared field is decoded: `timestamp` → Timestamp, `date` → Date,
 * `bytes` → Bytes, `reference` → DocumentReference, `geopoint` → GeoPoint,
 * `number` → number (also "NaN", "Infinity", "-Infinity").
 */
export type FieldKind = 'timestamp' | 'date' | 'bytes' | 'reference' | 'geopoint' | 'number';
/** Declared typed fields, by field path (dots for nested maps). */
export type FieldTypes = Readonly<Record<string, FieldKind>>;
/**
 * Returns a deep-frozen copy of data with the declared fields decoded. A
 * declared field whose value does not decode (a malformed timestamp, say)
 * keeps its wire value: decoding never loses data. Arrays of a declared
 * field decode element-wise.
 */
export declare function decodeData(data: Readonly<Record<string, unknown>>, fields?: FieldTypes): Readonly<Record<string, unknown>>;
/** Freezes v and every plain object and array inside it; returns v. */
export declare function deepFreeze<T>(v: T): T;
/** A write-side transform (server timestamp, increment, array union/remove). */
export declare class FieldTransform {
    readonly wire: Readonly<Record<string, unknown>>;
    private constructor();
    /** The commit time of the write. */
    static serverTimestamp(): FieldTransform;
    /** Adds by to the stored number (0 when absent). */
    static increment(by: number): FieldTransform;
    /** Adds each value not already in the stored array. */
    static arrayUnion(...values: unknown[]): FieldTransform;
    /** Removes every occurrence of each value from the stored array. */
    static arrayRemove(...values: unknown[]): FieldTransform;
}
/** Shorthands for FieldTransform. */
export declare const serverTimestamp: typeof FieldTransform.serverTimestamp;
export declare const increment: typeof FieldTransform.increment;
export declare const arrayUnion: typeof FieldTransform.arrayUnion;
export declare const arrayRemove: typeof FieldTransform.arrayRemove;
/**
 * Encodes a JS value for a write: Timestamp and Date → RFC 3339 string,
 * Bytes → base64, DocumentReference → path, GeoPoint → {latitude,
 * longitude}, FieldTransform → its `$transform` object; arrays and plain
 * objects recursively. Throws a TypeError for functions, symbols, bigints,
 * undefined inside arrays and class instances it does not know.
 */
export declare function encodeValue(v: unknown): unknown;
