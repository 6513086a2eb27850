// @firegate/client in Node against a real `firegate dev` (Google's
// Firestore emulator, dev tokens through the same verification as Clerk's).
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { IDBFactory } from 'fake-indexeddb';
import { collection, createClient, doc, IndexedDBPersistence } from '../../packages/client/dist/esm/index.js';
import { startDev, startProxy, waitFor } from '../helpers/dev.mjs';

let dev;
before(async () => {
  dev = await startDev();
});
after(async () => {
  await dev?.stop();
});

const uniq = () => Math.random().toString(36).slice(2, 10);

/** A WebSocket class that counts its instances and when each opened. */
function countingWS(log) {
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      log.push({ event: 'new', at: performance.now() });
      this.addEventListener('open', () => log.push({ event: 'open', at: performance.now() }));
    }
  };
}

function client(opts) {
  const frames = [];
  const c = createClient({
    url: dev.ws,
    WebSocket,
    onFrame: (dir, f) => frames.push({ dir, f, at: performance.now() }),
    ...opts,
  });
  c.frames = frames;
  return c;
}

function watch(c, target) {
  const snaps = [];
  const stop = c.onSnapshot(target, (s) => snaps.push({ s, at: performance.now() }));
  return {
    snaps,
    stop,
    latest: () => snaps.at(-1)?.s,
    until: (pred, what, ms) => waitFor(() => snaps.length && pred(snaps.at(-1).s) && snaps.at(-1).s, what, ms),
  };
}

test('subscribe: a member sees the ready snapshot of their org only, private tasks hidden by the policy filter', async () => {
  const alice = client({ getToken: () => dev.token('user_alice', 'org_acme') });
  const bob = client({ getToken: () => dev.token('user_bob', 'org_acme') });
  try {
    const a = watch(alice, collection('tasks'));
    const b = watch(bob, collection('tasks'));
    const sa = await a.until((s) => s.status === 'ready', 'alice ready');
    const sb = await b.until((s) => s.status === 'ready', 'bob ready');
    assert.ok(sa.docs.length > 0);
    assert.ok(sa.docs.every((d) => d.data.org_id === 'org_acme'), 'only acme');
    assert.ok(sa.docs.some((d) => d.data.visibility === 'private'), 'the admin sees private tasks');
    assert.ok(sb.docs.every((d) => d.data.org_id === 'org_acme' && d.data.visibility !== 'private'), 'the member does not');
    assert.ok(sb.docs.length < sa.docs.length);
    assert.equal(sa.fromCache, false);
  } finally {
    alice.dispose();
    bob.dispose();
  }
});

test('live changes: added, modified and removed arrive with docChanges', async () => {
  const alice = client({ getToken: () => dev.token('user_alice', 'org_acme') });
  try {
    const q = watch(alice, collection('tasks', { fields: { created_at: 'timestamp' } }).where('status', '==', 'open'));
    await q.until((s) => s.status === 'ready', 'ready');
    const title = `live-${uniq()}`;
    const created = await dev.docs.create('tasks', { org_id: 'org_acme', title, status: 'open', visibility: 'public', created_at: { $time: 'now' } });
    const added = await q.until((s) => s.docs.some((d) => d.data.title === title), 'the added task');
    const doc = added.docs.find((d) => d.data.title === title);
    assert.equal(doc.path, created.path);
    assert.ok(doc.data.created_at && typeof doc.data.created_at.toDate === 'function', 'created_at decoded to a Timestamp');
    assert.ok(added.docChanges().some((c) => c.type === 'added' && c.doc.path === created.path));
    await dev.docs.patch(created.path, { title: `${title}-edited` });
    const modified = await q.until((s) => s.docs.some((d) => d.data.title === `${title}-edited`), 'the modified task');
    assert.ok(modified.docChanges().some((c) => c.type === 'modified' && c.doc.path === created.path));
    // Leaving the query's filter is a removal for this subscription.
    await dev.docs.patch(created.path, { status: 'done' });
    const left = await q.until((s) => !s.docs.some((d) => d.path === created.path), 'the task leaving the query');
    assert.ok(left.docChanges().some((c) => c.type === 'removed' && c.doc.path === created.path));
    await dev.docs.remove(created.path);
  } finally {
    alice.dispose();
  }
});

test('refresh: auth_expiring is answered in band, on the same socket, and data keeps flowing', async () => {
  const sockets = [];
  const alice = client({ WebSocket: countingWS(sockets), getToken: () => dev.token('user_alice', 'org_acme', '3s') });
  try {
    const q = watch(alice, collection('tasks'));
    await q.until((s) => s.status === 'ready', 'ready');
    // A 3 s token gets auth_expiring at once; each refresh is acknowledged by a welcome.
    await waitFor(() => alice.frames.filter((x) => x.dir === 'in' && x.f.type === 'welcome').length >= 3, 'three welcomes (two refreshes)');
    assert.ok(alice.frames.some((x) => x.dir === 'in' && x.f.type === 'auth_expiring'));
    assert.ok(alice.frames.filter((x) => x.dir === 'out' && x.f.type === 'auth').length >= 2);
    assert.equal(sockets.filter((e) => e.event === 'new').length, 1, 'one socket');
    const title = `after-refresh-${uniq()}`;
    const created = await dev.docs.create('tasks', { org_id: 'org_acme', title, status: 'open', visibility: 'public' });
    await q.until((s) => s.docs.some((d) => d.data.title === title), 'a change after the refreshes');
    assert.equal(alice.state, 'ready');
    await dev.docs.remove(created.path);
  } finally {
    alice.dispose();
  }
});

test('org switch: refreshed in band, then only the other org\'s documents', async () => {
  const sockets = [];
  const session = { org: 'org_acme' };
  const dave = client({ WebSocket: countingWS(sockets), getToken: () => dev.token('user_dave', session.org), userId: 'user_dave', orgId: 'org_acme' });
  try {
    const q = watch(dave, collection('tasks'));
    const acme = await q.until((s) => s.status === 'ready' && s.docs.length > 0, 'acme tasks');
    assert.ok(acme.docs.every((d) => d.data.org_id === 'org_acme'));
    session.org = 'org_globex';
    dave.setIdentity({ userId: 'user_dave', orgId: 'org_globex' });
    const globex = await q.until((s) => s.status === 'ready' && s.docs.length > 0 && s.docs.every((d) => d.data.org_id === 'org_globex'), 'globex tasks');
    assert.ok(globex.docs.length > 0);
    // After the refresh's welcome, no snapshot ever showed an acme document.
    const welcomeAt = dave.frames.filter((x) => x.dir === 'in' && x.f.type === 'welcome' && x.f.org_id === 'org_globex')[0].at;
    for (const { s, at } of q.snaps) {
      if (at > welcomeAt) assert.ok(s.docs.every((d) => d.data.org_id !== 'org_acme'), 'an acme document after the switch');
    }
    assert.ok(dave.frames.some((x) => x.dir === 'in' && x.f.type === 'unsubscribed' && x.f.reason === 'org_changed'));
    assert.equal(sockets.filter((e) => e.event === 'new').length, 1, 'same socket');
  } finally {
    dave.dispose();
  }
});

test('reconnect and resume: a dropped connection resumes with {epoch, seq} and gets what changed meanwhile', async () => {
  const proxy = await startProxy(dev.base);
  const alice = client({ url: proxy.url, getToken: () => dev.token('user_alice', 'org_acme'), backoff: { minMs: 100, maxMs: 400 } });
  try {
    const q = watch(alice, collection('tasks').where('status', '==', 'open'));
    await q.until((s) => s.status === 'ready', 'ready');
    const first = alice.frames.find((x) => x.dir === 'in' && x.f.type === 'subscribed').f;
    proxy.pause();
    proxy.cut();
    await q.until((s) => s.status === 'stale', 'stale while disconnected');
    const title = `while-away-${uniq()}`;
    const created = await dev.docs.create('tasks', { org_id: 'org_acme', title, status: 'open', visibility: 'public' });
    proxy.resume();
    await q.until((s) => s.status === 'ready' && s.docs.some((d) => d.data.title === title), 'the change made while away');
    const resub = alice.frames.filter((x) => x.dir === 'out' && x.f.type === 'subscribe').at(-1).f;
    assert.equal(resub.resume?.epoch, first.epoch, 'resumed with the epoch');
    assert.ok(Number.isInteger(resub.resume?.seq));
    const answer = alice.frames.filter((x) => x.dir === 'in' && x.f.type === 'subscribed').at(-1).f;
    assert.equal(answer.resumed, true, 'the Feed still lives: net change, not a snapshot');
    await dev.docs.remove(created.path);
  } finally {
    alice.dispose();
    await proxy.close();
  }
});

test('persisted cache: a reload renders the last state before the socket is up, then resumes', async () => {
  const indexedDB = new IDBFactory();
  const opts = { persistence: { indexedDB }, userId: 'user_alice', orgId: 'org_acme', getToken: () => dev.token('user_alice', 'org_acme') };
  const first = client(opts);
  let titles;
  try {
    const q1 = watch(first, collection('tasks').orderBy('title'));
    const ready = await q1.until((s) => s.status === 'ready' && s.docs.length > 0, 'first load');
    titles = ready.docs.map((d) => d.data.title);
    // Let the write to IndexedDB land: a fresh reader sees the row.
    await waitFor(async () => {
      const probe = new IndexedDBPersistence({ indexedDB });
      const st = await probe.load('user_alice', 'org_acme');
      probe.close();
      return [...st.targets.values()].some((t) => t.docs.length === titles.length);
    }, 'the persisted row');
  } finally {
    first.dispose();
  }

  const sockets = [];
  const second = client({ ...opts, WebSocket: countingWS(sockets) });
  try {
    const q2 = watch(second, collection('tasks').orderBy('title'));
    const cached = await waitFor(() => q2.snaps.find((x) => x.s.fromCache && x.s.docs.length > 0)?.s, 'the cached render');
    assert.deepEqual(cached.docs.map((d) => d.data.title), titles);
    const made = sockets.find((e) => e.event === 'new');
    const cachedAt = q2.snaps.find((x) => x.s.fromCache).at;
    assert.ok(!made || cachedAt < made.at, 'rendered from cache before the socket was made');
    await q2.until((s) => !s.fromCache && s.status === 'ready', 'live again');
    const sub = second.frames.find((x) => x.dir === 'out' && x.f.type === 'subscribe').f;
    assert.ok(sub.resume && sub.resume.epoch, 'resumed with the stored {epoch, seq}');
    const answer = second.frames.find((x) => x.dir === 'in' && x.f.type === 'subscribed').f;
    assert.equal(answer.resumed, true);
  } finally {
    second.dispose();
  }
});

test('sign-out: getToken null closes the socket, clears, and opens no new one', async () => {
  const sockets = [];
  const session = { signedIn: true };
  const alice = client({ WebSocket: countingWS(sockets), getToken: () => (session.signedIn ? dev.token('user_alice', 'org_acme') : null), userId: 'user_alice' });
  try {
    const q = watch(alice, collection('tasks'));
    await q.until((s) => s.status === 'ready' && s.docs.length > 0, 'ready');
    session.signedIn = false;
    alice.setIdentity({ userId: null, orgId: null });
    await q.until((s) => s.docs.length === 0, 'cleared');
    await waitFor(() => alice.state === 'signed_out', 'signed out');
    const before = sockets.filter((e) => e.event === 'new').length;
    // The network comes back, the tab becomes visible: the token is asked
    // again (connecting), it is still null (signed_out), and no socket opens.
    const states = [];
    alice.on('state', (st) => states.push(st));
    alice.nudge();
    await waitFor(() => states.join(',') === 'connecting,signed_out', 'the token re-checked');
    assert.equal(sockets.filter((e) => e.event === 'new').length, before, 'no socket for a signed-out user');
    assert.equal(alice.state, 'signed_out');
  } finally {
    alice.dispose();
  }
});

test('document subscription: one document, its changes, and nothing for a document the caller may not see', async () => {
  const alice = client({ getToken: () => dev.token('user_alice', 'org_acme') });
  const bob = client({ getToken: () => dev.token('user_bob', 'org_acme') });
  try {
    const title = `doc-${uniq()}`;
    const created = await dev.docs.create('tasks', { org_id: 'org_acme', title, status: 'open', visibility: 'public' });
    const a = watch(alice, doc(created.path));
    const first = await a.until((s) => s.status === 'ready' && s.doc, 'the document');
    assert.equal(first.doc.data.title, title);
    assert.equal(first.docs.length, 1);
    await dev.docs.patch(created.path, { title: `${title}-2` });
    await a.until((s) => s.doc?.data.title === `${title}-2`, 'modified');
    // Private: bob (member) may not see it; for him it does not exist.
    await dev.docs.patch(created.path, { visibility: 'private' });
    const b = watch(bob, doc(created.path));
    const hidden = await b.until((s) => s.status === 'ready', 'bob ready');
    assert.equal(hidden.doc, null);
    await a.until((s) => s.doc?.data.visibility === 'private', 'the admin still sees it, private');
    await dev.docs.remove(created.path);
    await a.until((s) => s.doc === null, 'removed when deleted');
    // Another org's document is indistinguishable from a missing one.
    const other = await dev.docs.create('tasks', { org_id: 'org_globex', title: `other-${uniq()}`, status: 'open', visibility: 'public' });
    const o = watch(alice, doc(other.path));
    const none = await o.until((s) => s.status === 'ready', 'ready');
    assert.equal(none.doc, null);
    await dev.docs.remove(other.path);
  } finally {
    alice.dispose();
    bob.dispose();
  }
});
