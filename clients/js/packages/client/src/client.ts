// The client: subscriptions over one logical connection, one in-memory
// document store shared by overlapping subscriptions, optimistic writes,
// optional IndexedDB persistence, and one socket shared by the tabs of an
// origin.
import {
  Connection,
  errorMessage,
  type ConnectionHandler,
  type ConnectionOptions,
  type ConnectionState,
  type DownInfo,
  type GetToken,
  type Timers,
  type WebSocketConstructor,
} from './connection.js';
import type { BackoffOptions } from './backoff.js';
import { FiregateError } from './errors.js';
import { compareDocs, hasOrderFields, matches } from './match.js';
import { applyOp } from './overlay.js';
import { IndexedDBPersistence, type PersistedTarget, type PersistedWrite, type PersistenceOptions } from './persist.js';
import type {
  ClientFrame,
  ErrorFrame,
  JsonObject,
  ServerFrame,
  SubscribeFrame,
  WelcomeFrame,
  WireChange,
  WireDoc,
  WireWriteOp,
  WrittenFrame,
} from './protocol.js';
import { DocRef, Query, type Target } from './query.js';
import { TabLink, tabsSupported } from './tabs.js';
import { compareTimes, decodeData, encodeValue } from './values.js';

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
  readonly results: readonly { readonly path: string; readonly updateTime: string }[];
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

type Listener = (snap: Snapshot<unknown>) => void;

interface ListenerState {
  fn: Listener;
  last: readonly Doc<unknown>[];
  lastStatus: Status | null;
  lastError: FiregateError | null;
  lastFromCache: boolean;
}

interface TargetState {
  key: string;
  target: Target<unknown>;
  subId: string | null;
  sent: boolean;
  epoch: string;
  seq: number;
  hasSeq: boolean;
  status: Status;
  error: FiregateError | null;
  fromCache: boolean;
  members: Set<string>;
  chunks: WireDoc[] | null;
  listeners: Set<ListenerState>;
  retryTimer: unknown;
  /** Decoded docs by path, reused while the source object is the same. */
  decoded: Map<string, { src: object; pending: boolean; doc: Doc<unknown> }>;
  view: readonly Doc<unknown>[];
}

interface PendingWrite {
  id: string;
  idempotencyKey: string;
  ops: WireWriteOp[];
  order: number;
  sent: boolean;
  acked: Map<string, string> | null;
  confirmed: Set<string>;
  resolve: ((ack: WriteAck) => void) | null;
  reject: ((err: FiregateError) => void) | null;
  retryTimer: unknown;
  confirmTimer: unknown;
}

const AUTO_ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A random 20-character document id (as Firestore's SDKs make). */
export function autoId(random: () => number = Math.random): string {
  let s = '';
  for (let i = 0; i < 20; i++) s += AUTO_ID_CHARS[Math.floor(random() * AUTO_ID_CHARS.length)];
  return s;
}

/** The default stream URL in a browser; a clear error elsewhere. */
export function resolveURL(url: string | undefined): string {
  if (url) return url.replace(/^http(s?):/, 'ws$1:');
  const loc = (globalThis as { location?: { protocol: string; host: string } }).location;
  if (!loc || !loc.host) {
    throw new TypeError('createClient: `url` is required outside a browser (e.g. "ws://127.0.0.1:8080/v1/stream")');
  }
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/v1/stream`;
}

/**
 * The Firegate client. Create it with createClient(). All methods run on
 * the event loop; listeners are called synchronously after each change.
 */
export class Client {
  readonly #o: ClientOptions;
  #link: Connection | TabLink;
  readonly #connOpts: ConnectionOptions;
  readonly #t: Timers;
  readonly #targets = new Map<string, TargetState>(); // by target key
  readonly #bySub = new Map<string, TargetState>(); // by subscription id
  readonly #store = new Map<string, { doc: WireDoc; refs: number }>(); // by path
  readonly #writes: PendingWrite[] = [];
  readonly #writesById = new Map<string, PendingWrite>();
  readonly #events = new Map<keyof ClientEvents, Set<(...args: never[]) => void>>();
  #nextSub = 1;
  #nextWrite = 1;
  #writeOrder = Date.now();
  #persist: IndexedDBPersistence | null = null;
  #persisted = new Map<string, PersistedTarget>();
  #loading: Promise<void> = Promise.resolve();
  #loadPending = 0; // loads and wipes of IndexedDB in flight
  #identity: Identity;
  #welcome: WelcomeFrame | null = null;
  #closed = false;
  #removeGlobalListeners: (() => void) | null = null;

  constructor(opts: ClientOptions) {
    if (!opts || typeof opts.getToken !== 'function') throw new TypeError('createClient: getToken is required');
    this.#o = opts;
    this.#t = opts.timers ?? {
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
    };
    const url = resolveURL(opts.url);
    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new TypeError('createClient: no WebSocket here; pass options.WebSocket (e.g. the `ws` package in Node 20)');
    this.#identity = { userId: opts.userId ?? null, orgId: opts.orgId ?? null };
    this.#connOpts = {
      url,
      getToken: opts.getToken,
      WebSocket: WS,
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
      ...(opts.pingIntervalMs !== undefined ? { pingIntervalMs: opts.pingIntervalMs } : {}),
      ...(opts.pongTimeoutMs !== undefined ? { pongTimeoutMs: opts.pongTimeoutMs } : {}),
      ...(opts.timers ? { timers: opts.timers } : {}),
      ...(opts.random ? { random: opts.random } : {}),
      ...(opts.onFrame ? { onFrame: opts.onFrame } : {}),
    };
    this.#link = this.#makeLink();
    if (opts.persistence) {
      this.#persist = new IndexedDBPersistence(opts.persistence === true ? {} : opts.persistence);
      if (this.#identity.userId) this.#loading = this.#track(this.#load());
    }
    this.#installGlobalListeners();
    if (opts.autoConnect ?? true) this.connect();
  }

  /**
   * One logical connection: a socket of its own, or (multi-tab) the socket
   * of the leader tab among the tabs of the same user. Events of a link
   * that was replaced are ignored.
   */
  #makeLink(): Connection | TabLink {
    let link: Connection | TabLink | null = null;
    const mine = (): boolean => link === this.#link;
    const handler: ConnectionHandler = {
      state: (s, d) => mine() && this.#onState(s, d),
      ready: (w) => mine() && this.#onReady(w),
      refreshed: (w, prev) => mine() && this.#onRefreshed(w, prev),
      frame: (f) => mine() && this.#onFrame(f),
      down: () => undefined,
      signedOut: () => mine() && this.#onSignedOut(),
    };
    link =
      (this.#o.multiTab ?? true) && tabsSupported()
        ? new TabLink(this.#connOpts, handler, this.#identity.userId ?? '')
        : new Connection(this.#connOpts, handler);
    return link;
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.#link.state;
  }

  /** The last welcome (who the gateway thinks we are), or null. */
  get welcome(): WelcomeFrame | null {
    return this.#welcome;
  }

  /** Whether this tab holds the shared socket (always true without multi-tab). */
  get isLeader(): boolean {
    return this.#link instanceof TabLink ? this.#link.isLeader : true;
  }

  /** Registers an event listener; returns a function that removes it. */
  on<K extends keyof ClientEvents>(event: K, fn: ClientEvents[K]): Unsubscribe {
    let set = this.#events.get(event);
    if (!set) this.#events.set(event, (set = new Set()));
    const f = fn as unknown as (...args: never[]) => void;
    set.add(f);
    return () => set.delete(f);
  }

  #emit<K extends keyof ClientEvents>(event: K, ...args: Parameters<ClientEvents[K]>): void {
    for (const fn of this.#events.get(event) ?? []) {
      try {
        (fn as unknown as (...a: Parameters<ClientEvents[K]>) => void)(...args);
      } catch (err) {
        console.error(`firegate: ${event} listener threw`, err);
      }
    }
  }

  /**
   * Opens the connection (it stays open, reconnecting, until close()). With
   * persistence, after the persisted cache has been loaded and rendered.
   */
  connect(): void {
    this.#closed = false;
    // The persisted cache renders first: the socket opens once it is loaded.
    if (this.#loadPending === 0) this.#link.start();
    else {
      void this.#loading.then(() => {
        if (!this.#closed) this.#link.start();
      });
    }
  }

  /** Closes the connection; subscriptions stay registered for a later connect(). */
  close(): void {
    this.#closed = true;
    this.#link.stop();
  }

  /** Closes for good and removes global listeners. */
  dispose(): void {
    this.close();
    if (this.#link instanceof TabLink) this.#link.destroy();
    this.#removeGlobalListeners?.();
    for (const t of this.#targets.values()) this.#t.clearTimeout(t.retryTimer);
    for (const w of this.#writes) {
      this.#t.clearTimeout(w.retryTimer);
      this.#t.clearTimeout(w.confirmTimer);
    }
    this.#persist?.close();
  }

  /**
   * Tells the client the session may have changed (Clerk's userId/orgId).
   * Same user, other org: refreshes the token in band (org-scoped
   * subscriptions re-plan). Another user: wipes the cache and reconnects.
   * Signed out (userId null): the next getToken returns null, which closes
   * and clears. From signed-out to signed-in: connects.
   */
  setIdentity(id: Identity): void {
    const prev = this.#identity;
    this.#identity = { userId: id.userId ?? null, orgId: id.orgId ?? null };
    if (prev.userId === this.#identity.userId && prev.orgId === this.#identity.orgId) return;
    if (prev.userId !== this.#identity.userId) {
      this.#wipe();
      if (this.#identity.userId && this.#persist) this.#loading = this.#track(this.#load());
      if (this.#link instanceof TabLink) {
        // Tabs share a socket per user: join the new user's group.
        const old = this.#link;
        this.#link = this.#makeLink();
        old.destroy();
        if (!this.#closed) this.#link.start();
      } else if (!this.#closed) this.#link.reconnect();
      return;
    }
    // Same user, other org.
    if (this.#persist && this.#identity.userId) this.#loading = this.#track(this.#load());
    if (!this.#closed) void this.#link.refresh().catch(() => undefined);
  }

  /** Asks for a fresh token and sends it in band; resolves with the acknowledging welcome. */
  refresh(): Promise<WelcomeFrame> {
    return this.#link.refresh();
  }

  // ---- subscriptions

  /**
   * Listens to a query or a document. The listener is called with the
   * current snapshot at once when one is known (cache included), then on
   * every change. Equal targets share one server subscription.
   */
  onSnapshot<T>(target: Target<T>, listener: (snap: Snapshot<T>) => void): Unsubscribe {
    const key = target.key();
    let t = this.#targets.get(key);
    if (!t) {
      t = {
        key,
        target: target as Target<unknown>,
        subId: null,
        sent: false,
        epoch: '',
        seq: 0,
        hasSeq: false,
        status: this.#link.state === 'waiting' ? 'stale' : 'loading',
        error: null,
        fromCache: false,
        members: new Set(),
        chunks: null,
        listeners: new Set(),
        retryTimer: null,
        decoded: new Map(),
        view: [],
      };
      this.#targets.set(key, t);
      this.#restore(t);
      const tt = t;
      if (this.#loadPending === 0) this.#sendSubscribe(tt);
      else {
        void this.#loading.then(() => {
          if (this.#targets.get(key) === tt && !tt.hasSeq) this.#restore(tt);
          this.#sendSubscribe(tt);
        });
      }
    }
    const ls: ListenerState = { fn: listener as Listener, last: [], lastStatus: null, lastError: null, lastFromCache: false };
    t.listeners.add(ls);
    if (t.view.length || t.status !== 'loading' || t.fromCache) this.#deliver(t, ls);
    const tt = t;
    return () => {
      if (!tt.listeners.delete(ls) || tt.listeners.size) return;
      this.#dropTarget(tt);
    };
  }

  /** The current snapshot of a target that has listeners, or null. */
  peek<T>(target: Target<T>): Snapshot<T> | null {
    const t = this.#targets.get(target.key());
    return t ? (this.#snapshot(t, t.view, []) as Snapshot<T>) : null;
  }

  #restore(t: TargetState): void {
    const p = this.#persisted.get(t.key);
    if (!p) return;
    this.#persisted.delete(t.key);
    t.epoch = p.epoch;
    t.seq = p.seq;
    t.hasSeq = true;
    t.fromCache = true;
    for (const d of p.docs) this.#acquire(t, d);
    this.#recompute([t]);
  }

  #dropTarget(t: TargetState): void {
    this.#targets.delete(t.key);
    this.#t.clearTimeout(t.retryTimer);
    if (t.subId) {
      this.#bySub.delete(t.subId);
      if (t.sent) this.#link.send({ type: 'unsubscribe', id: t.subId });
    }
    for (const p of t.members) this.#release(p);
    t.members.clear();
  }

  #sendSubscribe(t: TargetState): void {
    if (this.#targets.get(t.key) !== t || this.#link.state !== 'ready' || t.sent) return;
    if (t.subId) this.#bySub.delete(t.subId);
    t.subId = `s${this.#nextSub++}`;
    this.#bySub.set(t.subId, t);
    const f: SubscribeFrame = { ...t.target.toFrame(), id: t.subId };
    if (t.hasSeq && t.epoch) f.resume = { epoch: t.epoch, seq: t.seq };
    t.chunks = null;
    t.sent = this.#link.send(f);
  }

  #acquire(t: TargetState, d: WireDoc): void {
    const e = this.#store.get(d.path);
    if (!t.members.has(d.path)) {
      t.members.add(d.path);
      if (e) e.refs++;
      else this.#store.set(d.path, { doc: d, refs: 1 });
    }
    const cur = this.#store.get(d.path)!;
    if (cur.doc !== d && newer(d, cur.doc)) cur.doc = d;
  }

  #release(path: string): void {
    const e = this.#store.get(path);
    if (!e) return;
    if (--e.refs <= 0) this.#store.delete(path);
  }

  #leave(t: TargetState, path: string): void {
    if (t.members.delete(path)) this.#release(path);
  }

  // ---- connection events

  #onState(s: ConnectionState, d?: DownInfo): void {
    if (s === 'waiting' || (s === 'closed' && d && d.code !== 1000)) {
      for (const t of this.#targets.values()) {
        t.sent = false;
        t.chunks = null;
        if (t.status === 'ready' || t.status === 'loading') this.#setStatus(t, 'stale');
      }
      for (const w of this.#writes) if (!w.acked) w.sent = false;
    }
    if (s === 'closed' && d && d.code !== 1000) {
      for (const t of this.#targets.values()) {
        this.#setStatus(t, 'error', new FiregateError('closed', `connection closed ${d.code} ${d.reason}`));
      }
    }
    this.#emit('state', s, d);
  }

  #onReady(w: WelcomeFrame): void {
    const prev = this.#welcome;
    this.#welcome = w;
    if (prev && prev.user_id !== w.user_id) this.#wipe();
    this.#checkIdentity(w);
    this.#emit('welcome', w, prev);
    // A new socket: nothing of the previous one is live on the server.
    for (const t of this.#targets.values()) {
      t.sent = false;
      t.chunks = null;
    }
    for (const wr of this.#writes) if (!wr.acked) wr.sent = false;
    const resend = (): void => {
      for (const t of [...this.#targets.values()]) this.#sendSubscribe(t);
      for (const wr of this.#writes) if (!wr.acked) this.#sendWrite(wr);
    };
    if (this.#loadPending === 0) resend();
    else void this.#loading.then(resend);
  }

  #onRefreshed(w: WelcomeFrame, prev: WelcomeFrame): void {
    this.#welcome = w;
    this.#checkIdentity(w);
    this.#emit('welcome', w, prev);
  }

  /** The persisted cache follows the gateway's view of who we are. */
  #checkIdentity(w: WelcomeFrame): void {
    const org = w.org_id ?? null;
    if (this.#identity.userId && this.#identity.userId !== w.user_id) {
      // The token is another user's than the app said: nothing cached may stay.
      this.#wipe();
    }
    if (this.#identity.userId !== w.user_id || this.#identity.orgId !== org) {
      const userChanged = this.#identity.userId !== w.user_id;
      this.#identity = { userId: w.user_id, orgId: org };
      if (this.#persist && userChanged) this.#loading = this.#track(this.#load());
    }
  }

  #onSignedOut(): void {
    this.#welcome = null;
    this.#wipe();
  }

  /** Drops every document, subscription state and pending write, here and in IndexedDB. */
  #wipe(): void {
    this.#store.clear();
    this.#persisted.clear();
    for (const t of this.#targets.values()) {
      t.members.clear();
      t.epoch = '';
      t.seq = 0;
      t.hasSeq = false;
      t.fromCache = false;
      t.chunks = null;
      t.error = null;
      t.status = 'loading';
    }
    for (const w of this.#writes.splice(0)) {
      this.#t.clearTimeout(w.retryTimer);
      this.#t.clearTimeout(w.confirmTimer);
      this.#writesById.delete(w.id);
      w.reject?.(new FiregateError('client', 'signed out or user changed before the write was confirmed'));
    }
    if (this.#persist) {
      const p = this.#persist.wipe().catch((err: unknown) => console.error('firegate: wiping the cache failed', err));
      this.#loading = this.#track(this.#loading.then(() => p));
    }
    this.#recompute([...this.#targets.values()]);
  }

  #track(p: Promise<void>): Promise<void> {
    this.#loadPending++;
    return p.finally(() => {
      this.#loadPending--;
    });
  }

  async #load(): Promise<void> {
    const persist = this.#persist;
    const { userId, orgId } = this.#identity;
    if (!persist || !userId) return;
    try {
      const st = await persist.load(userId, orgId ?? '');
      if (this.#identity.userId !== userId || this.#identity.orgId !== (orgId ?? null)) return;
      this.#persisted = st.targets;
      for (const t of this.#targets.values()) if (!t.hasSeq && t.members.size === 0) this.#restore(t);
      for (const w of st.writes) {
        if (this.#writes.some((x) => x.idempotencyKey === w.idempotencyKey)) continue;
        const pw = this.#newWrite(w.ops, w.idempotencyKey, w.order);
        this.#sendWrite(pw);
      }
      this.#recompute([...this.#targets.values()]);
    } catch (err) {
      console.error('firegate: loading the persisted cache failed', err);
    }
  }

  #save(t: TargetState): void {
    if (!this.#persist || !this.#identity.userId || !t.hasSeq) return;
    const docs: WireDoc[] = [];
    for (const p of t.members) {
      const e = this.#store.get(p);
      if (e) docs.push(e.doc);
    }
    this.#persist.putTarget({ key: t.key, epoch: t.epoch, seq: t.seq, docs }).catch((err: unknown) => console.error('firegate: persisting failed', err));
  }

  #onFrame(f: ServerFrame): void {
    switch (f.type) {
      case 'subscribed': {
        const t = this.#bySub.get(f.id);
        if (!t) return;
        if (t.epoch !== f.epoch) t.hasSeq = false;
        t.epoch = f.epoch;
        return;
      }
      case 'snapshot': {
        const t = this.#bySub.get(f.sub);
        if (!t) return;
        (t.chunks ??= []).push(...(f.docs ?? []));
        if (!f.final) return;
        const docs = t.chunks;
        t.chunks = null;
        const keep = new Set(docs.map((d) => d.path));
        for (const p of [...t.members]) if (!keep.has(p)) this.#leave(t, p);
        for (const d of docs) this.#acquire(t, d);
        this.#afterData(t, f.seq);
        return;
      }
      case 'changes': {
        const t = this.#bySub.get(f.sub);
        if (!t) return;
        for (const c of f.changes ?? []) this.#applyChange(t, c);
        this.#afterData(t, f.seq);
        return;
      }
      case 'unsubscribed': {
        const t = this.#bySub.get(f.sub);
        if (!t) return;
        this.#bySub.delete(f.sub);
        t.subId = null;
        t.sent = false;
        for (const p of [...t.members]) this.#leave(t, p);
        t.hasSeq = false;
        t.epoch = '';
        this.#persist?.deleteTarget(t.key).catch(() => undefined);
        if (f.reason === 'org_changed') {
          // The session moved to another org: start over there.
          t.status = 'loading';
          t.error = null;
          t.fromCache = false;
          this.#recompute(this.#targets.values());
          this.#sendSubscribe(t);
        } else {
          this.#setStatus(t, 'error', new FiregateError(f.reason, f.message ?? ''));
          this.#recompute(this.#targets.values());
        }
        return;
      }
      case 'error':
        this.#onError(f);
        return;
      case 'written':
        this.#onWritten(f);
        return;
      default:
        return;
    }
  }

  #applyChange(t: TargetState, c: WireChange): void {
    if (c.kind === 'removed') {
      this.#leave(t, c.path);
      return;
    }
    this.#acquire(t, { id: c.id, path: c.path, data: c.data ?? {}, update_time: c.update_time ?? '' });
  }

  #afterData(t: TargetState, seq: number): void {
    const first = t.status !== 'ready' || t.fromCache || t.error !== null;
    t.seq = seq;
    t.hasSeq = true;
    t.fromCache = false;
    t.status = 'ready';
    t.error = null;
    this.#checkConfirmations();
    this.#recompute(this.#targets.values(), first ? t : null);
    this.#save(t);
  }

  #onError(f: ErrorFrame): void {
    const err = new FiregateError(f.code, f.message ?? '', {
      ...(f.retry_after_ms !== undefined ? { retryAfterMs: f.retry_after_ms } : {}),
      ...(f.index !== undefined ? { index: f.index } : {}),
    });
    const t = f.id ? this.#bySub.get(f.id) : undefined;
    if (t) {
      this.#bySub.delete(f.id!);
      t.subId = null;
      t.sent = false;
      if (f.retry_after_ms !== undefined && f.retry_after_ms >= 0) {
        // Every refusal that says when to retry is retried then.
        this.#t.clearTimeout(t.retryTimer);
        t.retryTimer = this.#t.setTimeout(() => this.#sendSubscribe(t), f.retry_after_ms);
        this.#setStatus(t, t.members.size ? 'stale' : 'loading', err);
      } else {
        this.#setStatus(t, 'error', err);
      }
      return;
    }
    const w = f.id ? this.#writesById.get(f.id) : undefined;
    if (w) {
      this.#writesById.delete(w.id);
      if (f.retry_after_ms !== undefined && f.retry_after_ms >= 0) {
        w.sent = false;
        this.#t.clearTimeout(w.retryTimer);
        w.retryTimer = this.#t.setTimeout(() => this.#sendWrite(w), f.retry_after_ms);
        return;
      }
      this.#removeWrite(w);
      this.#recompute(this.#targets.values());
      if (w.reject) w.reject(err);
      else this.#emit('error', err);
      return;
    }
    this.#emit('error', err);
  }

  #setStatus(t: TargetState, s: Status, err: FiregateError | null = null): void {
    if (t.status === s && t.error === err) return;
    t.status = s;
    t.error = err;
    for (const ls of t.listeners) this.#deliver(t, ls);
  }

  // ---- views

  #recompute(targets: Iterable<TargetState>, force: TargetState | null = null): void {
    for (const t of targets) {
      const view = this.#computeView(t);
      const changed = view.length !== t.view.length || view.some((d, i) => d !== t.view[i]);
      t.view = view;
      for (const ls of t.listeners) {
        if (changed || t === force || ls.lastStatus !== t.status || ls.lastError !== t.error || ls.lastFromCache !== t.fromCache) {
          this.#deliver(t, ls);
        }
      }
    }
  }

  #computeView(t: TargetState): readonly Doc<unknown>[] {
    const target = t.target;
    const candidates = new Set(t.members);
    const overlays = this.#overlays();
    for (const p of overlays.keys()) {
      if (target instanceof DocRef ? p === target.path : parentOf(p) === (target as Query<unknown>).path) candidates.add(p);
    }
    const out: { doc: Doc<unknown>; raw: Readonly<Record<string, unknown>> }[] = [];
    const fields = target.options.fields;
    const seen = new Set<string>();
    for (const p of candidates) {
      const base = this.#store.get(p)?.doc;
      const ov = overlays.get(p);
      let src: object;
      let raw: Readonly<Record<string, unknown>>;
      let pending = false;
      let updateTime: string | null = null;
      if (ov) {
        if (ov.data === null) continue;
        if (!t.members.has(p) || ov.touched) {
          if (target instanceof Query && (!matches(ov.data, target.filters) || !hasOrderFields(ov.data, target.orders))) continue;
        }
        src = ov.data;
        raw = ov.data;
        pending = true;
        updateTime = base?.update_time ?? null;
      } else if (base && t.members.has(p)) {
        src = base;
        raw = base.data;
        updateTime = base.update_time;
      } else continue;
      seen.add(p);
      let cached = t.decoded.get(p);
      if (!cached || cached.src !== src || cached.pending !== pending) {
        const id = p.slice(p.lastIndexOf('/') + 1);
        const doc: Doc<unknown> = Object.freeze({ id, path: p, data: decodeData(raw, fields), updateTime, pending });
        cached = { src, pending, doc };
        t.decoded.set(p, cached);
      }
      out.push({ doc: cached.doc, raw });
    }
    for (const p of [...t.decoded.keys()]) if (!seen.has(p)) t.decoded.delete(p);
    let docs = out.map((x) => x.doc);
    if (target instanceof Query) {
      docs.sort((a, b) => compareDocs(a as { id: string; data: Record<string, unknown> }, b as { id: string; data: Record<string, unknown> }, target.orders));
      if (target.max && docs.length > target.max) docs = docs.slice(0, target.max);
    }
    return Object.freeze(docs);
  }

  /** Per path, the data after every unconfirmed write (null: deleted), computed from the store. */
  #overlays(): Map<string, { data: Record<string, unknown> | null; touched: boolean }> {
    const out = new Map<string, { data: Record<string, unknown> | null; touched: boolean }>();
    for (const w of this.#writes) {
      for (const op of w.ops) {
        if (w.confirmed.has(op.path)) continue;
        const prev = out.get(op.path);
        const before = prev ? prev.data : ((this.#store.get(op.path)?.doc.data as Record<string, unknown> | undefined) ?? null);
        out.set(op.path, { data: applyOp(before, op), touched: true });
      }
    }
    // Freeze so that decoded docs can be cached by identity within one pass.
    for (const v of out.values()) if (v.data) Object.freeze(v.data);
    return out;
  }

  #snapshot(t: TargetState, docs: readonly Doc<unknown>[], changes: readonly DocChange<unknown>[]): Snapshot<unknown> {
    const frozenChanges = Object.freeze([...changes]);
    return Object.freeze({
      docs,
      doc: t.target instanceof DocRef ? (docs[0] ?? null) : null,
      status: t.status,
      error: t.error,
      fromCache: t.fromCache,
      hasPendingWrites: docs.some((d) => d.pending),
      docChanges: () => frozenChanges,
    });
  }

  #deliver(t: TargetState, ls: ListenerState): void {
    const changes = diff(ls.last, t.view);
    ls.last = t.view;
    ls.lastStatus = t.status;
    ls.lastError = t.error;
    ls.lastFromCache = t.fromCache;
    try {
      ls.fn(this.#snapshot(t, t.view, changes));
    } catch (err) {
      console.error('firegate: snapshot listener threw', err);
    }
  }

  // ---- writes

  /** Creates a document with a generated id in the collection; resolves when acknowledged. */
  add(collectionPath: string | Query<unknown>, data: Record<string, unknown>): Promise<WriteAck & { path: string; id: string }> {
    const col = typeof collectionPath === 'string' ? collectionPath : collectionPath.path;
    const id = autoId(this.#o.random);
    const path = `${col}/${id}`;
    return this.batch()
      .create(path, data)
      .commit()
      .then((ack) => ({ ...ack, path, id }));
  }

  /** Creates the document at path; refused (already_exists) when it exists. */
  create(path: string | DocRef<unknown>, data: Record<string, unknown>): Promise<WriteAck> {
    return this.batch().create(path, data).commit();
  }

  /** Replaces (or with merge, merges into) the document at path. */
  set(path: string | DocRef<unknown>, data: Record<string, unknown>, options?: SetOptions): Promise<WriteAck> {
    return this.batch().set(path, data, options).commit();
  }

  /** Updates fields (keys are field paths) of an existing document. */
  update(path: string | DocRef<unknown>, fields: Record<string, unknown>, precondition?: Precondition): Promise<WriteAck> {
    return this.batch().update(path, fields, precondition).commit();
  }

  /** Deletes the document at path. */
  delete(path: string | DocRef<unknown>, precondition?: Precondition): Promise<WriteAck> {
    return this.batch().delete(path, precondition).commit();
  }

  /** Starts an atomic batch of writes. */
  batch(): WriteBatch {
    return new WriteBatch((ops) => this.#commit(ops));
  }

  /** The writes not yet confirmed (diagnostics, tests). */
  get pendingWrites(): number {
    return this.#writes.length;
  }

  #commit(ops: WireWriteOp[]): Promise<WriteAck> {
    if (!ops.length) return Promise.reject(new FiregateError('client', 'empty batch'));
    if (ops.length > 500) return Promise.reject(new FiregateError('client', 'a batch holds at most 500 operations'));
    const key = `k-${autoId(this.#o.random)}${autoId(this.#o.random)}`;
    const w = this.#newWrite(ops, key, this.#writeOrder++);
    const p = new Promise<WriteAck>((resolve, reject) => {
      w.resolve = resolve;
      w.reject = reject;
    });
    this.#persist?.putWrite({ idempotencyKey: key, ops, order: w.order }).catch((err: unknown) => console.error('firegate: persisting a write failed', err));
    this.#recompute(this.#targets.values());
    this.#sendWrite(w);
    return p;
  }

  #newWrite(ops: WireWriteOp[], idempotencyKey: string, order: number): PendingWrite {
    const w: PendingWrite = {
      id: '',
      idempotencyKey,
      ops,
      order,
      sent: false,
      acked: null,
      confirmed: new Set(),
      resolve: null,
      reject: null,
      retryTimer: null,
      confirmTimer: null,
    };
    this.#writes.push(w);
    return w;
  }

  #sendWrite(w: PendingWrite): void {
    if (w.acked || w.sent || !this.#writes.includes(w) || this.#link.state !== 'ready') return;
    if (w.id) this.#writesById.delete(w.id);
    w.id = `w${this.#nextWrite++}`;
    this.#writesById.set(w.id, w);
    w.sent = this.#link.send({ type: 'write', id: w.id, idempotency_key: w.idempotencyKey, ops: w.ops });
  }

  #onWritten(f: WrittenFrame): void {
    const w = this.#writesById.get(f.id);
    if (!w) return;
    this.#writesById.delete(f.id);
    w.acked = new Map((f.results ?? []).map((r) => [r.path, r.update_time]));
    w.resolve?.({ commitTime: f.commit_time, results: (f.results ?? []).map((r) => ({ path: r.path, updateTime: r.update_time })) });
    this.#persist?.deleteWrite(w.idempotencyKey).catch(() => undefined);
    w.confirmTimer = this.#t.setTimeout(() => {
      // The change may never come (the document is hidden from us by a filter, say).
      for (const op of w.ops) w.confirmed.add(op.path);
      this.#checkConfirmations();
      this.#recompute(this.#targets.values());
    }, this.#o.confirmTimeoutMs ?? 10000);
    this.#checkConfirmations();
    this.#recompute(this.#targets.values());
  }

  /** Marks acknowledged writes confirmed once the store shows their effect. */
  #checkConfirmations(): void {
    for (const w of [...this.#writes]) {
      if (!w.acked) continue;
      for (const op of w.ops) {
        if (w.confirmed.has(op.path)) continue;
        const e = this.#store.get(op.path);
        const watched = this.#watched(op.path);
        if (!watched) w.confirmed.add(op.path);
        else if (op.op === 'delete') {
          if (!e) w.confirmed.add(op.path);
        } else {
          const u = w.acked.get(op.path);
          if (e && u && e.doc.update_time && compareTimes(e.doc.update_time, u) >= 0) w.confirmed.add(op.path);
        }
      }
      if (w.ops.every((op) => w.confirmed.has(op.path))) this.#removeWrite(w);
    }
  }

  /** Whether some live subscription could hold path. */
  #watched(path: string): boolean {
    const parent = parentOf(path);
    for (const t of this.#targets.values()) {
      if (t.target instanceof DocRef ? t.target.path === path : t.target.path === parent) return true;
    }
    return false;
  }

  #removeWrite(w: PendingWrite): void {
    const i = this.#writes.indexOf(w);
    if (i >= 0) this.#writes.splice(i, 1);
    this.#writesById.delete(w.id);
    this.#t.clearTimeout(w.retryTimer);
    this.#t.clearTimeout(w.confirmTimer);
    if (!w.acked) this.#persist?.deleteWrite(w.idempotencyKey).catch(() => undefined);
  }

  // ---- environment

  #installGlobalListeners(): void {
    const g = globalThis as {
      addEventListener?: (t: string, fn: () => void) => void;
      removeEventListener?: (t: string, fn: () => void) => void;
      document?: { visibilityState?: string; addEventListener?: (t: string, fn: () => void) => void; removeEventListener?: (t: string, fn: () => void) => void };
    };
    const nudge = (): void => {
      if (!this.#closed) this.#link.nudge();
    };
    const visible = (): void => {
      if (g.document?.visibilityState === 'visible') nudge();
    };
    g.addEventListener?.('online', nudge);
    g.document?.addEventListener?.('visibilitychange', visible);
    this.#removeGlobalListeners = () => {
      g.removeEventListener?.('online', nudge);
      g.document?.removeEventListener?.('visibilitychange', visible);
    };
  }

  /** Simulates the browser's `online` event / a visible tab: reconnect now if waiting, re-check the token if signed out. */
  nudge(): void {
    if (!this.#closed) this.#link.nudge();
  }
}

/** A batch of writes, committed atomically. */
export class WriteBatch {
  readonly #ops: WireWriteOp[] = [];
  readonly #commit: (ops: WireWriteOp[]) => Promise<WriteAck>;
  #done = false;

  constructor(commit: (ops: WireWriteOp[]) => Promise<WriteAck>) {
    this.#commit = commit;
  }

  #push(op: WireWriteOp): this {
    if (this.#done) throw new FiregateError('client', 'batch already committed');
    this.#ops.push(op);
    return this;
  }

  create(path: string | DocRef<unknown>, data: Record<string, unknown>): this {
    return this.#push({ op: 'create', path: docPath(path), data: encodeData(data) });
  }

  set(path: string | DocRef<unknown>, data: Record<string, unknown>, options?: SetOptions): this {
    const op: WireWriteOp = { op: 'set', path: docPath(path), data: encodeData(data) };
    if (options?.merge === true) op.merge = Object.keys(data);
    else if (Array.isArray(options?.merge)) op.merge = [...options.merge];
    return this.#push(op);
  }

  update(path: string | DocRef<unknown>, fields: Record<string, unknown>, precondition?: Precondition): this {
    const op: WireWriteOp = { op: 'update', path: docPath(path), data: encodeData(fields) };
    if (precondition) op.precondition = wirePrecondition(precondition);
    return this.#push(op);
  }

  delete(path: string | DocRef<unknown>, precondition?: Precondition): this {
    const op: WireWriteOp = { op: 'delete', path: docPath(path) };
    if (precondition) op.precondition = wirePrecondition(precondition);
    return this.#push(op);
  }

  commit(): Promise<WriteAck> {
    this.#done = true;
    return this.#commit([...this.#ops]);
  }
}

function wirePrecondition(p: Precondition): { exists?: boolean; update_time?: string } {
  const out: { exists?: boolean; update_time?: string } = {};
  if (p.exists !== undefined) out.exists = p.exists;
  if (p.updateTime !== undefined) out.update_time = p.updateTime;
  return out;
}

function docPath(p: string | DocRef<unknown>): string {
  return typeof p === 'string' ? new DocRef(p).path : p.path;
}

function encodeData(data: Record<string, unknown>): JsonObject {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new TypeError('write data must be an object');
  return encodeValue(data) as JsonObject;
}

function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/'));
}

function newer(a: WireDoc, b: WireDoc): boolean {
  if (!a.update_time || !b.update_time) return true;
  try {
    return compareTimes(a.update_time, b.update_time) >= 0;
  } catch {
    return true;
  }
}

/** The changes from prev to next, by path: removed (old indexes), then added and modified (new indexes). */
export function diff<T>(prev: readonly Doc<T>[], next: readonly Doc<T>[]): DocChange<T>[] {
  const out: DocChange<T>[] = [];
  const nextIdx = new Map(next.map((d, i) => [d.path, i]));
  const prevIdx = new Map(prev.map((d, i) => [d.path, i]));
  prev.forEach((d, i) => {
    if (!nextIdx.has(d.path)) out.push({ type: 'removed', doc: d, oldIndex: i, newIndex: -1 });
  });
  next.forEach((d, i) => {
    const j = prevIdx.get(d.path);
    if (j === undefined) out.push({ type: 'added', doc: d, oldIndex: -1, newIndex: i });
    else if (prev[j] !== d || j !== i) {
      if (prev[j] !== d || j !== i) out.push({ type: 'modified', doc: d, oldIndex: j, newIndex: i });
    }
  });
  return out;
}

/** Creates a client. See ClientOptions. */
export function createClient(options: ClientOptions): Client {
  return new Client(options);
}

export { errorMessage };
export type { PersistedWrite };
