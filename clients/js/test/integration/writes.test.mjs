// Optimistic writes through the gateway's `write` message, against a real
// `firegate dev`: confirmed, refused (rolled back), and replayed from the
// persisted queue after a reload.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { IDBFactory } from 'fake-indexeddb';
import { collection, createClient, serverTimestamp, Timestamp } from '../../packages/client/dist/esm/index.js';
import { startDev, startProxy, waitFor } from '../helpers/dev.mjs';

let dev;
before(async () => {
  dev = await startDev();
});
after(async () => {
  await dev?.stop();
});

const uniq = () => Math.random().toString(36).slice(2, 10);

function client(opts) {
  return createClient({ url: dev.ws, WebSocket, ...opts });
}

function watch(c, target) {
  const snaps = [];
  c.onSnapshot(target, (s) => snaps.push(s));
  return { snaps, until: (pred, what) => waitFor(() => snaps.length && pred(snaps.at(-1)) && snaps.at(-1), what) };
}

const tasks = collection('tasks', { fields: { created_at: 'timestamp' } });

test('an optimistic create shows at once as pending, is confirmed with the acknowledged update_time, and other clients see it', async () => {
  const alice = client({ getToken: () => dev.token('user_alice', 'org_acme') });
  const bob = client({ getToken: () => dev.token('user_bob', 'org_acme') });
  try {
    const a = watch(alice, tasks);
    const b = watch(bob, tasks);
    await a.until((s) => s.status === 'ready', 'alice ready');
    await b.until((s) => s.status === 'ready', 'bob ready');
    const title = `optimistic-${uniq()}`;
    const p = alice.add('tasks', { title, status: 'open', visibility: 'public', created_at: serverTimestamp() });
    const pending = a.snaps.at(-1).docs.find((d) => d.data.title === title);
    assert.ok(pending, 'shown synchronously');
    assert.equal(pending.pending, true);
    assert.equal(pending.updateTime, null);
    const ack = await p;
    assert.equal(ack.results.length, 1);
    assert.equal(ack.results[0].path, ack.path);
    const confirmed = await a.until((s) => s.docs.some((d) => d.path === ack.path && !d.pending), 'confirmed');
    const doc = confirmed.docs.find((d) => d.path === ack.path);
    assert.equal(doc.updateTime, ack.results[0].updateTime, 'the change carries the acknowledged update_time');
    assert.equal(doc.data.org_id, 'org_acme', 'the gateway stamped the scope field');
    assert.ok(doc.data.created_at instanceof Timestamp, 'server timestamp');
    await b.until((s) => s.docs.some((d) => d.path === ack.path && d.data.title === title), 'bob sees it');
    assert.equal(alice.pendingWrites, 0);
    await alice.delete(ack.path);
    await a.until((s) => !s.docs.some((d) => d.path === ack.path), 'deleted');
  } finally {
    alice.dispose();
    bob.dispose();
  }
});

test('a refused write is rolled back with the error', async () => {
  const bob = client({ getToken: () => dev.token('user_bob', 'org_acme') });
  try {
    const b = watch(bob, tasks);
    const ready = await b.until((s) => s.status === 'ready' && s.docs.length > 0, 'bob ready');
    const victim = ready.docs[0];
    // Members may not delete tasks (the policy's delete rule): optimistic removal, then rollback.
    const p = bob.delete(victim.path);
    assert.ok(!b.snaps.at(-1).docs.some((d) => d.path === victim.path), 'removed optimistically');
    await assert.rejects(p, (err) => err.code === 'forbidden');
    const back = b.snaps.at(-1).docs.find((d) => d.path === victim.path);
    assert.ok(back, 'rolled back');
    assert.equal(back.pending, false);
    assert.deepEqual(back.data, victim.data);
    // A create naming another org is refused too, and never shows up afterwards.
    const q = bob.add('tasks', { title: `wrong-org-${uniq()}`, org_id: 'org_globex', status: 'open', visibility: 'public' });
    await assert.rejects(q, (err) => err.code === 'forbidden' && err.index === 0);
    assert.ok(b.snaps.at(-1).docs.every((d) => d.data.org_id === 'org_acme' && !d.pending));
  } finally {
    bob.dispose();
  }
});

test('a write made offline survives a reload and is replayed with its idempotency key', async () => {
  const indexedDB = new IDBFactory();
  const proxy = await startProxy(dev.base);
  const opts = { persistence: { indexedDB }, userId: 'user_alice', orgId: 'org_acme', getToken: () => dev.token('user_alice', 'org_acme'), backoff: { minMs: 50, maxMs: 200 } };
  const title = `offline-${uniq()}`;
  const first = client({ ...opts, url: proxy.url });
  try {
    const a = watch(first, tasks);
    await a.until((s) => s.status === 'ready', 'ready');
    proxy.pause();
    proxy.cut();
    await a.until((s) => s.status === 'stale', 'offline');
    first.add('tasks', { title, status: 'open', visibility: 'public' }).catch(() => {});
    assert.ok(a.snaps.at(-1).docs.some((d) => d.data.title === title && d.pending));
    await waitFor(async () => (await rows(indexedDB)) === 1, 'the persisted pending write');
  } finally {
    first.dispose();
    await proxy.close();
  }
  // Reload, online.
  const second = client(opts);
  try {
    const a = watch(second, tasks);
    await waitFor(() => a.snaps.some((s) => s.fromCache && s.docs.some((d) => d.data.title === title && d.pending)), 'the pending write rendered from the cache');
    const done = await a.until((s) => s.docs.some((d) => d.data.title === title && !d.pending), 'replayed and confirmed');
    assert.equal(done.docs.filter((d) => d.data.title === title).length, 1, 'written once');
    await waitFor(async () => (await rows(indexedDB)) === 0, 'the queue emptied');
    const path = done.docs.find((d) => d.data.title === title).path;
    await second.delete(path);
  } finally {
    second.dispose();
  }
});

async function rows(indexedDB) {
  const { IndexedDBPersistence } = await import('../../packages/client/dist/esm/index.js');
  const p = new IndexedDBPersistence({ indexedDB });
  const n = (await p.count()).writes;
  p.close();
  return n;
}
