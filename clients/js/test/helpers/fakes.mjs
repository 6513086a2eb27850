// Test doubles for unit tests: a scripted WebSocket and a manual clock.

/** A WebSocket whose server side the test drives. */
export class FakeWS {
  static instances = [];
  static reset() {
    FakeWS.instances = [];
  }
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeWS.instances.push(this);
  }
  send(s) {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(s));
  }
  close(code, reason) {
    this.readyState = 3;
    this.closedWith = { code, reason };
  }
  // server side
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  push(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  serverClose(code, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  welcome(user = 'user_a', org = 'org_a') {
    const w = { type: 'welcome', user_id: user, session_id: 'sess_1', expires_at: '2030-01-01T00:00:00Z' };
    if (org) w.org_id = org;
    this.push(w);
  }
  sentOf(type) {
    return this.sent.filter((f) => f.type === type);
  }
}

/** A manual clock: timers run only when advance() passes their due time. */
export class Clock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.next = 1;
  }
  setTimeout = (fn, ms) => {
    const id = this.next++;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  };
  clearTimeout = (id) => {
    this.timers.delete(id);
  };
  /** Due times of pending timers, ascending. */
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let best = null;
      for (const [id, t] of this.timers) if (t.at <= end && (!best || t.at < best[1].at)) best = [id, t];
      if (!best) break;
      this.timers.delete(best[0]);
      this.now = best[1].at;
      best[1].fn();
      await flush();
    }
    this.now = end;
    await flush();
  }
}

/** Lets pending promise callbacks run. */
export function flush() {
  return new Promise((r) => setImmediate(r));
}

/** Waits until cond() is truthy (re-checked every macrotask) or fails after ms. */
export async function until(cond, what, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
