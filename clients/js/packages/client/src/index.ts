export {
  Client,
  WriteBatch,
  autoId,
  createClient,
  diff,
  resolveURL,
  type ClientEvents,
  type ClientOptions,
  type Doc,
  type DocChange,
  type Identity,
  type Precondition,
  type SetOptions,
  type Snapshot,
  type Status,
  type Unsubscribe,
  type WriteAck,
} from './client.js';
export {
  Connection,
  FINAL_CLOSE_CODES,
  redactToken,
  type ConnectionHandler,
  type ConnectionOptions,
  type ConnectionState,
  type DownInfo,
  type GetToken,
  type Timers,
  type WebSocketConstructor,
  type WebSocketLike,
} from './connection.js';
export { backoffDelay, type BackoffOptions } from './backoff.js';
export { FiregateError } from './errors.js';
export { compareDocs, compareValues, matches } from './match.js';
export { applyOp } from './overlay.js';
export { IndexedDBPersistence, type PersistenceOptions, type PersistedTarget, type PersistedWrite } from './persist.js';
export * from './protocol.js';
export { DocRef, Query, collection, doc, type Target, type TargetOptions } from './query.js';
export { tabsSupported } from './tabs.js';
export {
  Bytes,
  DocumentReference,
  FieldTransform,
  GeoPoint,
  Timestamp,
  arrayRemove,
  arrayUnion,
  compareTimes,
  decodeData,
  encodeValue,
  increment,
  serverTimestamp,
  type FieldKind,
  type FieldTypes,
} from './values.js';
