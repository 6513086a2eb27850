// The shared store, views, docChanges, optimistic writes and persistence.
import test from 'node:test';
import assert from 'node:assert/strict';
import { IDBFactory } from 'fake-indexeddb';
import { collection, createClient, doc, increment, serverTimestamp, Timestamp } from '../../packages/client/dist/esm/index.js';
import { Clock, FakeWS, flush, until } from '../helpers/fakes.mjs';

const T = (s) => `2026-01-01T00:00:${String(s).padStart(2, '0')}Z`;

async function connected(extra = {}) {
  FakeWS.reset();
  const clock = new Clock();
  const client = createClient({ url: 'ws://gw.test/v1/stream', WebSocket: FakeWS, timers: clock, getToken: () => 'tok', ...extra });
  const ws = await until(() => FakeWS.instances.at(-1), 'a socket');
  ws.open();
  ws.welcome('user_a', 'org_a');
  await flush();
  return { client, clock, ws };
}

function answer(ws, sub, docs, seq = 1, epoch = 'e1') {
  ws.push({ type: 'subscribed', id: sub.id, epoch, resumed: false });
  ws.push({ type: 'snapshot', sub: sub.id, seq, final: true, docs });
}

test('snapshots are immutable and docChanges describes each step', async () => {
  const { client, ws } = await connected();
  const snaps = [];
  client.onSnapshot(collection('tasks').orderBy('n'), (s) => snaps.push(s));
  const sub = ws.sentOf('subscribe')[0];
  answer(ws, sub, [
    { id: 'b', path: 'tasks/b', data: { n: 2 }, update_time: T(1) },
    { id: 'a', path: 'tasks/a', data: { n: 1 }, update_time: T(1) },
  ]);
  const s1 = snaps.at(-1);
  assert.deepEqual(s1.docs.map((d) => d.id), ['a', 'b'], 'ordered by n');
  assert.deepEqual(s1.docChanges().map((c) => [c.type, c.doc.id, c.newIndex]), [['added', 'a', 0], ['added', 'b', 1]]);
  assert.ok(Object.isFrozen(s1) && Object.isFrozen(s1.docs) && Object.isFrozen(s1.docs[0]) && Object.isFrozen(s1.docs[0].data));
  assert.throws(() => s1.docs.push({}), TypeError);
  ws.push({ type: 'changes', sub: sub.id, seq: 2, changes: [
    { kind: 'modified', id: 'a', path: 'tasks/a', data: { n: 3 }, update_time: T(2) },
    { kind: 'removed', id: 'b', path: 'tasks/b' },
    { kind: 'added', id: 'c', path: 'tasks/c', data: { n: 0 }, update_time: T(2) },
  ] });
  const s2 = snaps.at(-1);
  assert.deepEqual(s2.docs.map((d) => d.id), ['c', 'a']);
  assert.deepEqual(
    s2.docChanges().map((c) => [c.type, c.doc.id, c.oldIndex, c.newIndex]),
    [['removed', 'b', 1, -1], ['added', 'c', -1, 0], ['modified', 'a', 0, 1]],
  );
  assert.deepEqual(s1.docs.map((d) => d.id), ['a', 'b'], 'an earlier snapshot never changes');
  assert.equal(s1.docs[0].data.n, 1);
});

test('overlapping subscriptions share one document store and equal queries share one subscription', async () => {
  const { client, ws } = await connected();
  const all = [];
  const open = [];
  const again = [];
  const unsubAll = client.onSnapshot(collection('tasks'), (s) => all.push(s));
  client.onSnapshot(collection('tasks').where('status', '==', 'open'), (s) => open.push(s));
  client.onSnapshot(collection('tasks'), (s) => again.push(s));
  const subs = ws.sentOf('subscribe');
  assert.equal(subs.length, 2, 'equal queries share one server subscription');
  answer(ws, subs[0], [{ id: 't1', path: 'tasks/t1', data: { status: 'open', v: 1 }, update_time: T(1) }]);
  answer(ws, subs[1], [{ id: 't1', path: 'tasks/t1', data: { status: 'open', v: 1 }, update_time: T(1) }]);
  assert.equal(again.at(-1).docs.length, 1);
  // A newer version through one subscription shows in both.
  ws.push({ type: 'changes', sub: subs[0].id, seq: 2, changes: [{ kind: 'modified', id: 't1', path: 'tasks/t1', data: { status: 'open', v: 2 }, update_time: T(2) }] });
  assert.equal(open.at(-1).docs[0].data.v, 2);
  // An older version arriving late does not win.
  ws.push({ type: 'changes', sub: subs[1].id, seq: 2, changes: [{ kind: 'modified', id: 't1', path: 'tasks/t1', data: { status: 'open', v: 1 }, update_time: T(1) }] });
  assert.equal(all.at(-1).docs[0].data.v, 2);
  // Leaving one query does not remove the document from the other.
  ws.push({ type: 'changes', sub: subs[1].id, seq: 3, changes: [{ kind: 'removed', id: 't1', path: 'tasks/t1' }] });
  assert.equal(all.at(-1).docs.length, 1);
  assert.equal(open.at(-1).docs.length, 0);
  // The last listener of a target unsubscribes on the server.
  unsubAll();
  assert.equal(ws.sentOf('unsubscribe').length, 0, 'one listener left');
  client.onSnapshot(collection('tasks'), () => {})();
});

test('declared fields decode to typed values; undeclared stay JSON', async () => {
  const { client, ws } = await connected();
  const snaps = [];
  client.onSnapshot(
    doc('tasks/t1', { fields: { created_at: 'timestamp', due: 'date', blob: 'bytes', owner: 'reference', where: 'geopoint', 'meta.at': 'timestamp', score: 'number' } }),
    (s) => snaps.push(s),
  );
  const sub = ws.sentOf('subscribe')[0];
  answer(ws, sub, [{
    id: 't1', path: 'tasks/t1', update_time: T(1),
    data: {
      created_at: '2026-02-03T04:05:06.123456789Z', due: '2026-02-03T00:00:00Z', blob: 'aGk=', owner: 'users/u1',
      where: { latitude: 1.5, longitude: 2.5 }, meta: { at: '2026-01-01T00:00:00Z' }, score: 'NaN', plain: '2026-01-01T00:00:00Z',
      bad: 'x',
    },
  }]);
  const d = snaps.at(-1).doc.data;
  assert.ok(d.created_at instanceof Timestamp);
  assert.equal(d.created_at.nanoseconds, 123456789);
  assert.equal(d.created_at.toISOString(), '2026-02-03T04:05:06.123456789Z');
  assert.ok(d.due instanceof Date);
  assert.deepEqual([...d.blob.toUint8Array()], [104, 105]);
  assert.equal(d.owner.path, 'users/u1');
  assert.equal(d.owner.id, 'u1');
  assert.equal(d.where.latitude, 1.5);
  assert.ok(d.meta.at instanceof Timestamp);
  assert.ok(Number.isNaN(d.score));
  assert.equal(d.plain, '2026-01-01T00:00:00Z', 'undeclared strings stay strings');
});

test('an optimistic write is pending, then confirmed when the change with its update_time arrives', async () => {
  const { client, ws } = await connected();
  const snaps = [];
  client.onSnapshot(collection('tasks').where('status', '==', 'open'), (s) => snaps.push(s));
  const sub = ws.sentOf('subscribe')[0];
  answer(ws, sub, [{ id: 't1', path: 'tasks/t1', data: { status: 'open', n: 1 }, update_time: T(1) }]);
  const p = client.add('tasks', { status: 'open', title: 'new', at: serverTimestamp() });
  const w = ws.sentOf('write')[0];
  assert.equal(w.ops[0].op, 'create');
  assert.match(w.ops[0].path, /^tasks\/[A-Za-z0-9]{20}$/);
  assert.deepEqual(w.ops[0].data.at, { $transform: 'server_timestamp' });
  assert.ok(w.idempotency_key);
  const created = snaps.at(-1).docs.find((d) => d.path === w.ops[0].path);
  assert.ok(created, 'shown at once');
  assert.equal(created.pending, true);
  assert.equal(created.updateTime, null);
  assert.equal(snaps.at(-1).hasPendingWrites, true);
  ws.push({ type: 'written', id: w.id, commit_time: T(5), results: [{ path: w.ops[0].path, update_time: '2026-01-01T00:00:05.5Z' }] });
  const ack = await p;
  assert.equal(ack.results[0].updateTime, '2026-01-01T00:00:05.5Z');
  assert.equal(snaps.at(-1).docs.find((d) => d.path === w.ops[0].path).pending, true, 'still pending until the change arrives');
  // An older version of the document does not confirm it.
  const id = w.ops[0].path.split('/')[1];
  ws.push({ type: 'changes', sub: sub.id, seq: 2, changes: [{ kind: 'added', id, path: w.ops[0].path, data: { status: 'open', title: 'new', at: T(5) }, update_time: '2026-01-01T00:00:05.5Z' }] });
  const confirmed = snaps.at(-1).docs.find((d) => d.path === w.ops[0].path);
  assert.equal(confirmed.pending, false);
  assert.equal(confirmed.updateTime, '2026-01-01T00:00:05.5Z');
  assert.equal(client.pendingWrites, 0);
});

test('a refused write is rolled back and its promise rejects with the code', async () => {
  const { client, ws } = await connected();
  const snaps = [];
  client.onSnapshot(collection('tasks'), (s) => snaps.push(s));
  const sub = ws.sentOf('subscribe')[0];
  answer(ws, sub, [{ id: 't1', path: 'tasks/t1', data: { status: 'open', n: 1 }, update_time: T(1) }]);
  const p = client.update('tasks/t1', { status: 'done', n: increment(2) });
  assert.deepEqual(snaps.at(-1).docs[0].data, { status: 'done', n: 3 });
  assert.equal(snaps.at(-1).docs[0].pending, true);
  const w = ws.sentOf('write')[0];
  ws.push({ type: 'error', id: w.id, code: 'forbidden', message: 'members may not', index: 0 });
  await assert.rejects(p, (err) => err.code === 'forbidden' && err.index === 0);
  assert.deepEqual(snaps.at(-1).docs[0].data, { status: 'open', n: 1 }, 'rolled back');
  assert.equal(snaps.at(-1).docs[0].pending, false);
});

test('an optimistic update that leaves the query hides the document until confirmed or rolled back', async () => {
  const { client, ws } = await connected();
  const snaps = [];
  client.onSnapshot(collection('tasks').where('status', '==', 'open'), (s) => snaps.push(s));
  answer(ws, ws.sentOf('subscribe')[0], [{ id: 't1', path: 'tasks/t1', data: { status: 'open' }, update_time: T(1) }]);
  const p = client.set('tasks/t1', { status: 'done' });
  assert.equal(snaps.at(-1).docs.length, 0);
  ws.push({ type: 'error', id: ws.sentOf('write')[0].id, code: 'failed_precondition', message: 'x' });
  await assert.rejects(p);
  assert.equal(snaps.at(-1).docs.length, 1);
});

test('a write refused with retry_after_ms is retried with the same idempotency key', async () => {
  const { client, clock, ws } = await connected();
  const p = client.delete('tasks/t1');
  const w1 = ws.sentOf('write')[0];
  ws.push({ type: 'error', id: w1.id, code: 'rate_limited', message: 'slow down', retry_after_ms: 300 });
  await clock.advance(299);
  assert.equal(ws.sentOf('write').length, 1);
  await clock.advance(1);
  const w2 = ws.sentOf('write')[1];
  assert.ok(w2);
  assert.equal(w2.idempotency_key, w1.idempotency_key);
  ws.push({ type: 'written', id: w2.id, commit_time: T(3), results: [{ path: 'tasks/t1', update_time: T(3) }] });
  await p;
});

test('writes made offline are sent when the connection is ready; unacknowledged ones are resent after a reconnect', async () => {
  const { client, clock, ws } = await connected();
  ws.serverClose(1006);
  const p = client.set('notes/n1', { text: 'offline' });
  assert.equal(ws.sentOf('write').length, 0);
  await clock.advance(20_000);
  const ws2 = FakeWS.instances.at(-1);
  ws2.open();
  ws2.welcome('user_a', 'org_a');
  await flush();
  const w = ws2.sentOf('write')[0];
  assert.equal(w.ops[0].path, 'notes/n1');
  ws2.serverClose(1006);
  await clock.advance(20_000);
  const ws3 = FakeWS.instances.at(-1);
  ws3.open();
  ws3.welcome('user_a', 'org_a');
  await flush();
  const again = ws3.sentOf('write')[0];
  assert.equal(again.idempotency_key, w.idempotency_key, 'replayed with its idempotency key');
  ws3.push({ type: 'written', id: again.id, commit_time: T(4), results: [{ path: 'notes/n1', update_time: T(4) }] });
  await p;
});

test('batches are atomic on the wire and validate paths', async () => {
  const { client, ws } = await connected();
  const b = client.batch();
  b.create('tasks/a', { x: 1 }).set('tasks/b', { y: 2 }, { merge: ['y'] }).update('tasks/c', { 'm.k': 3 }, { updateTime: T(1) }).delete('tasks/d', { exists: true });
  const p = b.commit();
  const w = ws.sentOf('write')[0];
  assert.deepEqual(w.ops, [
    { op: 'create', path: 'tasks/a', data: { x: 1 } },
    { op: 'set', path: 'tasks/b', data: { y: 2 }, merge: ['y'] },
    { op: 'update', path: 'tasks/c', data: { 'm.k': 3 }, precondition: { update_time: T(1) } },
    { op: 'delete', path: 'tasks/d', precondition: { exists: true } },
  ]);
  assert.throws(() => client.batch().set('tasks', {}), /collection path/);
  assert.throws(() => b.create('tasks/z', {}), /already committed/);
  ws.push({ type: 'written', id: w.id, commit_time: T(1), results: [] });
  await p;
});

test('persisted cache: a new client renders the last state at once, then resumes with {epoch, seq}', async () => {
  const indexedDB = new IDBFactory();
  const opts = { persistence: { indexedDB }, userId: 'user_a', orgId: 'org_a' };
  const { client, ws } = await connected(opts);
  client.onSnapshot(collection('tasks'), () => {});
  const sub = await until(() => ws.sentOf('subscribe')[0], 'subscribe');
  answer(ws, sub, [{ id: 't1', path: 'tasks/t1', data: { title: 'cached' }, update_time: T(1) }], 41, 'e5');
  ws.push({ type: 'changes', sub: sub.id, seq: 42, changes: [] });
  // A write that the server never answered: pending across the reload.
  void client.set('tasks/t2', { title: 'unsent' }).catch(() => {});
  await until(async () => (await countRows(indexedDB)).writes === 1 && (await countRows(indexedDB)).targets === 1, 'rows persisted');
  client.dispose();

  // "Reload": a new client with no socket yet.
  FakeWS.reset();
  const clock = new Clock();
  const c2 = createClient({ url: 'ws://gw.test/v1/stream', WebSocket: FakeWS, timers: clock, getToken: () => 'tok', ...opts });
  const snaps = [];
  c2.onSnapshot(collection('tasks'), (s) => snaps.push({ ...s, sockets: FakeWS.instances.length }));
  await until(() => snaps.at(-1)?.docs.length === 2, 'cached documents rendered');
  assert.equal(snaps.at(-1).fromCache, true);
  assert.deepEqual(snaps.at(-1).docs.map((d) => [d.id, d.pending]), [['t1', false], ['t2', true]]);
  assert.equal(snaps.at(-1).sockets, 0, 'rendered before the socket is made');
  const ws2 = await until(() => FakeWS.instances.at(-1), 'a socket');
  ws2.open();
  ws2.welcome('user_a', 'org_a');
  await until(() => ws2.sentOf('subscribe').length === 1, 'resubscribe');
  assert.deepEqual(ws2.sentOf('subscribe')[0].resume, { epoch: 'e5', seq: 42 });
  const replay = ws2.sentOf('write')[0];
  assert.ok(replay, 'pending write replayed');
  assert.equal(replay.ops[0].path, 'tasks/t2');
  c2.dispose();
});

test('persisted cache is wiped on sign-out and never shown to another user', async () => {
  const indexedDB = new IDBFactory();
  const { client, ws } = await connected({ persistence: { indexedDB }, userId: 'user_a', orgId: 'org_a' });
  client.onSnapshot(collection('tasks'), () => {});
  answer(ws, await until(() => ws.sentOf('subscribe')[0], 'subscribe'), [{ id: 't1', path: 'tasks/t1', data: {}, update_time: T(1) }]);
  await until(async () => (await countRows(indexedDB)).targets === 1, 'row persisted');
  client.dispose();

  // Another user on the same browser: nothing of user_a appears.
  FakeWS.reset();
  const c2 = createClient({ url: 'ws://gw.test/v1/stream', WebSocket: FakeWS, timers: new Clock(), getToken: () => 'tok', persistence: { indexedDB }, userId: 'user_b', orgId: 'org_a' });
  const snaps = [];
  c2.onSnapshot(collection('tasks'), (s) => snaps.push(s));
  await until(async () => (await countRows(indexedDB)).targets === 0, 'rows of user_a deleted');
  assert.ok(snaps.every((s) => s.docs.length === 0));
  c2.dispose();

  // Sign-out wipes.
  FakeWS.reset();
  const tok = { v: 'tok' };
  const c3 = createClient({ url: 'ws://gw.test/v1/stream', WebSocket: FakeWS, timers: new Clock(), getToken: () => tok.v, persistence: { indexedDB }, userId: 'user_c', orgId: 'org_a' });
  c3.onSnapshot(collection('tasks'), () => {});
  const ws3 = await until(() => FakeWS.instances.at(-1), 'a socket');
  ws3.open();
  ws3.welcome('user_c', 'org_a');
  await until(() => ws3.sentOf('subscribe').length === 1, 'subscribe');
  answer(ws3, ws3.sentOf('subscribe')[0], [{ id: 't1', path: 'tasks/t1', data: {}, update_time: T(1) }]);
  await until(async () => (await countRows(indexedDB)).targets === 1, 'row persisted');
  tok.v = null;
  c3.setIdentity({ userId: null, orgId: null });
  await until(async () => (await countRows(indexedDB)).targets === 0 && c3.state === 'signed_out', 'wiped on sign-out');
  c3.dispose();
});

async function countRows(indexedDB) {
  const db = await new Promise((res, rej) => {
    const r = indexedDB.open('firegate', 1);
    r.onupgradeneeded = () => {
      for (const s of ['meta', 'targets', 'writes']) r.result.createObjectStore(s);
    };
    r.onsuccess = () => res(r.result);
    r.onerror = () => rej(r.error);
  });
  const tx = db.transaction(['targets', 'writes'], 'readonly');
  const count = (s) => new Promise((res) => { const q = tx.objectStore(s).count(); q.onsuccess = () => res(q.result); });
  const out = { targets: await count('targets'), writes: await count('writes') };
  db.close();
  return out;
}
