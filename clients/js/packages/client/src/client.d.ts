import { errorMessage, type ConnectionState, type DownInfo, type GetToken, type Timers, type WebSocketConstructor } from './connection.js';
import type { BackoffOptions } from './backoff.js';
import { FiregateError } from './errors.js';
import { type PersistedWrite, type PersistenceOptions } from './persist.js';
import type { WelcomeFrame, WireWriteOp } from './protocol.js';
import { DocRef, Query, type Target } from './query.js';
/** One document as the app sees it. Immutable. */
export interface Doc<T> {
    readonly id: string;
    readonly path: string;
    /** The decoded data (deep-frozen). */
    readonly data: Readonly<T>;
    /** The server's update time; null for a document only written locally so far. */
    readonly updateTime: string | null;
    /** True while a local write to it is not yet confirmed by the server. */
    readonly pending: boolean;
}
/** Subscription status: `stale` while reconnecting, `error` with `error.code`. */
export type Status = 'loading' | 'ready' | 'stale' | 'error';
export interface DocChange<T> {
    readonly type: 'added' | 'modified' | 'removed';
    readonly doc: Doc<T>;
    /** Index in the previous docs (-1 for added). */
    readonly oldIndex: number;
    /** Index in the new docs (-1 for removed). */
    readonly newIndex: number;
}
/** What a listener receives. Immutable; a new object on every change. */
export interface Snapshot<T> {
    /** The documents in query order (frozen). */
    readonly docs: readonly Doc<T>[];
    /** For doc() targets: the document, or null when it does not exist (or is not visible). */
    readonly doc: Doc<T> | null;
    readonly status: Status;
    readonly error: FiregateError | null;
    /** True when the documents come from the persisted cache and the server has not answered yet. */
    readonly fromCache: boolean;
    readonly hasPendingWrites: boolean;
    /** What changed since the previous snapshot delivered to this listener. */
    docChanges(): readonly DocChange<T>[];
}
export type Unsubscribe = () => void;
/** What a write resolves with once the gateway acknowledged it. */
export interface WriteAck {
    readonly commitTime: string;
    readonly results: readonly {
        readonly path: string;
        readonly updateTime: string;
    }[];
}
/** Write options of set(). */
export interface SetOptions {
    /** true: merge the given fields; a list: merge exactly these field paths. */
    merge?: boolean | string[];
}
export interface Precondition {
    exists?: boolean;
    updateTime?: string;
}
/** Client options. */
export interface ClientOptions {
    /** ws(s):// (or http(s)://) URL of /v1/stream. Default in a browser: this origin. Required elsewhere. */
    url?: string;
    /** Returns a session token, or null when signed out (Clerk's getToken fits). */
    getToken: GetToken;
    /** WebSocket implementation (default globalThis.WebSocket; `ws` in Node 20). */
    WebSocket?: WebSocketConstructor;
    /** Persist the cache and pending writes in IndexedDB (needs userId). Default off. */
    persistence?: boolean | PersistenceOptions;
    /** The signed-in user and org (Clerk's useAuth().userId/orgId): names the persisted cache before the socket is up. */
    userId?: string | null;
    orgId?: string | null;
    /** Share one socket among the tabs of this origin (default true where BroadcastChannel and Web Locks exist). */
    multiTab?: boolean;
    backoff?: BackoffOptions;
    pingIntervalMs?: number;
    pongTimeoutMs?: number;
    /** How long a write acknowledged by the server stays pending at most while its change has not arrived (default 10000 ms). */
    confirmTimeoutMs?: number;
    /** Connect at once (default true). */
    autoConnect?: boolean;
    /** Debug hook: every frame in and out (tokens redacted). */
    onFrame?: (direction: 'in' | 'out', frame: unknown) => void;
    /** Test hooks. */
    timers?: Timers;
    random?: () => number;
}
/** Events of Client.on(). */
export interface ClientEvents {
    state: (state: ConnectionState, detail?: DownInfo) => void;
    welcome: (welcome: WelcomeFrame, previous: WelcomeFrame | null) => void;
    /** A gateway error not tied to a subscription or write, or a replayed write that was refused. */
    error: (error: FiregateError) => void;
}
/** Identity of the session, for the persisted cache. */
export interface Identity {
    userId: string | null;
    orgId: string | null;
}
/** A random 20-character document id (as Firestore's SDKs make). */
export declare function autoId(random?: () => number): string;
/** The default stream URL in a browser; a clear error elsewhere. */
export declare function resolveURL(url: string | undefined): string;
/**
 * The Firegate client. Create it with createClient(). All methods run on
 * the event loop; listeners are called synchronously after each change.
 */
export declare class Client {
    #private;
    constructor(opts: ClientOptions);
    /** The connection state. */
    get state(): ConnectionState;
    /** The last welcome (who the gateway thinks we are), or null. */
    get welcome(): WelcomeFrame | null;
    /** Whether this tab holds the shared socket (always true without multi-tab). */
    get isLeader(): boolean;
    /** Registers an event listener; returns a function that removes it. */
    on<K extends keyof ClientEvents>(event: K, fn: ClientEvents[K]): Unsubscribe;
    /** Opens the connection (it stays open, reconnecting, until close()). */
    connect(): void;
    /** Closes the connection; subscriptions stay registered for a later connect(). */
    close(): void;
    /** Closes for good and removes global listeners. */
    dispose(): void;
    /**
     * Tells the client the session may have changed (Clerk's userId/orgId).
     * Same user, other org: refreshes the token in band (org-scoped
     * subscriptions re-plan). Another user: wipes the cache and reconnects.
     * Signed out (userId null): the next getToken returns null, which closes
     * and clears. From signed-out to signed-in: connects.
     */
    setIdentity(id: Identity): void;
    /** Asks for a fresh token and sends it in band; resolves with the acknowledging welcome. */
    refresh(): Promise<WelcomeFrame>;
    /**
     * Listens to a query or a document. The listener is called with the
     * current snapshot at once when one is known (cache included), then on
     * every change. Equal targets share one server subscription.
     */
    onSnapshot<T>(target: Target<T>, listener: (snap: Snapshot<T>) => void): Unsubscribe;
    /** The current snapshot of a target that has listeners, or null. */
    peek<T>(target: Target<T>): Snapshot<T> | null;
    /** Creates a document with a generated id in the collection; resolves when acknowledged. */
    add(collectionPath: string | Query<unknown>, data: Record<string, unknown>): Promise<WriteAck & {
        path: string;
        id: string;
    }>;
    /** Creates the document at path; refused (already_exists) when it exists. */
    create(path: string | DocRef<unknown>, data: Record<string, unknown>): Promise<WriteAck>;
    /** Replaces (or with merge, merges into) the document at path. */
    set(path: string | DocRef<unknown>, data: Record<string, unknown>, options?: SetOptions): Promise<WriteAck>;
    /** Updates fields (keys are field paths) of an existing document. */
    update(path: string | DocRef<unknown>, fields: Record<string, unknown>, precondition?: Precondition): Promise<WriteAck>;
    /** Deletes the document at path. */
    delete(path: string | DocRef<unknown>, precondition?: Precondition): Promise<WriteAck>;
    /** Starts an atomic batch of writes. */
    batch(): WriteBatch;
    /** The writes not yet confirmed (diagnostics, tests). */
    get pendingWrites(): number;
    /** Simulates the browser's `online` event / a visible tab: reconnect now if waiting, re-check the token if signed out. */
    nudge(): void;
}
/** A batch of writes, committed atomically. */
export declare class WriteBatch {
    #private;
    constructor(commit: (ops: WireWriteOp[]) => Promise<WriteAck>);
    create(path: string | DocRef<unknown>, data: Record<string, unknown>): this;
    set(path: string | DocRef<unknown>, data: Record<string, unknown>, options?: SetOptions): this;
    update(path: string | DocRef<unknown>, fields: Record<string, unknown>, precondition?: Precondition): this;
    delete(path: string | DocRef<unknown>, precondition?: Precondition): this;
    commit(): Promise<WriteAck>;
}
/** The changes from prev to next, by path: removed (old indexes), then added and modified (new indexes). */
export declare function diff<T>(prev: readonly Doc<T>[], next: readonly Doc<T>[]): DocChange<T>[];
/** Creates a client. See ClientOptions. */
export declare function createClient(options: ClientOptions): Client;
export { errorMessage };
export type { PersistedWrite };
