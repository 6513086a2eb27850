// firegate.js — a small, dependency-free browser client for the Firegate
// wire protocol v1 (plain ES2020 module).
//
//   import { FiregateClient } from './firegate.js';
//   const fg = new FiregateClient({ getToken: async () => fetchMyClerkToken() });
//   fg.on('welcome', (w) => console.log('hello', w.user_id, w.org_id));
//   const sub = fg.subscribe(
//     { collection: 'tasks', where: [{ field: 'status', op: '==', value: 'open' }] },
//     {
//       onSnapshot: (docs, sub) => render(sub.docs),   // whole result replaced
//       onChanges: (changes, sub) => render(sub.docs), // sub.docs already updated
//       onEnd: (reason, message, info) => {},          // unsubscribed by the server
//       onError: (frame, sub) => {},                   // subscription refused
//     });
//   fg.connect();
//   ...; sub.unsubscribe(); fg.close();
//
// What it does for you:
//  * sends the token in the WebSocket subprotocol list
//    ["firegate.v1", "bearer.<jwt>"] (browsers cannot set headers);
//  * keeps, per subscription, the current documents (sub.docs, a Map from
//    document id to {id, path, data, update_time}), the last seq and the
//    Feed epoch, assembling chunked snapshots (final=false ... final=true);
//  * answers auth_expiring by calling getToken() and sending
//    {"type":"auth","token":...}; refreshAuth() does the same on demand (an
//    org switch, say) and resolves with the next welcome;
//  * resubscribes after an org change (reason org_changed), unless
//    resubscribeOnOrgChange is false;
//  * pings to detect dead connections, and reconnects with exponential
//    backoff and full jitter, resuming every subscription with
//    {epoch, seq} so the server sends only what changed meanwhile;
//  * does not reconnect after a policy violation (1008) or an oversized
//    frame (1009): those would fail again.

export const SUBPROTOCOL = 'firegate.v1';
export const BEARER_PREFIX = 'bearer.';

/** Close codes of protocol v1. */
export const CloseCodes = Object.freeze({
  NORMAL: 1000,
  POLICY_VIOLATION: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  SERVICE_RESTART: 1012,
  UNAUTHENTICATED: 4001,
  USER_CHANGED: 4003,
  RATE_LIMITED: 4008,
  TOO_SLOW: 4009,
});

// Close codes after which reconnecting cannot help.
const FATAL_CLOSE_CODES = new Set([CloseCodes.POLICY_VIOLATION, CloseCodes.TOO_BIG]);

// Client-side close code used when the server stopped answering pings.
const CLOSE_PONG_TIMEOUT = 4000;

// Subscription error codes that are retried after retry_after_ms.
const RETRYABLE_CODES = new Set(['rate_limited', 'unavailable']);

/** Returns the default stream URL for the page's own origin. */
export function defaultStreamURL(loc = globalThis.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/v1/stream`;
}

/** Shortens a token for display: never log a whole token. */
export function redactToken(token) {
  if (typeof token !== 'string' || token.length === 0) return token;
  return `${token.slice(0, 10)}…(${token.length} chars, redacted)`;
}

/**
 * One subscription. Its documents live in `docs` (a Map id -> doc, updated
 * before the handlers run). `id` may change when the client resubscribes
 * after an org change; keep the object, not the id.
 */
export class Subscription {
  constructor(client, spec, handlers) {
    this.client = client;
    this.spec = spec;
    this.handlers = handlers || {};
    this.id = '';
    this.docs = new Map();
    this.epoch = '';
    this.seq = 0;
    this.hasSeq = false;
    this.active = true; // false once ended (by us or by the server)
    this.sent = false; // subscribe sent on the current connection
    this.retries = 0;
    this._chunks = null; // Map being assembled from snapshot chunks
    this._retryTimer = null;
  }

  /** Ends the subscription; no handler runs after this. */
  unsubscribe() {
    if (!this.active) return;
    this.active = false;
    clearTimeout(this._retryTimer);
    this.client._dropSubscription(this, true);
  }

  _call(name, ...args) {
    const fn = this.handlers[name];
    if (typeof fn !== 'function') return;
    try {
      fn(...args);
    } catch (err) {
      console.error(`firegate: ${name} handler threw`, err);
    }
  }
}

export class FiregateClient {
  /**
   * @param {object} opts
   * @param {() => Promise<string>} opts.getToken  returns a fresh session token
   *        (called on every connect and refresh, with {reason}).
   * @param {string} [opts.url]  ws(s) URL of /v1/stream (default: this origin).
   * @param {number} [opts.minBackoffMs=250]
   * @param {number} [opts.maxBackoffMs=15000]
   * @param {number} [opts.pingIntervalMs=25000]  0 disables pings.
   * @param {number} [opts.pongTimeoutMs=10000]
   * @param {boolean} [opts.resubscribeOnOrgChange=true]
   * @param {number} [opts.maxSubscribeRetries=5]
   */
  constructor(opts) {
    if (!opts || typeof opts.getToken !== 'function') {
      throw new TypeError('FiregateClient: opts.getToken is required');
    }
    this.opts = {
      minBackoffMs: 250,
      maxBackoffMs: 15000,
      pingIntervalMs: 25000,
      pongTimeoutMs: 10000,
      resubscribeOnOrgChange: true,
      maxSubscribeRetries: 5,
      ...opts,
    };
    if (!this.opts.url) this.opts.url = defaultStreamURL();
    this.state = 'idle'; // idle | connecting | authenticating | ready | waiting | closed
    this.welcome = null; // last welcome frame
    this._ws = null;
    this._subs = new Map(); // id -> Subscription (active ones)
    this._nextSub = 1;
    this._nextPing = 1;
    this._attempt = 0;
    this._stopped = true;
    this._gen = 0; // bumped by connect() and close(); stale async work checks it
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._welcomeWaiters = [];
    this._listeners = new Map();
  }

  /**
   * Registers a listener; returns a function that removes it. Events:
   *  'state' (state, detail)        connection state changes
   *  'welcome' (frame, previous)    after the first auth and every refresh
   *  'frame' (direction, frame)     every frame in ('in') and out ('out'; tokens redacted)
   *  'error' (frame)                an error frame not tied to a subscription
   *  'auth_expiring' (frame)        before the client refreshes by itself
   *  'close' ({code, reason, willReconnect, delayMs})
   */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event).delete(fn);
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of set) {
      try {
        fn(...args);
      } catch (err) {
        console.error(`firegate: ${event} listener threw`, err);
      }
    }
  }

  _setState(state, detail) {
    this.state = state;
    this._emit('state', state, detail);
  }

  /** Opens the connection (and keeps it open until close()). */
  connect() {
    if (!this._stopped) return;
    this._stopped = false;
    this._gen++;
    this._attempt = 0;
    this._open();
  }

  /** Closes the connection for good; subscriptions stay registered for a later connect(). */
  close() {
    this._stopped = true;
    this._gen++;
    clearTimeout(this._reconnectTimer);
    this._stopTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.close(CloseCodes.NORMAL, 'client closed');
    this._rejectWelcomeWaiters(new Error('connection closed'));
    for (const sub of this._subs.values()) sub.sent = false;
    this._setState('closed', { code: CloseCodes.NORMAL, reason: 'client closed' });
  }

  async _open() {
    const gen = this._gen;
    this._setState('connecting', { attempt: this._attempt });
    let token;
    try {
      token = await this.opts.getToken({ reason: 'connect' });
    } catch (err) {
      if (this._stopped || gen !== this._gen) return;
      this._scheduleReconnect(0, `token: ${err && err.message ? err.message : err}`);
      return;
    }
    if (this._stopped || gen !== this._gen) return;
    let ws;
    try {
      ws = new WebSocket(this.opts.url, [SUBPROTOCOL, BEARER_PREFIX + token]);
    } catch (err) {
      this._scheduleReconnect(0, `websocket: ${err && err.message ? err.message : err}`);
      return;
    }
    this._ws = ws;
    let welcomed = false;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._setState('authenticating');
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        console.error('firegate: bad frame', err);
        return;
      }
      this._emit('frame', 'in', msg);
      if (msg.type === 'welcome' && !welcomed) {
        welcomed = true;
        this._onFirstWelcome(msg);
        return;
      }
      this._handle(msg);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {
      // A close event always follows; nothing to do here.
    };
  }

  _onFirstWelcome(msg) {
    const previous = this.welcome;
    this.welcome = msg;
    this._attempt = 0;
    this._setState('ready', { user_id: msg.user_id, org_id: msg.org_id });
    this._emit('welcome', msg, previous);
    this._resolveWelcomeWaiters(msg);
    this._startPing();
    for (const sub of [...this._subs.values()]) this._sendSubscribe(sub, true);
  }

  _onClose(code, reason) {
    this._stopTimers();
    for (const sub of this._subs.values()) {
      sub.sent = false;
      sub._chunks = null;
    }
    this._rejectWelcomeWaiters(new Error(`connection closed (${code} ${reason || ''})`));
    if (this._stopped) return;
    if (FATAL_CLOSE_CODES.has(code)) {
      this._stopped = true;
      this._emit('close', { code, reason, willReconnect: false });
      this._setState('closed', { code, reason });
      return;
    }
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    const cap = Math.min(this.opts.maxBackoffMs, this.opts.minBackoffMs * 2 ** this._attempt);
    const delayMs = Math.max(this.opts.minBackoffMs / 2, Math.random() * cap);
    this._attempt = Math.min(this._attempt + 1, 30);
    this._emit('close', { code, reason, willReconnect: true, delayMs });
    this._setState('waiting', { code, reason, delayMs });
    clearTimeout(this._reconnectTimer);
    const gen = this._gen;
    this._reconnectTimer = setTimeout(() => {
      if (!this._stopped && gen === this._gen) this._open();
    }, delayMs);
  }

  _send(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const logged = msg.type === 'auth' ? { ...msg, token: redactToken(msg.token) } : msg;
    this._emit('frame', 'out', logged);
    ws.send(JSON.stringify(msg));
    return true;
  }

  _startPing() {
    this._stopTimers();
    if (!this.opts.pingIntervalMs) return;
    this._pingTimer = setInterval(() => {
      if (this._pongTimer) return; // still waiting for the previous pong
      const id = `p${this._nextPing++}`;
      if (!this._send({ type: 'ping', id })) return;
      this._pongTimer = setTimeout(() => {
        this._pongTimer = null;
        const ws = this._ws;
        if (ws) ws.close(CLOSE_PONG_TIMEOUT, 'pong timeout');
        // Some browsers deliver the close event late after a dead network:
        // act now.
        this._ws = null;
        this._onClose(CLOSE_PONG_TIMEOUT, 'pong timeout');
      }, this.opts.pongTimeoutMs);
    }, this.opts.pingIntervalMs);
  }

  _stopTimers() {
    clearInterval(this._pingTimer);
    clearTimeout(this._pongTimer);
    this._pingTimer = null;
    this._pongTimer = null;
  }

  /**
   * Sends an in-band auth refresh with token (or one from getToken when
   * token is omitted). Resolves with the welcome that acknowledges it;
   * rejects when the connection closes first or after 10 s.
   */
  async refreshAuth(token) {
    if (token === undefined) token = await this.opts.getToken({ reason: 'refresh' });
    if (this.state !== 'ready') throw new Error('not connected');
    const p = new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      waiter.timer = setTimeout(() => {
        this._welcomeWaiters = this._welcomeWaiters.filter((w) => w !== waiter);
        reject(new Error('no welcome within 10s'));
      }, 10000);
      this._welcomeWaiters.push(waiter);
    });
    if (!this._send({ type: 'auth', token })) {
      this._rejectWelcomeWaiters(new Error('not connected'));
    }
    return p;
  }

  _resolveWelcomeWaiters(msg) {
    const ws = this._welcomeWaiters;
    this._welcomeWaiters = [];
    for (const w of ws) {
      clearTimeout(w.timer);
      w.resolve(msg);
    }
  }

  _rejectWelcomeWaiters(err) {
    const ws = this._welcomeWaiters;
    this._welcomeWaiters = [];
    for (const w of ws) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /**
   * Subscribes to spec = {collection, where?, order_by?, limit?}. The
   * subscription is (re)sent whenever the connection is ready.
   */
  subscribe(spec, handlers) {
    if (!spec || typeof spec.collection !== 'string' || spec.collection === '') {
      throw new TypeError('subscribe: spec.collection is required');
    }
    const sub = new Subscription(this, spec, handlers);
    sub.id = `s${this._nextSub++}`;
    this._subs.set(sub.id, sub);
    if (this.state === 'ready') this._sendSubscribe(sub, false);
    return sub;
  }

  /** Returns the active subscriptions. */
  subscriptions() {
    return [...this._subs.values()];
  }

  _sendSubscribe(sub, allowResume) {
    const msg = { type: 'subscribe', id: sub.id, collection: sub.spec.collection };
    if (sub.spec.where && sub.spec.where.length) msg.where = sub.spec.where;
    if (sub.spec.order_by && sub.spec.order_by.length) msg.order_by = sub.spec.order_by;
    if (sub.spec.limit) msg.limit = sub.spec.limit;
    if (allowResume && sub.epoch && sub.hasSeq) msg.resume = { epoch: sub.epoch, seq: sub.seq };
    sub._chunks = null;
    sub.sent = this._send(msg);
  }

  _dropSubscription(sub, tellServer) {
    if (this._subs.get(sub.id) !== sub) return;
    this._subs.delete(sub.id);
    if (tellServer && sub.sent) this._send({ type: 'unsubscribe', id: sub.id });
    sub.sent = false;
  }

  _handle(msg) {
    switch (msg.type) {
      case 'welcome': {
        // A refresh was acknowledged.
        const previous = this.welcome;
        this.welcome = msg;
        this._emit('welcome', msg, previous);
        this._resolveWelcomeWaiters(msg);
        return;
      }
      case 'subscribed': {
        const sub = this._subs.get(msg.id);
        if (!sub) return;
        sub.epoch = msg.epoch || '';
        sub.retries = 0;
        sub._call('onSubscribed', msg, sub);
        return;
      }
      case 'snapshot': {
        const sub = this._subs.get(msg.sub);
        if (!sub) return;
        if (!sub._chunks) sub._chunks = new Map();
        for (const d of msg.docs || []) sub._chunks.set(d.id, d);
        if (!msg.final) return;
        sub.docs = sub._chunks;
        sub._chunks = null;
        sub.seq = msg.seq || 0;
        sub.hasSeq = true;
        sub._call('onSnapshot', [...sub.docs.values()], sub);
        return;
      }
      case 'changes': {
        const sub = this._subs.get(msg.sub);
        if (!sub) return;
        const changes = msg.changes || [];
        for (const c of changes) {
          if (c.kind === 'removed') {
            sub.docs.delete(c.id);
          } else {
            sub.docs.set(c.id, { id: c.id, path: c.path, data: c.data, update_time: c.update_time });
          }
        }
        sub.seq = msg.seq || 0;
        sub.hasSeq = true;
        sub._call('onChanges', changes, sub, msg);
        return;
      }
      case 'unsubscribed': {
        const sub = this._subs.get(msg.sub);
        if (!sub) return;
        this._subs.delete(sub.id);
        sub.sent = false;
        sub.docs = new Map();
        sub.epoch = '';
        sub.seq = 0;
        sub.hasSeq = false;
        sub._chunks = null;
        const resubscribe =
          msg.reason === 'org_changed' && this.opts.resubscribeOnOrgChange && sub.active;
        sub._call('onEnd', msg.reason, msg.message || '', { resubscribing: resubscribe, frame: msg });
        if (resubscribe) {
          sub.id = `s${this._nextSub++}`;
          this._subs.set(sub.id, sub);
          this._sendSubscribe(sub, false);
        } else {
          sub.active = false;
        }
        return;
      }
      case 'error': {
        const sub = msg.id ? this._subs.get(msg.id) : undefined;
        if (!sub) {
          this._emit('error', msg);
          return;
        }
        if (RETRYABLE_CODES.has(msg.code) && sub.retries < this.opts.maxSubscribeRetries) {
          sub.retries++;
          sub.sent = false;
          const delay = msg.retry_after_ms > 0 ? msg.retry_after_ms : 1000 * sub.retries;
          clearTimeout(sub._retryTimer);
          sub._retryTimer = setTimeout(() => {
            if (sub.active && this._subs.get(sub.id) === sub && this.state === 'ready') {
              this._sendSubscribe(sub, true);
            }
          }, delay);
          sub._call('onError', msg, sub, { retrying: true, delayMs: delay });
          return;
        }
        this._subs.delete(sub.id);
        sub.active = false;
        sub.sent = false;
        sub._call('onError', msg, sub, { retrying: false });
        return;
      }
      case 'auth_expiring': {
        this._emit('auth_expiring', msg);
        this.refreshAuth().catch((err) => {
          this._emit('error', { type: 'error', code: 'unauthorized', message: `refresh failed: ${err.message}` });
        });
        return;
      }
      case 'pong': {
        clearTimeout(this._pongTimer);
        this._pongTimer = null;
        return;
      }
      default:
        // Unknown types are ignored (forward compatibility).
    }
  }
}
