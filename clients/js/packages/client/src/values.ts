// Typed values. The wire carries plain JSON (timestamps as RFC 3339
// strings, bytes as base64, references as paths), which cannot say which
// string is which; a query declares the typed fields it wants decoded
// (`fields: {created_at: 'timestamp'}`) and everything else stays plain
// JSON. Writes encode these classes back to their wire form.

/** A Firestore timestamp with nanosecond precision. Immutable. */
export class Timestamp {
  /** Whole seconds since the Unix epoch. */
  readonly seconds: number;
  /** Nanoseconds within the second, 0..999999999. */
  readonly nanoseconds: number;

  constructor(seconds: number, nanoseconds: number) {
    if (!Number.isInteger(seconds) || !Number.isInteger(nanoseconds) || nanoseconds < 0 || nanoseconds > 999_999_999) {
      throw new RangeError(`Timestamp: invalid seconds ${seconds} / nanoseconds ${nanoseconds}`);
    }
    this.seconds = seconds;
    this.nanoseconds = nanoseconds;
    Object.freeze(this);
  }

  static fromDate(d: Date): Timestamp {
    const ms = d.getTime();
    if (Number.isNaN(ms)) throw new RangeError('Timestamp.fromDate: invalid date');
    const seconds = Math.floor(ms / 1000);
    return new Timestamp(seconds, (ms - seconds * 1000) * 1_000_000);
  }

  static fromMillis(ms: number): Timestamp {
    return Timestamp.fromDate(new Date(ms));
  }

  static now(): Timestamp {
    return Timestamp.fromMillis(Date.now());
  }

  /**
   * Parses RFC 3339 (`2026-01-02T03:04:05.123456789Z`, any offset, up to
   * nine fraction digits). Throws a RangeError for anything else.
   */
  static parse(s: string): Timestamp {
    const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/i.exec(s);
    if (!m) throw new RangeError(`Timestamp.parse: not RFC 3339: ${JSON.stringify(s)}`);
    const ms = Date.parse(`${m[1]}${m[3]}`);
    if (Number.isNaN(ms)) throw new RangeError(`Timestamp.parse: invalid date: ${JSON.stringify(s)}`);
    const frac = (m[2] ?? '').padEnd(9, '0');
    return new Timestamp(Math.floor(ms / 1000), Number(frac));
  }

  toMillis(): number {
    return this.seconds * 1000 + Math.floor(this.nanoseconds / 1_000_000);
  }

  toDate(): Date {
    return new Date(this.toMillis());
  }

  /** Negative, zero or positive as this is before, equal to or after other. */
  compare(other: Timestamp): number {
    return this.seconds !== other.seconds ? this.seconds - other.seconds : this.nanoseconds - other.nanoseconds;
  }

  isEqual(other: Timestamp): boolean {
    return this.compare(other) === 0;
  }

  /** RFC 3339 in UTC with nine fraction digits (the wire form). */
  toISOString(): string {
    const base = new Date(this.seconds * 1000).toISOString().slice(0, 19);
    return `${base}.${String(this.nanoseconds).padStart(9, '0')}Z`;
  }

  toJSON(): string {
    return this.toISOString();
  }

  toString(): string {
    return this.toISOString();
  }
}

/** Compares two RFC 3339 strings as instants (not as text). */
export function compareTimes(a: string, b: string): number {
  return Timestamp.parse(a).compare(Timestamp.parse(b));
}

/** Binary data (Firestore bytes). Immutable copy of its input. */
export class Bytes {
  readonly #data: Uint8Array;

  private constructor(data: Uint8Array) {
    this.#data = data;
    Object.freeze(this);
  }

  static fromUint8Array(a: Uint8Array): Bytes {
    return new Bytes(new Uint8Array(a));
  }

  /** Decodes standard base64 (with padding). Throws on bad input. */
  static fromBase64(s: string): Bytes {
    if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)) {
      throw new RangeError('Bytes.fromBase64: not standard padded base64');
    }
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return new Bytes(out);
  }

  toUint8Array(): Uint8Array {
    return new Uint8Array(this.#data);
  }

  toBase64(): string {
    let bin = '';
    for (const b of this.#data) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  get length(): number {
    return this.#data.length;
  }

  isEqual(other: Bytes): boolean {
    return this.toBase64() === other.toBase64();
  }

  toJSON(): string {
    return this.toBase64();
  }
}

/** A reference to a document, by database-relative path (`tasks/t1`). */
export class DocumentReference {
  readonly path: string;

  constructor(path: string) {
    this.path = path;
    Object.freeze(this);
  }

  /** The last path segment. */
  get id(): string {
    return this.path.slice(this.path.lastIndexOf('/') + 1);
  }

  isEqual(other: DocumentReference): boolean {
    return this.path === other.path;
  }

  toJSON(): string {
    return this.path;
  }
}

/** A geo point. */
export class GeoPoint {
  readonly latitude: number;
  readonly longitude: number;

  constructor(latitude: number, longitude: number) {
    this.latitude = latitude;
    this.longitude = longitude;
    Object.freeze(this);
  }

  isEqual(other: GeoPoint): boolean {
    return this.latitude === other.latitude && this.longitude === other.longitude;
  }

  toJSON(): { latitude: number; longitude: number } {
    return { latitude: this.latitude, longitude: this.longitude };
  }
}

/**
 * How a declared field is decoded: `timestamp` → Timestamp, `date` → Date,
 * `bytes` → Bytes, `reference` → DocumentReference, `geopoint` → GeoPoint,
 * `number` → number (also "NaN", "Infinity", "-Infinity").
 */
export type FieldKind = 'timestamp' | 'date' | 'bytes' | 'reference' | 'geopoint' | 'number';

/** Declared typed fields, by field path (dots for nested maps). */
export type FieldTypes = Readonly<Record<string, FieldKind>>;

function decodeOne(kind: FieldKind, v: unknown): unknown {
  switch (kind) {
    case 'timestamp':
      return typeof v === 'string' ? Timestamp.parse(v) : v;
    case 'date':
      return typeof v === 'string' ? Timestamp.parse(v).toDate() : v;
    case 'bytes':
      return typeof v === 'string' ? Bytes.fromBase64(v) : v;
    case 'reference':
      return typeof v === 'string' ? new DocumentReference(v) : v;
    case 'geopoint':
      if (typeof v === 'object' && v !== null && 'latitude' in v && 'longitude' in v) {
        const g = v as { latitude: unknown; longitude: unknown };
        if (typeof g.latitude === 'number' && typeof g.longitude === 'number') return new GeoPoint(g.latitude, g.longitude);
      }
      return v;
    case 'number':
      if (v === 'NaN') return NaN;
      if (v === 'Infinity') return Infinity;
      if (v === '-Infinity') return -Infinity;
      return v;
  }
}

/**
 * Returns a deep-frozen copy of data with the declared fields decoded. A
 * declared field whose value does not decode (a malformed timestamp, say)
 * keeps its wire value: decoding never loses data. Arrays of a declared
 * field decode element-wise.
 */
export function decodeData(data: Readonly<Record<string, unknown>>, fields?: FieldTypes): Readonly<Record<string, unknown>> {
  const out = structuredCloneJSON(data) as Record<string, unknown>;
  if (fields) {
    for (const [path, kind] of Object.entries(fields)) {
      const segs = path.split('.');
      let parent: Record<string, unknown> | undefined = out;
      for (let i = 0; i < segs.length - 1 && parent; i++) {
        const next: unknown = parent[segs[i]!];
        parent = typeof next === 'object' && next !== null && !Array.isArray(next) ? (next as Record<string, unknown>) : undefined;
      }
      const last = segs[segs.length - 1]!;
      if (!parent || !(last in parent)) continue;
      const v = parent[last];
      try {
        parent[last] = Array.isArray(v) ? v.map((e) => decodeOne(kind, e)) : decodeOne(kind, v);
      } catch {
        // keep the wire value
      }
    }
  }
  return deepFreeze(out);
}

function structuredCloneJSON(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(structuredCloneJSON);
  if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype) {
    const o: Record<string, unknown> = {};
    for (const [k, e] of Object.entries(v)) o[k] = structuredCloneJSON(e);
    return o;
  }
  return v;
}

/** Freezes v and every plain object and array inside it; returns v. */
export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const e of Object.values(v)) deepFreeze(e);
  }
  return v;
}

/** A write-side transform (server timestamp, increment, array union/remove). */
export class FieldTransform {
  readonly wire: Readonly<Record<string, unknown>>;

  private constructor(wire: Record<string, unknown>) {
    this.wire = Object.freeze(wire);
    Object.freeze(this);
  }

  /** The commit time of the write. */
  static serverTimestamp(): FieldTransform {
    return new FieldTransform({ $transform: 'server_timestamp' });
  }

  /** Adds by to the stored number (0 when absent). */
  static increment(by: number): FieldTransform {
    return new FieldTransform({ $transform: 'increment', by });
  }

  /** Adds each value not already in the stored array. */
  static arrayUnion(...values: unknown[]): FieldTransform {
    return new FieldTransform({ $transform: 'array_union', values: values.map(encodeValue) });
  }

  /** Removes every occurrence of each value from the stored array. */
  static arrayRemove(...values: unknown[]): FieldTransform {
    return new FieldTransform({ $transform: 'array_remove', values: values.map(encodeValue) });
  }
}

/** Shorthands for FieldTransform. */
export const serverTimestamp = FieldTransform.serverTimestamp;
export const increment = FieldTransform.increment;
export const arrayUnion = FieldTransform.arrayUnion;
export const arrayRemove = FieldTransform.arrayRemove;

/**
 * Encodes a JS value for a write: Timestamp and Date → RFC 3339 string,
 * Bytes → base64, DocumentReference → path, GeoPoint → {latitude,
 * longitude}, FieldTransform → its `$transform` object; arrays and plain
 * objects recursively. Throws a TypeError for functions, symbols, bigints,
 * undefined inside arrays and class instances it does not know.
 */
export function encodeValue(v: unknown): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'NaN';
    if (v === Infinity) return 'Infinity';
    if (v === -Infinity) return '-Infinity';
    return v;
  }
  if (v instanceof Timestamp) return v.toISOString();
  if (v instanceof Date) return Timestamp.fromDate(v).toISOString();
  if (v instanceof Bytes) return v.toBase64();
  if (v instanceof DocumentReference) return v.path;
  if (v instanceof GeoPoint) return v.toJSON();
  if (v instanceof FieldTransform) return v.wire;
  if (Array.isArray(v)) {
    return v.map((e) => {
      if (e === undefined) throw new TypeError('encodeValue: undefined inside an array');
      return encodeValue(e);
    });
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const o: Record<string, unknown> = {};
    for (const [k, e] of Object.entries(v as Record<string, unknown>)) {
      if (e === undefined) continue;
      o[k] = encodeValue(e);
    }
    return o;
  }
  throw new TypeError(`encodeValue: cannot encode ${typeof v === 'object' ? Object.prototype.toString.call(v) : typeof v}`);
}
