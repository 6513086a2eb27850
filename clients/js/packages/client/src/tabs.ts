// One socket for all tabs of an origin. The tab holding the Web Lock
// `firegate:<url>` is the leader: it owns the Connection and multiplexes
// the other tabs' frames over it, prefixing their request ids with the tab
// id (`<tab>~<id>`) and routing answers back by that prefix over a
// BroadcastChannel. Every tab keeps its own cache and subscriptions; only
// the socket is shared. When the leader tab goes away its lock is released,
// the next tab takes over, opens a socket and every tab resubscribes with
// resume.
import {
  Connection,
  type ConnectionHandler,
  type ConnectionOptions,
  type ConnectionState,
  type DownInfo,
} from './connection.js';
import type { ClientFrame, ServerFrame, WelcomeFrame } from './protocol.js';

interface LockManagerLike {
  request(name: string, cb: () => Promise<void>): Promise<void>;
}

/** Whether this environment can share a socket among tabs. */
export function tabsSupported(): boolean {
  const nav = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator;
  return typeof BroadcastChannel === 'function' && !!nav?.locks && typeof (globalThis as { document?: unknown }).document === 'object';
}

type Msg =
  | { t: 'hello'; from: string }
  | { t: 'bye'; from: string }
  | { t: 'send'; from: string; frame: ClientFrame }
  | { t: 'auth'; from: string; token: string }
  | { t: 'nudge'; from: string }
  | { t: 'state'; to: string; state: ConnectionState; detail?: DownInfo; welcome: WelcomeFrame | null }
  | { t: 'ready'; to: string; welcome: WelcomeFrame }
  | { t: 'refreshed'; to: string; welcome: WelcomeFrame; previous: WelcomeFrame }
  | { t: 'frame'; to: string; frame: ServerFrame }
  | { t: 'signedOut'; to: string };

const SEP = '~';

function randomId(): string {
  return Math.random().toString(36).slice(2, 10);
}

export class TabLink {
  state: ConnectionState = 'idle';
  welcome: WelcomeFrame | null = null;
  readonly tabId = randomId();
  readonly #o: ConnectionOptions;
  readonly #h: ConnectionHandler;
  readonly #ch: BroadcastChannel;
  #conn: Connection | null = null; // set while leader
  #releaseLock: (() => void) | null = null;
  #started = false;
  #stopped = false;
  /** Leader only: live request ids (prefixed) per tab, to unsubscribe a tab that leaves. */
  readonly #tabSubs = new Map<string, Set<string>>();

  readonly #group: string;

  /** group: the tabs that may share a socket (the user id: never share one across users). */
  constructor(opts: ConnectionOptions, handler: ConnectionHandler, group: string) {
    this.#o = opts;
    this.#h = handler;
    this.#group = `firegate:${opts.url}|${group}`;
    this.#ch = new BroadcastChannel(this.#group);
    this.#ch.onmessage = (ev: MessageEvent<Msg>) => this.#onMessage(ev.data);
    const g = globalThis as { addEventListener?: (t: string, fn: () => void) => void };
    g.addEventListener?.('pagehide', () => {
      if (!this.isLeader) this.#post({ t: 'bye', from: this.tabId });
    });
  }

  get isLeader(): boolean {
    return this.#conn !== null;
  }

  start(): void {
    this.#stopped = false;
    if (this.#conn) {
      this.#conn.start();
      return;
    }
    if (this.#started) return;
    this.#started = true;
    this.#setState('connecting');
    this.#post({ t: 'hello', from: this.tabId });
    const locks = (globalThis as unknown as { navigator: { locks: LockManagerLike } }).navigator.locks;
    void locks.request(this.#group, () => this.#lead());
  }

  #lead(): Promise<void> {
    return new Promise<void>((release) => {
      this.#releaseLock = release;
      if (this.#stopped) {
        release();
        this.#started = false;
        return;
      }
      const route = this.#router();
      this.#conn = new Connection(this.#o, route);
      this.#conn.start();
    });
  }

  /** The leader's handler: its own tab gets events directly, others through the channel. */
  #router(): ConnectionHandler {
    return {
      state: (s, d) => {
        this.#setState(s, d);
        this.#post({ t: 'state', to: '*', state: s, ...(d ? { detail: d } : {}), welcome: this.#conn?.welcome ?? null });
      },
      ready: (w) => {
        this.welcome = w;
        this.#tabSubs.clear();
        this.#h.ready(w);
        this.#post({ t: 'ready', to: '*', welcome: w });
      },
      refreshed: (w, prev) => {
        this.welcome = w;
        this.#h.refreshed(w, prev);
        this.#post({ t: 'refreshed', to: '*', welcome: w, previous: prev });
      },
      frame: (f) => this.#route(f),
      down: (info) => this.#h.down(info),
      signedOut: () => {
        this.welcome = null;
        this.#h.signedOut();
        this.#post({ t: 'signedOut', to: '*' });
      },
    };
  }

  #route(f: ServerFrame): void {
    const ref = 'sub' in f ? f.sub : 'id' in f ? f.id : undefined;
    if (typeof ref === 'string' && ref.includes(SEP)) {
      const i = ref.indexOf(SEP);
      const tab = ref.slice(0, i);
      const local = ref.slice(i + 1);
      const routed = ('sub' in f ? { ...f, sub: local } : { ...f, id: local }) as ServerFrame;
      if (f.type === 'unsubscribed' || f.type === 'error' || f.type === 'written') this.#tabSubs.get(tab)?.delete(ref);
      if (tab === this.tabId) this.#h.frame(routed);
      else this.#post({ t: 'frame', to: tab, frame: routed });
      return;
    }
    this.#h.frame(f);
    this.#post({ t: 'frame', to: '*', frame: f });
  }

  /** Leader: forwards a tab's frame to the socket with its id prefixed. */
  #forward(from: string, frame: ClientFrame): boolean {
    if (!this.#conn) return false;
    if (frame.type === 'auth') return false; // the leader refreshes with its own token
    const id = `${from}${SEP}${frame.id}`;
    if (frame.type === 'subscribe' || frame.type === 'write') {
      let set = this.#tabSubs.get(from);
      if (!set) this.#tabSubs.set(from, (set = new Set()));
      set.add(id);
    } else if (frame.type === 'unsubscribe') {
      this.#tabSubs.get(from)?.delete(id);
    }
    return this.#conn.send({ ...frame, id });
  }

  #onMessage(m: Msg): void {
    if (this.#conn) {
      // leader
      switch (m.t) {
        case 'hello':
          this.#post({ t: 'state', to: m.from, state: this.#conn.state, welcome: this.#conn.welcome });
          if (this.#conn.state === 'ready' && this.#conn.welcome) this.#post({ t: 'ready', to: m.from, welcome: this.#conn.welcome });
          return;
        case 'send':
          this.#forward(m.from, m.frame);
          return;
        case 'auth':
          // A follower's refresh (an org switch there): tabs share one session, as with Clerk.
          this.#conn.send({ type: 'auth', token: m.token });
          return;
        case 'nudge':
          this.#conn.nudge();
          return;
        case 'bye':
          for (const id of this.#tabSubs.get(m.from) ?? []) {
            if (!id.includes(SEP)) continue;
            this.#conn.send({ type: 'unsubscribe', id });
          }
          this.#tabSubs.delete(m.from);
          return;
        default:
          return;
      }
    }
    if (!('to' in m) || (m.to !== '*' && m.to !== this.tabId)) return;
    switch (m.t) {
      case 'state':
        this.welcome = m.welcome;
        if (m.state !== 'ready') this.#setState(m.state, m.detail);
        return;
      case 'ready': {
        this.welcome = m.welcome;
        this.#setState('ready');
        this.#h.ready(m.welcome);
        return;
      }
      case 'refreshed':
        this.welcome = m.welcome;
        this.#h.refreshed(m.welcome, m.previous);
        return;
      case 'frame':
        this.#h.frame(m.frame);
        return;
      case 'signedOut':
        this.welcome = null;
        this.#setState('signed_out');
        this.#h.signedOut();
        return;
      default:
        return;
    }
  }

  #setState(s: ConnectionState, d?: DownInfo): void {
    this.state = s;
    this.#h.state(s, d);
  }

  #post(m: Msg): void {
    try {
      this.#ch.postMessage(m);
    } catch {
      // channel closed
    }
  }

  send(frame: ClientFrame): boolean {
    if (this.#conn) {
      if (frame.type === 'auth' || frame.type === 'ping') return this.#conn.send(frame);
      return this.#forward(this.tabId, frame);
    }
    if (this.state !== 'ready') return false;
    this.#post({ t: 'send', from: this.tabId, frame });
    return true;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#conn) {
      this.#conn.stop();
      this.#conn = null;
      this.#releaseLock?.();
      this.#releaseLock = null;
      this.#started = false;
    } else {
      this.#post({ t: 'bye', from: this.tabId });
    }
    this.#setState('closed', { code: 1000, reason: 'client closed', willReconnect: false });
  }

  /** Stops and leaves the group for good (the link was replaced). */
  destroy(): void {
    this.stop();
    this.#ch.close();
  }

  nudge(): void {
    if (this.#conn) this.#conn.nudge();
    else this.#post({ t: 'nudge', from: this.tabId });
  }

  reconnect(): void {
    if (this.#conn) this.#conn.reconnect();
    else this.#post({ t: 'nudge', from: this.tabId });
  }

  refresh(): Promise<WelcomeFrame> {
    if (this.#conn) return this.#conn.refresh();
    void Promise.resolve(this.#o.getToken({ skipCache: true })).then(
      (token) => {
        if (token) this.#post({ t: 'auth', from: this.tabId, token });
      },
      () => undefined,
    );
    return new Promise<WelcomeFrame>((resolve) => {
      const prev = this.welcome;
      const check = (ev: MessageEvent<Msg>): void => {
        const m = ev.data;
        if ((m.t === 'refreshed' || m.t === 'ready') && (m.to === '*' || m.to === this.tabId) && m.welcome !== prev) {
          this.#ch.removeEventListener('message', check);
          resolve(m.welcome);
        }
      };
      this.#ch.addEventListener('message', check);
    });
  }
}
