// Frames of Firegate protocol v1 (JSON text frames, one object per frame).
// These types mirror the Go package `wire`; docs/schema/*.json is the
// language-neutral contract.

/** The WebSocket subprotocol of protocol v1. */
export const SUBPROTOCOL = 'firegate.v1';
/** Prefix of the subprotocol entry that carries the token in browsers. */
export const BEARER_PREFIX = 'bearer.';

/** Close codes of protocol v1 (plus 4000, used by this client for a dead socket). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY_VIOLATION: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  SERVICE_RESTART: 1012,
  PONG_TIMEOUT: 4000,
  UNAUTHENTICATED: 4001,
  USER_CHANGED: 4003,
  RATE_LIMITED: 4008,
  TOO_SLOW: 4009,
} as const;

/** A JSON value as carried on the wire. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** Comparison operators of `where`. */
export type WhereOp =
  | '=='
  | '!='
  | '<'
  | '<='
  | '>'
  | '>='
  | 'in'
  | 'not-in'
  | 'array-contains'
  | 'array-contains-any';

/** Directions of `order_by`. */
export type Direction = 'asc' | 'desc';

export interface WireFilter {
  field: string;
  op: WhereOp;
  value: JsonValue;
}

export interface WireOrder {
  field: string;
  direction?: Direction;
}

export interface WireResume {
  epoch: string;
  seq: number;
}

export interface AuthFrame {
  type: 'auth';
  token: string;
}

export interface SubscribeFrame {
  type: 'subscribe';
  id: string;
  collection?: string;
  doc?: string;
  where?: WireFilter[];
  order_by?: WireOrder[];
  limit?: number;
  resume?: WireResume;
}

export interface UnsubscribeFrame {
  type: 'unsubscribe';
  id: string;
}

export interface PingFrame {
  type: 'ping';
  id: string;
}

/** A field transform of a write. */
export type WireTransform =
  | { $transform: 'server_timestamp' }
  | { $transform: 'increment'; by: number }
  | { $transform: 'array_union'; values: JsonValue[] }
  | { $transform: 'array_remove'; values: JsonValue[] };

export interface WirePrecondition {
  exists?: boolean;
  update_time?: string;
}

/** One operation of a `write` batch. */
export interface WireWriteOp {
  op: 'create' | 'set' | 'update' | 'delete';
  path: string;
  data?: { [key: string]: unknown };
  merge?: string[];
  precondition?: WirePrecondition;
}

export interface WriteFrame {
  type: 'write';
  id: string;
  idempotency_key: string;
  ops: WireWriteOp[];
}

export type ClientFrame = AuthFrame | SubscribeFrame | UnsubscribeFrame | PingFrame | WriteFrame;

export interface WireDoc {
  id: string;
  path: string;
  data: JsonObject;
  update_time: string;
}

export type ChangeKind = 'added' | 'modified' | 'removed';

export interface WireChange {
  kind: ChangeKind;
  id: string;
  path: string;
  data?: JsonObject;
  update_time?: string;
}

export interface WelcomeFrame {
  type: 'welcome';
  user_id: string;
  org_id?: string;
  session_id: string;
  expires_at: string;
}

export interface SubscribedFrame {
  type: 'subscribed';
  id: string;
  epoch: string;
  resumed: boolean;
}

export interface SnapshotFrame {
  type: 'snapshot';
  sub: string;
  seq: number;
  docs: WireDoc[];
  final: boolean;
}

export interface ChangesFrame {
  type: 'changes';
  sub: string;
  seq: number;
  read_time?: string;
  changes: WireChange[];
}

export type UnsubscribeReason = 'client' | 'forbidden' | 'org_changed' | 'upstream_error';

export interface UnsubscribedFrame {
  type: 'unsubscribed';
  sub: string;
  reason: UnsubscribeReason;
  message?: string;
}

/** Error codes of protocol v1, including those of the write path. */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'already_exists'
  | 'failed_precondition'
  | 'rate_limited'
  | 'limit_exceeded'
  | 'unavailable'
  | 'internal';

export interface ErrorFrame {
  type: 'error';
  id?: string;
  code: ErrorCode;
  message: string;
  retry_after_ms?: number;
  index?: number;
}

export interface AuthExpiringFrame {
  type: 'auth_expiring';
  expires_at: string;
}

export interface PongFrame {
  type: 'pong';
  id?: string;
}

export interface WriteResult {
  path: string;
  update_time: string;
}

export interface WrittenFrame {
  type: 'written';
  id: string;
  commit_time: string;
  results: WriteResult[];
}

export type ServerFrame =
  | WelcomeFrame
  | SubscribedFrame
  | SnapshotFrame
  | ChangesFrame
  | UnsubscribedFrame
  | ErrorFrame
  | AuthExpiringFrame
  | PongFrame
  | WrittenFrame;

const SERVER_TYPES = new Set([
  'welcome',
  'subscribed',
  'snapshot',
  'changes',
  'unsubscribed',
  'error',
  'auth_expiring',
  'pong',
  'written',
]);

/**
 * Parses one text frame. Returns undefined for anything that is not a JSON
 * object with a known `type` (unknown types are ignored for forward
 * compatibility).
 */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const t = (v as { type?: unknown }).type;
  if (typeof t !== 'string' || !SERVER_TYPES.has(t)) return undefined;
  return v as ServerFrame;
}
