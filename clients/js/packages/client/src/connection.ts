// The socket state machine: token → WebSocket → welcome → ready, in-band
// refresh, pings, and reconnects with jittered backoff. It knows nothing of
// subscriptions; the client above it resubscribes on every ready.
import { backoffDelay, type BackoffOptions } from './backoff.js';
import {
  BEARER_PREFIX,
  CloseCode,
  parseServerFrame,
  SUBPROTOCOL,
  type ClientFrame,
  type ServerFrame,
  type WelcomeFrame,
} from './protocol.js';

/** The part of the WebSocket API the client uses (browsers' WebSocket and the `ws` package both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** A WebSocket constructor: `globalThis.WebSocket`, or `ws`'s in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/**
 * Returns a session token, or null when signed out. Clerk's `getToken`
 * fits; `skipCache` asks for a freshly minted token (after an expiry, a
 * refused token or an org switch).
 */
export type GetToken = (options?: { skipCache?: boolean }) => Promise<string | null> | string | null;

/** Timer functions (injectable for tests). */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Connection states. */
export type ConnectionState =
  | 'idle' // not started
  | 'connecting' // getting a token / opening the socket
  | 'authenticating' // socket open, waiting for welcome
  | 'ready' // welcomed
  | 'waiting' // closed, reconnect scheduled
  | 'signed_out' // getToken returned null: no socket until the token changes
  | 'closed'; // stopped (by close() or a final close code)

/** Why the socket went down and what happens next. */
export interface DownInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
  delayMs?: number;
}

export interface ConnectionOptions {
  url: string;
  getToken: GetToken;
  WebSocket: WebSocketConstructor;
  backoff?: BackoffOptions;
  /** Ping interval (default 25000 ms; 0 disables pings). */
  pingIntervalMs?: number;
  /** Close the socket when a pong takes longer (default 10000 ms). */
  pongTimeoutMs?: number;
  timers?: Timers;
  random?: () => number;
  /** Debug hook: every frame in and out (tokens redacted). */
  onFrame?: (direction: 'in' | 'out', frame: unknown) => void;
}

/** Callbacks of a Connection. */
export interface ConnectionHandler {
  state(state: ConnectionState, detail?: DownInfo): void;
  /** The first welcome on a new socket: resubscribe now. */
  ready(welcome: WelcomeFrame): void;
  /** A later welcome (a refresh was accepted). */
  refreshed(welcome: WelcomeFrame, previous: WelcomeFrame): void;
  frame(frame: ServerFrame): void;
  down(info: DownInfo): void;
  /** getToken returned null: everything of the previous user must go. */
  signedOut(): void;
}

/** Close codes after which reconnecting cannot help. */
export const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([CloseCode.POLICY_VIOLATION, CloseCode.TOO_BIG]);

/** Shortens a token for logs: never log a whole token. */
export function redactToken(token: string): string {
  return token.length <= 10 ? '…' : `${token.slice(0, 10)}…(${token.length} chars)`;
}

const defaultTimers: Timers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
};

const OPEN = 1;

/**
 * One logical connection that survives socket failures. Not thread-safe in
 * any sense that matters in JS: every method runs on the event loop.
 */
export class Connection {
  state: ConnectionState = 'idle';
  welcome: WelcomeFrame | null = null;
  readonly #o: ConnectionOptions;
  readonly #h: ConnectionHandler;
  readonly #t: Timers;
  #ws: WebSocketLike | null = null;
  #gen = 0; // bumped whenever a socket or a pending open is abandoned
  #attempt = 0;
  #reconnectTimer: unknown = null;
  #pingTimer: unknown = null;
  #pongTimer: unknown = null;
  #nextPing = 1;
  #lastToken: string | null = null;
  #refreshWaiters: { resolve: (w: WelcomeFrame) => void; reject: (e: Error) => void }[] = [];

  constructor(opts: ConnectionOptions, handler: ConnectionHandler) {
    this.#o = opts;
    this.#h = handler;
    this.#t = opts.timers ?? defaultTimers;
  }

  #setState(s: ConnectionState, detail?: DownInfo): void {
    this.state = s;
    this.#h.state(s, detail);
  }

  /** Starts connecting (no-op unless idle, closed, waiting or signed out). */
  start(): void {
    if (this.state === 'connecting' || this.state === 'authenticating' || this.state === 'ready') return;
    this.#t.clearTimeout(this.#reconnectTimer);
    this.#attempt = 0;
    void this.#open(false);
  }

  /** Reconnects now when waiting (network back, tab visible); re-checks the token when signed out. */
  nudge(): void {
    if (this.state === 'waiting' || this.state === 'signed_out') {
      this.#t.clearTimeout(this.#reconnectTimer);
      this.#attempt = 0;
      void this.#open(false);
    }
  }

  /** Closes for good; start() opens again. */
  stop(): void {
    this.#gen++;
    this.#t.clearTimeout(this.#reconnectTimer);
    this.#stopPing();
    this.#dropSocket(CloseCode.NORMAL, 'client closed');
    this.#rejectRefresh(new Error('connection closed'));
    this.#setState('closed', { code: CloseCode.NORMAL, reason: 'client closed', willReconnect: false });
  }

  /** Drops the socket and connects again with a fresh token (a user switch). */
  reconnect(): void {
    this.#gen++;
    this.#t.clearTimeout(this.#reconnectTimer);
    this.#stopPing();
    this.#dropSocket(CloseCode.NORMAL, 'reconnecting');
    this.#rejectRefresh(new Error('reconnecting'));
    this.#attempt = 0;
    void this.#open(true);
  }

  /**
   * Sends an in-band `auth` with a fresh token (an org switch, or
   * auth_expiring) and resolves with the welcome that acknowledges it. When
   * not connected it (re)connects instead and resolves with the next
   * welcome. A null token signs out.
   */
  async refresh(): Promise<WelcomeFrame> {
    const p = new Promise<WelcomeFrame>((resolve, reject) => this.#refreshWaiters.push({ resolve, reject }));
    p.catch(() => undefined); // callers that ignore the result must not see an unhandled rejection
    if (this.state !== 'ready') {
      if (this.state === 'signed_out' || this.state === 'waiting') this.nudge();
      else if (this.state === 'idle' || this.state === 'closed') this.start();
      return p;
    }
    const gen = this.#gen;
    let token: string | null;
    try {
      token = await this.#o.getToken({ skipCache: true });
    } catch (err) {
      this.#rejectRefresh(new Error(`getToken failed: ${errorMessage(err)}`));
      return p;
    }
    if (gen !== this.#gen) return p;
    if (token === null || token === undefined || token === '') {
      this.#signOut();
      return p;
    }
    this.#lastToken = token;
    this.send({ type: 'auth', token });
    return p;
  }

  /** Sends a frame when ready (auth and ping also before); returns whether it went out. */
  send(frame: ClientFrame): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN) return false;
    if (this.state !== 'ready' && frame.type !== 'auth' && frame.type !== 'ping') return false;
    this.#o.onFrame?.('out', frame.type === 'auth' ? { ...frame, token: redactToken(frame.token) } : frame);
    ws.send(JSON.stringify(frame));
    return true;
  }

  async #open(fresh: boolean): Promise<void> {
    const gen = ++this.#gen;
    this.#setState('connecting');
    let token: string | null;
    try {
      token = await this.#o.getToken(fresh ? { skipCache: true } : undefined);
    } catch (err) {
      if (gen !== this.#gen) return;
      this.#scheduleReconnect(0, `getToken failed: ${errorMessage(err)}`);
      return;
    }
    if (gen !== this.#gen) return;
    if (token === null || token === undefined || token === '') {
      this.#signOut();
      return;
    }
    this.#lastToken = token;
    let ws: WebSocketLike;
    try {
      ws = new this.#o.WebSocket(this.#o.url, [SUBPROTOCOL, BEARER_PREFIX + token]);
    } catch (err) {
      this.#scheduleReconnect(0, `WebSocket failed: ${errorMessage(err)}`);
      return;
    }
    this.#ws = ws;
    let welcomed = false;
    ws.onopen = () => {
      if (this.#ws === ws) this.#setState('authenticating');
    };
    ws.onmessage = (ev) => {
      if (this.#ws !== ws) return;
      const text = typeof ev.data === 'string' ? ev.data : String(ev.data);
      const f = parseServerFrame(text);
      if (!f) return;
      this.#o.onFrame?.('in', f);
      if (f.type === 'welcome') {
        const previous = this.welcome;
        this.welcome = f;
        if (!welcomed) {
          welcomed = true;
          this.#attempt = 0;
          this.#setState('ready');
          this.#startPing();
          this.#h.ready(f);
        } else if (previous) {
          this.#h.refreshed(f, previous);
        }
        this.#resolveRefresh(f);
        return;
      }
      if (f.type === 'pong') {
        this.#t.clearTimeout(this.#pongTimer);
        this.#pongTimer = null;
        return;
      }
      if (f.type === 'auth_expiring') {
        this.refresh().catch(() => undefined);
      }
      this.#h.frame(f);
    };
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.#onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {
      // a close event follows
    };
  }

  #onClose(code: number, reason: string): void {
    this.#stopPing();
    this.#rejectRefresh(new Error(`connection closed (${code} ${reason})`));
    if (FINAL_CLOSE_CODES.has(code)) {
      const info: DownInfo = { code, reason, willReconnect: false };
      this.#h.down(info);
      this.#setState('closed', info);
      return;
    }
    this.#scheduleReconnect(code, reason);
  }

  #scheduleReconnect(code: number, reason: string): void {
    const delayMs = backoffDelay(this.#attempt, this.#o.backoff, this.#o.random);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    const info: DownInfo = { code, reason, willReconnect: true, delayMs };
    this.#h.down(info);
    this.#setState('waiting', info);
    this.#t.clearTimeout(this.#reconnectTimer);
    const gen = this.#gen;
    // After 4001 the token was refused: ask for a freshly minted one.
    const fresh = code === CloseCode.UNAUTHENTICATED || code === CloseCode.USER_CHANGED;
    this.#reconnectTimer = this.#t.setTimeout(() => {
      if (gen === this.#gen && this.state === 'waiting') void this.#open(fresh);
    }, delayMs);
  }

  #signOut(): void {
    this.#gen++;
    this.#t.clearTimeout(this.#reconnectTimer);
    this.#stopPing();
    this.#dropSocket(CloseCode.NORMAL, 'signed out');
    this.#lastToken = null;
    this.welcome = null;
    this.#rejectRefresh(new Error('signed out'));
    this.#setState('signed_out');
    this.#h.signedOut();
  }

  #dropSocket(code: number, reason: string): void {
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        // already closed
      }
    }
  }

  #startPing(): void {
    this.#stopPing();
    const every = this.#o.pingIntervalMs ?? 25000;
    if (!every) return;
    const gen = this.#gen;
    const tick = (): void => {
      if (gen !== this.#gen || this.state !== 'ready') return;
      if (this.#pongTimer === null && this.send({ type: 'ping', id: `p${this.#nextPing++}` })) {
        this.#pongTimer = this.#t.setTimeout(() => {
          this.#pongTimer = null;
          if (gen !== this.#gen) return;
          // A dead network may deliver the close event late: act now.
          this.#dropSocket(CloseCode.PONG_TIMEOUT, 'pong timeout');
          this.#onClose(CloseCode.PONG_TIMEOUT, 'pong timeout');
        }, this.#o.pongTimeoutMs ?? 10000);
      }
      this.#pingTimer = this.#t.setTimeout(tick, every);
    };
    this.#pingTimer = this.#t.setTimeout(tick, every);
  }

  #stopPing(): void {
    this.#t.clearTimeout(this.#pingTimer);
    this.#t.clearTimeout(this.#pongTimer);
    this.#pingTimer = null;
    this.#pongTimer = null;
  }

  #resolveRefresh(w: WelcomeFrame): void {
    const ws = this.#refreshWaiters;
    this.#refreshWaiters = [];
    for (const x of ws) x.resolve(w);
  }

  #rejectRefresh(err: Error): void {
    const ws = this.#refreshWaiters;
    this.#refreshWaiters = [];
    for (const x of ws) x.reject(err);
  }

  /** Whether a token is currently in use (false when signed out). */
  get hasToken(): boolean {
    return this.#lastToken !== null;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
