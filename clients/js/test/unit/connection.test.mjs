// The connection state machine, including the three bugs of the old
// client: a null token sent as `bearer.null` and retried forever, errors
// with retry_after_ms never retried, and a TypeError without a url outside
// a browser.
import test from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, collection, createClient, doc, FINAL_CLOSE_CODES } from '../../packages/client/dist/esm/index.js';
import { Clock, FakeWS, flush } from '../helpers/fakes.mjs';

function setup(extra = {}) {
  FakeWS.reset();
  const clock = new Clock();
  const tokens = { value: 'token' in extra ? extra.token : 'tok1', calls: [] };
  delete extra.token;
  const client = createClient({
    url: 'ws://gw.test/v1/stream',
    WebSocket: FakeWS,
    timers: clock,
    random: () => 0.5,
    getToken: async (o) => {
      tokens.calls.push(o ?? {});
      return tokens.value;
    },
    ...extra,
  });
  return { client, clock, tokens };
}

async function connected(extra) {
  const env = setup(extra);
  await flush();
  const ws = FakeWS.instances.at(-1);
  ws.open();
  ws.welcome();
  await flush();
  return { ...env, ws };
}

test('bug 1: a null token (signed out) opens no socket, sends no bearer.null and does not retry', async () => {
  const { client, clock, tokens } = setup({ token: null });
  const states = [];
  client.on('state', (s) => states.push(s));
  await flush();
  assert.equal(FakeWS.instances.length, 0, 'no socket for a signed-out user');
  assert.equal(client.state, 'signed_out');
  assert.deepEqual(clock.pending(), [], 'no reconnect timer');
  await clock.advance(600_000);
  assert.equal(FakeWS.instances.length, 0, 'still no socket after ten minutes');
  assert.equal(tokens.calls.length, 1, 'getToken asked once, not in a loop');
  // The token changes (sign-in): a nudge (online, visible, setIdentity) connects.
  tokens.value = 'tok2';
  client.nudge();
  await flush();
  assert.equal(FakeWS.instances.length, 1);
  assert.deepEqual(FakeWS.instances[0].protocols, ['firegate.v1', 'bearer.tok2']);
  assert.ok(states.includes('signed_out') && states.at(-1) === 'connecting');
});

test('bug 1: signing out while connected closes the socket and clears the cache', async () => {
  const { client, ws, tokens } = await connected();
  const snaps = [];
  client.onSnapshot(collection('tasks'), (s) => snaps.push(s));
  const sub = ws.sentOf('subscribe')[0];
  ws.push({ type: 'subscribed', id: sub.id, epoch: 'e1', resumed: false });
  ws.push({ type: 'snapshot', sub: sub.id, seq: 3, final: true, docs: [{ id: 't1', path: 'tasks/t1', data: { a: 1 }, update_time: '2026-01-01T00:00:00Z' }] });
  assert.equal(snaps.at(-1).docs.length, 1);
  tokens.value = null;
  ws.push({ type: 'auth_expiring', expires_at: '2030-01-01T00:00:00Z' });
  await flush();
  assert.equal(client.state, 'signed_out');
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'signed out' });
  assert.equal(snaps.at(-1).docs.length, 0, 'documents of the signed-out user are gone');
  assert.equal(FakeWS.instances.length, 1, 'no new socket');
});

test('bug 2: a subscription error with retry_after_ms is retried after that long', async () => {
  const { client, clock, ws } = await connected();
  const snaps = [];
  client.onSnapshot(collection('tasks'), (s) => snaps.push(s));
  const first = ws.sentOf('subscribe')[0];
  ws.push({ type: 'error', id: first.id, code: 'limit_exceeded', message: 'too many feeds', retry_after_ms: 1500 });
  assert.equal(snaps.at(-1).status, 'loading');
  assert.equal(snaps.at(-1).error.code, 'limit_exceeded');
  await clock.advance(1499);
  assert.equal(ws.sentOf('subscribe').length, 1, 'not before retry_after_ms');
  await clock.advance(1);
  const subs = ws.sentOf('subscribe');
  assert.equal(subs.length, 2, 'retried at retry_after_ms');
  assert.equal(subs[1].collection, 'tasks');
  ws.push({ type: 'subscribed', id: subs[1].id, epoch: 'e1', resumed: false });
  ws.push({ type: 'snapshot', sub: subs[1].id, seq: 1, final: true, docs: [] });
  assert.equal(snaps.at(-1).status, 'ready');
  assert.equal(snaps.at(-1).error, null);
});

test('an error without retry_after_ms is final for the subscription', async () => {
  const { client, clock, ws } = await connected();
  const snaps = [];
  client.onSnapshot(collection('secrets'), (s) => snaps.push(s));
  ws.push({ type: 'error', id: ws.sentOf('subscribe')[0].id, code: 'forbidden', message: 'no' });
  assert.equal(snaps.at(-1).status, 'error');
  assert.equal(snaps.at(-1).error.code, 'forbidden');
  await clock.advance(60_000);
  assert.equal(ws.sentOf('subscribe').length, 1);
});

test('bug 3: without url outside a browser the error says what to pass, and a given url never reads location', () => {
  assert.throws(
    () => createClient({ getToken: () => 't', WebSocket: FakeWS }),
    (err) => err instanceof TypeError && /url.*required outside a browser/.test(err.message),
  );
  Object.defineProperty(globalThis, 'location', {
    configurable: true,
    get() {
      throw new Error('location was read');
    },
  });
  try {
    const c = createClient({ url: 'ws://x.test/v1/stream', getToken: () => null, WebSocket: FakeWS, autoConnect: false });
    c.dispose();
  } finally {
    delete globalThis.location;
  }
});

test('http(s) URLs are turned into ws(s)', async () => {
  FakeWS.reset();
  const c = createClient({ url: 'https://gw.test/v1/stream', getToken: () => 't', WebSocket: FakeWS });
  await flush();
  assert.equal(FakeWS.instances[0].url, 'wss://gw.test/v1/stream');
  c.dispose();
});

test('backoff is jittered, grows exponentially, and is capped', () => {
  assert.equal(backoffDelay(0, { minMs: 100, maxMs: 1000 }, () => 1), 100);
  assert.equal(backoffDelay(3, { minMs: 100, maxMs: 1000 }, () => 1), 800);
  assert.equal(backoffDelay(10, { minMs: 100, maxMs: 1000 }, () => 1), 1000);
  assert.equal(backoffDelay(10, { minMs: 100, maxMs: 1000 }, () => 0), 50, 'floor of half the minimum');
  assert.equal(backoffDelay(2, { minMs: 100, maxMs: 1000 }, () => 0.5), 200);
});

test('a dropped socket reconnects after the backoff and resumes every subscription with {epoch, seq}', async () => {
  const { client, clock, ws } = await connected({ backoff: { minMs: 1000, maxMs: 8000 } });
  const snaps = [];
  client.onSnapshot(collection('tasks').where('status', '==', 'open').limit(5), (s) => snaps.push(s));
  const sub = ws.sentOf('subscribe')[0];
  assert.deepEqual(sub.where, [{ field: 'status', op: '==', value: 'open' }]);
  assert.equal(sub.limit, 5);
  ws.push({ type: 'subscribed', id: sub.id, epoch: 'e7', resumed: false });
  ws.push({ type: 'snapshot', sub: sub.id, seq: 10, final: false, docs: [{ id: 'a', path: 'tasks/a', data: { status: 'open' }, update_time: '2026-01-01T00:00:01Z' }] });
  assert.equal(snaps.length, 0, 'no snapshot before the final chunk');
  ws.push({ type: 'snapshot', sub: sub.id, seq: 10, final: true, docs: [{ id: 'b', path: 'tasks/b', data: { status: 'open' }, update_time: '2026-01-01T00:00:02Z' }] });
  assert.deepEqual(snaps.at(-1).docs.map((d) => d.id), ['a', 'b']);
  ws.push({ type: 'changes', sub: sub.id, seq: 11, changes: [{ kind: 'removed', id: 'a', path: 'tasks/a' }] });
  assert.deepEqual(snaps.at(-1).docs.map((d) => d.id), ['b']);

  ws.serverClose(1006, '');
  assert.equal(client.state, 'waiting');
  assert.equal(snaps.at(-1).status, 'stale', 'stale while reconnecting');
  assert.deepEqual(clock.pending(), [500], 'jittered delay (random 0.5 of the 1000 ms cap)');
  await clock.advance(500);
  const ws2 = FakeWS.instances.at(-1);
  assert.notEqual(ws2, ws);
  ws2.open();
  ws2.welcome();
  await flush();
  const resub = ws2.sentOf('subscribe')[0];
  assert.deepEqual(resub.resume, { epoch: 'e7', seq: 11 });
  ws2.push({ type: 'subscribed', id: resub.id, epoch: 'e7', resumed: true });
  ws2.push({ type: 'changes', sub: resub.id, seq: 12, changes: [{ kind: 'added', id: 'c', path: 'tasks/c', data: { status: 'open' }, update_time: '2026-01-01T00:00:03Z' }] });
  assert.deepEqual(snaps.at(-1).docs.map((d) => d.id), ['b', 'c']);
  assert.equal(snaps.at(-1).status, 'ready');
});

test('a resume answered with another epoch starts over from the snapshot', async () => {
  const { client, clock, ws } = await connected();
  const snaps = [];
  client.onSnapshot(collection('tasks'), (s) => snaps.push(s));
  const sub = ws.sentOf('subscribe')[0];
  ws.push({ type: 'subscribed', id: sub.id, epoch: 'e1', resumed: false });
  ws.push({ type: 'snapshot', sub: sub.id, seq: 4, final: true, docs: [{ id: 'a', path: 'tasks/a', data: {}, update_time: '2026-01-01T00:00:01Z' }] });
  ws.serverClose(1012, 'restarting');
  await clock.advance(20_000);
  const ws2 = FakeWS.instances.at(-1);
  ws2.open();
  ws2.welcome();
  await flush();
  const resub = ws2.sentOf('subscribe')[0];
  assert.deepEqual(resub.resume, { epoch: 'e1', seq: 4 });
  ws2.push({ type: 'subscribed', id: resub.id, epoch: 'e2', resumed: false });
  ws2.push({ type: 'snapshot', sub: resub.id, seq: 1, final: true, docs: [{ id: 'z', path: 'tasks/z', data: {}, update_time: '2026-01-01T00:00:05Z' }] });
  assert.deepEqual(snaps.at(-1).docs.map((d) => d.id), ['z'], 'the old documents are replaced, not merged');
});

for (const code of [1008, 1009]) {
  test(`close ${code} is final: no reconnect`, async () => {
    assert.ok(FINAL_CLOSE_CODES.has(code));
    const { client, clock, ws } = await connected();
    const snaps = [];
    client.onSnapshot(collection('tasks'), (s) => snaps.push(s));
    ws.serverClose(code, 'nope');
    assert.equal(client.state, 'closed');
    await clock.advance(600_000);
    assert.equal(FakeWS.instances.length, 1);
    assert.equal(snaps.at(-1).status, 'error');
  });
}

for (const code of [1006, 1011, 1012, 4001, 4008, 4009]) {
  test(`close ${code} reconnects`, async () => {
    const { clock, ws, tokens } = await connected();
    ws.serverClose(code, '');
    await clock.advance(20_000);
    assert.equal(FakeWS.instances.length, 2);
    if (code === 4001) assert.deepEqual(tokens.calls.at(-1), { skipCache: true }, 'a refused token is not reused from a cache');
  });
}

test('auth_expiring refreshes in band with a fresh token and the welcome resolves refresh()', async () => {
  const { client, ws, tokens } = await connected();
  tokens.value = 'tok-fresh';
  ws.push({ type: 'auth_expiring', expires_at: '2030-01-01T00:00:00Z' });
  await flush();
  const auth = ws.sentOf('auth');
  assert.equal(auth.length, 1);
  assert.equal(auth[0].token, 'tok-fresh');
  assert.deepEqual(tokens.calls.at(-1), { skipCache: true });
  const p = client.refresh();
  await flush();
  ws.welcome('user_a', 'org_b');
  const w = await p;
  assert.equal(w.org_id, 'org_b');
  assert.equal(client.welcome.org_id, 'org_b');
});

test('org_changed resubscribes without resume and drops the old org documents', async () => {
  const { client, ws } = await connected();
  const snaps = [];
  client.onSnapshot(collection('tasks'), (s) => snaps.push(s));
  const sub = ws.sentOf('subscribe')[0];
  ws.push({ type: 'subscribed', id: sub.id, epoch: 'e1', resumed: false });
  ws.push({ type: 'snapshot', sub: sub.id, seq: 2, final: true, docs: [{ id: 'a1', path: 'tasks/a1', data: { org_id: 'org_a' }, update_time: '2026-01-01T00:00:01Z' }] });
  ws.push({ type: 'unsubscribed', sub: sub.id, reason: 'org_changed' });
  assert.equal(snaps.at(-1).docs.length, 0, 'nothing of the old org stays');
  assert.equal(snaps.at(-1).status, 'loading');
  const resub = ws.sentOf('subscribe')[1];
  assert.ok(resub && resub.id !== sub.id);
  assert.equal(resub.resume, undefined);
  ws.push({ type: 'subscribed', id: resub.id, epoch: 'e9', resumed: false });
  ws.push({ type: 'snapshot', sub: resub.id, seq: 1, final: true, docs: [{ id: 'b1', path: 'tasks/b1', data: { org_id: 'org_b' }, update_time: '2026-01-01T00:00:02Z' }] });
  assert.deepEqual(snaps.at(-1).docs.map((d) => d.data.org_id), ['org_b']);
});

test('a forbidden unsubscribe ends the subscription with an error status', async () => {
  const { client, ws } = await connected();
  const snaps = [];
  client.onSnapshot(doc('invoices/i1'), (s) => snaps.push(s));
  const sub = ws.sentOf('subscribe')[0];
  assert.equal(sub.doc, 'invoices/i1');
  assert.equal(sub.collection, undefined);
  ws.push({ type: 'unsubscribed', sub: sub.id, reason: 'forbidden', message: 'role changed' });
  assert.equal(snaps.at(-1).status, 'error');
  assert.equal(snaps.at(-1).error.code, 'forbidden');
});

test('a dead socket (no pong) is closed and reconnected', async () => {
  const { clock, ws } = await connected({ pingIntervalMs: 1000, pongTimeoutMs: 500 });
  await clock.advance(1000);
  assert.equal(ws.sentOf('ping').length, 1);
  await clock.advance(500);
  assert.equal(ws.closedWith.code, 4000);
  await clock.advance(20_000);
  assert.equal(FakeWS.instances.length, 2);
});

test('a pong keeps the socket', async () => {
  const { clock, ws } = await connected({ pingIntervalMs: 1000, pongTimeoutMs: 500 });
  await clock.advance(1000);
  ws.push({ type: 'pong', id: ws.sentOf('ping')[0].id });
  await clock.advance(499);
  assert.equal(ws.closedWith, null);
});

test('setIdentity with another user wipes the cache and reconnects with a fresh token', async () => {
  const { client, ws, tokens } = await connected({ userId: 'user_a', orgId: 'org_a' });
  const snaps = [];
  client.onSnapshot(collection('tasks'), (s) => snaps.push(s));
  const sub = ws.sentOf('subscribe')[0];
  ws.push({ type: 'subscribed', id: sub.id, epoch: 'e1', resumed: false });
  ws.push({ type: 'snapshot', sub: sub.id, seq: 2, final: true, docs: [{ id: 'a1', path: 'tasks/a1', data: {}, update_time: '2026-01-01T00:00:01Z' }] });
  tokens.value = 'tok-b';
  client.setIdentity({ userId: 'user_b', orgId: 'org_a' });
  await flush();
  assert.equal(snaps.at(-1).docs.length, 0);
  assert.equal(ws.closedWith.code, 1000);
  const ws2 = FakeWS.instances.at(-1);
  assert.deepEqual(ws2.protocols, ['firegate.v1', 'bearer.tok-b']);
  ws2.open();
  ws2.welcome('user_b', 'org_a');
  await flush();
  assert.equal(ws2.sentOf('subscribe')[0].resume, undefined, 'nothing of user_a is resumed');
});

test('setIdentity with another org refreshes in band', async () => {
  const { client, ws, tokens } = await connected({ userId: 'user_a', orgId: 'org_a' });
  tokens.value = 'tok-org-b';
  client.setIdentity({ userId: 'user_a', orgId: 'org_b' });
  await flush();
  assert.equal(ws.sentOf('auth')[0].token, 'tok-org-b');
  assert.equal(FakeWS.instances.length, 1, 'same socket');
});

test('onFrame never sees a whole token', async () => {
  const frames = [];
  const { ws, tokens } = await connected({ onFrame: (d, f) => frames.push(f) });
  tokens.value = 'eyJhbGciOiJSUzI1NiJ9.secret-part.signature';
  ws.push({ type: 'auth_expiring', expires_at: '2030-01-01T00:00:00Z' });
  await flush();
  const out = frames.find((f) => f.type === 'auth');
  assert.ok(out);
  assert.ok(!out.token.includes('secret-part'));
});
