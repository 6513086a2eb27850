// Tests of firegate.js with node's built-in runner (node --test), against a
// scripted in-memory WebSocket. Not embedded in the binary; run by
// web/js_test.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';

class MockWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  static all = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = MockWebSocket.CONNECTING;
    this.sent = [];
    this.closedWith = null;
    MockWebSocket.all.push(this);
  }

  send(data) {
    assert.equal(this.readyState, MockWebSocket.OPEN, 'send on a socket that is not open');
    this.sent.push(JSON.parse(data));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = MockWebSocket.CLOSED;
    setTimeout(() => this.onclose && this.onclose({ code, reason }), 0);
  }

  // --- server side
  accept() {
    this.readyState = MockWebSocket.OPEN;
    this.onopen && this.onopen();
  }

  push(msg) {
    this.onmessage && this.onmessage({ data: JSON.stringify(msg) });
  }

  drop(code, reason = '') {
    this.readyState = MockWebSocket.CLOSED;
    this.onclose && this.onclose({ code, reason });
  }

  lastSent(type) {
    return [...this.sent].reverse().find((m) => m.type === type);
  }
}
globalThis.WebSocket = MockWebSocket;

const { FiregateClient, redactToken } = await import('./firegate.js');

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

async function until(what, cond, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick(1);
  }
}

// newClient returns a client whose tokens are t1, t2, ... and the reasons
// getToken was called with.
function newClient(extra = {}) {
  MockWebSocket.all = [];
  const calls = [];
  let n = 0;
  const client = new FiregateClient({
    url: 'ws://127.0.0.1:8080/v1/stream',
    getToken: async ({ reason }) => {
      calls.push(reason);
      n++;
      return `t${n}`;
    },
    minBackoffMs: 1,
    maxBackoffMs: 4,
    pingIntervalMs: 0,
    ...extra,
  });
  return { client, calls };
}

async function connected(client, welcome = { user_id: 'user_alice', org_id: 'org_acme' }) {
  const before = MockWebSocket.all.length;
  client.connect();
  await until('a socket', () => MockWebSocket.all.length > before);
  const ws = MockWebSocket.all[MockWebSocket.all.length - 1];
  ws.accept();
  ws.push({ type: 'welcome', session_id: 'sess_1', expires_at: '2030-01-01T00:00:00Z', ...welcome });
  return ws;
}

function recorder() {
  const ev = { snapshots: [], changes: [], ends: [], errors: [], subscribed: [] };
  const handlers = {
    onSubscribed: (m) => ev.subscribed.push(m),
    onSnapshot: (docs, sub) => ev.snapshots.push({ docs, seq: sub.seq }),
    onChanges: (changes, sub) => ev.changes.push({ changes, seq: sub.seq }),
    onEnd: (reason, message, info) => ev.ends.push({ reason, message, info }),
    onError: (frame, sub, info) => ev.errors.push({ frame, info }),
  };
  return { ev, handlers };
}

const doc = (id, data) => ({ id, path: `tasks/${id}`, data, update_time: '2026-01-01T00:00:00Z' });

test('token in the subprotocol list; subscribe waits for welcome', async () => {
  const { client, calls } = newClient();
  const states = [];
  client.on('state', (s) => states.push(s));
  const { handlers } = recorder();
  const sub = client.subscribe({ collection: 'tasks', where: [{ field: 'status', op: '==', value: 'open' }] }, handlers);
  client.connect();
  await until('a socket', () => MockWebSocket.all.length === 1);
  const ws = MockWebSocket.all[0];
  assert.deepEqual(calls, ['connect']);
  assert.equal(ws.url, 'ws://127.0.0.1:8080/v1/stream');
  assert.deepEqual(ws.protocols, ['firegate.v1', 'bearer.t1']);
  ws.accept();
  assert.equal(ws.sent.length, 0, 'nothing is sent before welcome');
  ws.push({ type: 'welcome', user_id: 'u', session_id: 's', expires_at: '2030-01-01T00:00:00Z' });
  assert.equal(client.state, 'ready');
  assert.deepEqual(ws.sent, [{ type: 'subscribe', id: sub.id, collection: 'tasks', where: [{ field: 'status', op: '==', value: 'open' }] }]);
  assert.deepEqual(states, ['connecting', 'authenticating', 'ready']);
  client.close();
  assert.equal(client.state, 'closed');
  assert.equal(ws.closedWith.code, 1000);
});

test('chunked snapshot, then changes, keep the document map and seq', async () => {
  const { client } = newClient();
  const ws = await connected(client);
  const { ev, handlers } = recorder();
  const sub = client.subscribe({ collection: 'tasks', order_by: [{ field: 'created_at', direction: 'desc' }], limit: 10 }, handlers);
  assert.deepEqual(ws.lastSent('subscribe'), {
    type: 'subscribe', id: sub.id, collection: 'tasks', order_by: [{ field: 'created_at', direction: 'desc' }], limit: 10,
  });
  ws.push({ type: 'subscribed', id: sub.id, epoch: 'e1', resumed: false });
  ws.push({ type: 'snapshot', sub: sub.id, seq: 7, docs: [doc('a', { n: 1 }), doc('b', { n: 2 })], final: false });
  assert.equal(ev.snapshots.length, 0, 'no snapshot before the final chunk');
  ws.push({ type: 'snapshot', sub: sub.id, seq: 7, docs: [doc('c', { n: 3 })], final: true });
  assert.equal(ev.snapshots.length, 1);
  assert.deepEqual(ev.snapshots[0].docs.map((d) => d.id), ['a', 'b', 'c']);
  assert.equal(sub.seq, 7);
  assert.equal(sub.epoch, 'e1');

  ws.push({
    type: 'changes', sub: sub.id, seq: 8, read_time: '2026-01-01T00:00:01Z', changes: [
      { kind: 'added', id: 'd', path: 'tasks/d', data: { n: 4 }, update_time: 'x' },
      { kind: 'modified', id: 'a', path: 'tasks/a', data: { n: 10 }, update_time: 'y' },
      { kind: 'removed', id: 'b', path: 'tasks/b' },
    ],
  });
  assert.equal(sub.seq, 8);
  assert.deepEqual([...sub.docs.keys()].sort(), ['a', 'c', 'd']);
  assert.deepEqual(sub.docs.get('a').data, { n: 10 });
  assert.equal(ev.changes.length, 1);
  assert.equal(ev.changes[0].changes.length, 3);
  // Frames for unknown subscriptions are ignored.
  ws.push({ type: 'changes', sub: 'nope', seq: 1, changes: [{ kind: 'removed', id: 'a', path: 'tasks/a' }] });
  assert.ok(sub.docs.has('a'));
  client.close();
});

test('reconnect with backoff and a fresh token resumes from {epoch, seq}', async () => {
  const { client, calls } = newClient();
  const ws1 = await connected(client);
  const { ev, handlers } = recorder();
  const closes = [];
  client.on('close', (c) => closes.push(c));
  const sub = client.subscribe({ collection: 'tasks' }, handlers);
  ws1.push({ type: 'subscribed', id: sub.id, epoch: 'e1', resumed: false });
  ws1.push({ type: 'snapshot', sub: sub.id, seq: 3, docs: [doc('a', { n: 1 }), doc('b', { n: 2 })], final: true });
  // A snapshot cut off by the disconnect is discarded.
  ws1.push({ type: 'snapshot', sub: sub.id, seq: 4, docs: [doc('zz', {})], final: false });
  ws1.drop(1012, 'server restarting');
  assert.equal(client.state, 'waiting');
  assert.equal(closes[0].code, 1012);
  assert.equal(closes[0].willReconnect, true);

  await until('a second socket', () => MockWebSocket.all.length === 2);
  const ws2 = MockWebSocket.all[1];
  assert.deepEqual(ws2.protocols, ['firegate.v1', 'bearer.t2']);
  assert.deepEqual(calls, ['connect', 'connect']);
  ws2.accept();
  ws2.push({ type: 'welcome', user_id: 'user_alice', org_id: 'org_acme', session_id: 's', expires_at: 'x' });
  assert.deepEqual(ws2.lastSent('subscribe'), { type: 'subscribe', id: sub.id, collection: 'tasks', resume: { epoch: 'e1', seq: 3 } });
  ws2.push({ type: 'subscribed', id: sub.id, epoch: 'e1', resumed: true });
  ws2.push({ type: 'changes', sub: sub.id, seq: 5, changes: [{ kind: 'removed', id: 'a', path: 'tasks/a' }] });
  assert.deepEqual([...sub.docs.keys()], ['b']);
  assert.equal(sub.seq, 5);
  assert.equal(ev.snapshots.length, 1);
  client.close();
});

test('4001 (expired token) reconnects; 1008 and 1009 do not', async () => {
  for (const [code, reconnect] of [[4001, true], [4009, true], [1008, false], [1009, false]]) {
    const { client } = newClient();
    const ws = await connected(client);
    ws.drop(code, 'bye');
    if (reconnect) {
      await until(`a reconnect after ${code}`, () => MockWebSocket.all.length === 2);
    } else {
      await tick(20);
      assert.equal(MockWebSocket.all.length, 1, `no reconnect after ${code}`);
      assert.equal(client.state, 'closed');
    }
    client.close();
  }
});

test('auth_expiring fetches a token and refreshes in-band; tokens are redacted in frame events', async () => {
  const { client, calls } = newClient();
  const frames = [];
  client.on('frame', (dir, f) => frames.push([dir, f]));
  const welcomes = [];
  client.on('welcome', (w, prev) => welcomes.push([w, prev]));
  const ws = await connected(client);
  ws.push({ type: 'auth_expiring', expires_at: '2030-01-01T00:00:00Z' });
  await until('an auth frame', () => ws.lastSent('auth'));
  assert.deepEqual(calls, ['connect', 'refresh']);
  assert.deepEqual(ws.lastSent('auth'), { type: 'auth', token: 't2' });
  const out = frames.find(([dir, f]) => dir === 'out' && f.type === 'auth')[1];
  assert.notEqual(out.token, 't2');
  assert.equal(out.token, redactToken('t2'));
  ws.push({ type: 'welcome', user_id: 'user_alice', org_id: 'org_acme', session_id: 's', expires_at: '2030-01-01T00:01:00Z' });
  assert.equal(welcomes.length, 2);
  assert.equal(welcomes[1][1].expires_at, '2030-01-01T00:00:00Z');
  client.close();
});

test('org switch: refreshAuth resolves with the welcome; org_changed resubscribes fresh', async () => {
  const { client } = newClient();
  const ws = await connected(client);
  const { ev, handlers } = recorder();
  const sub = client.subscribe({ collection: 'tasks' }, handlers);
  const firstID = sub.id;
  ws.push({ type: 'subscribed', id: sub.id, epoch: 'e1', resumed: false });
  ws.push({ type: 'snapshot', sub: sub.id, seq: 2, docs: [doc('a', {})], final: true });

  const done = client.refreshAuth('tok-globex');
  assert.deepEqual(ws.lastSent('auth'), { type: 'auth', token: 'tok-globex' });
  ws.push({ type: 'unsubscribed', sub: firstID, reason: 'org_changed' });
  ws.push({ type: 'welcome', user_id: 'user_alice', org_id: 'org_globex', session_id: 's', expires_at: 'x' });
  const w = await done;
  assert.equal(w.org_id, 'org_globex');

  assert.equal(ev.ends.length, 1);
  assert.equal(ev.ends[0].reason, 'org_changed');
  assert.equal(ev.ends[0].info.resubscribing, true);
  assert.notEqual(sub.id, firstID);
  assert.equal(sub.docs.size, 0);
  assert.deepEqual(ws.lastSent('subscribe'), { type: 'subscribe', id: sub.id, collection: 'tasks' });
  assert.ok(sub.active);
  // A refresh on a closed connection rejects.
  client.close();
  await assert.rejects(client.refreshAuth('x'));
});

test('refused subscriptions: rate_limited retries after retry_after_ms, forbidden ends', async () => {
  const { client } = newClient();
  const ws = await connected(client);
  const { ev, handlers } = recorder();
  const sub = client.subscribe({ collection: 'tasks' }, handlers);
  ws.push({ type: 'error', id: sub.id, code: 'rate_limited', message: 'slow down', retry_after_ms: 5 });
  assert.equal(ev.errors[0].info.retrying, true);
  await until('a retried subscribe', () => ws.sent.filter((m) => m.type === 'subscribe').length === 2);

  const sub2 = client.subscribe({ collection: 'invoices' }, recorder().handlers);
  ws.push({ type: 'error', id: sub2.id, code: 'forbidden', message: 'not allowed' });
  assert.equal(sub2.active, false);
  assert.deepEqual(client.subscriptions().map((s) => s.id), [sub.id]);
  await tick(10);
  assert.equal(ws.sent.filter((m) => m.type === 'subscribe' && m.collection === 'invoices').length, 1);

  // unsubscribed (forbidden) ends without a resubscribe.
  ws.push({ type: 'unsubscribed', sub: sub.id, reason: 'forbidden' });
  assert.equal(sub.active, false);
  assert.equal(ev.ends[0].info.resubscribing, false);
  client.close();
});

test('unsubscribe tells the server and ignores later frames', async () => {
  const { client } = newClient();
  const ws = await connected(client);
  const { ev, handlers } = recorder();
  const sub = client.subscribe({ collection: 'notes' }, handlers);
  sub.unsubscribe();
  assert.deepEqual(ws.lastSent('unsubscribe'), { type: 'unsubscribe', id: sub.id });
  ws.push({ type: 'snapshot', sub: sub.id, seq: 1, docs: [doc('a', {})], final: true });
  assert.equal(ev.snapshots.length, 0);
  assert.equal(client.subscriptions().length, 0);
  client.close();
});

test('a missing pong closes and reconnects', async () => {
  const { client } = newClient({ pingIntervalMs: 5, pongTimeoutMs: 10 });
  const ws = await connected(client);
  await until('a ping', () => ws.lastSent('ping'));
  // Answer the first ping, then go silent.
  ws.push({ type: 'pong', id: ws.lastSent('ping').id });
  await until('a reconnect', () => MockWebSocket.all.length === 2, 3000);
  assert.equal(ws.closedWith.code, 4000);
  client.close();
});

test('getToken failures back off and retry', async () => {
  MockWebSocket.all = [];
  let n = 0;
  const client = new FiregateClient({
    url: 'ws://x/v1/stream',
    getToken: async () => {
      n++;
      if (n < 3) throw new Error('issuer down');
      return 'ok';
    },
    minBackoffMs: 1,
    maxBackoffMs: 2,
    pingIntervalMs: 0,
  });
  client.connect();
  await until('a socket after two failures', () => MockWebSocket.all.length === 1);
  assert.equal(n, 3);
  assert.deepEqual(MockWebSocket.all[0].protocols, ['firegate.v1', 'bearer.ok']);
  client.close();
});

test('constructor checks', () => {
  assert.throws(() => new FiregateClient({}), /getToken/);
  const { client } = newClient();
  assert.throws(() => client.subscribe({}), /collection/);
});
