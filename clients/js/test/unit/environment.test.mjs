// The browser environment the client reacts to: online / visibilitychange
// events, and several tabs sharing one socket (BroadcastChannel + Web
// Locks, with a fake lock manager: Node 20 has no navigator.locks).
import test from 'node:test';
import assert from 'node:assert/strict';
import { collection, createClient } from '../../packages/client/dist/esm/index.js';
import { Clock, FakeWS, flush, until } from '../helpers/fakes.mjs';

function withGlobals(globals, fn) {
  const saved = {};
  for (const k of Object.keys(globals)) {
    saved[k] = Object.getOwnPropertyDescriptor(globalThis, k);
    Object.defineProperty(globalThis, k, { value: globals[k], configurable: true, writable: true });
  }
  return Promise.resolve(fn()).finally(() => {
    for (const k of Object.keys(globals)) {
      if (saved[k]) Object.defineProperty(globalThis, k, saved[k]);
      else delete globalThis[k];
    }
  });
}

test('the online event and a tab becoming visible reconnect at once instead of waiting out the backoff', async () => {
  const win = new EventTarget();
  const document = Object.assign(new EventTarget(), { visibilityState: 'hidden' });
  await withGlobals({ addEventListener: win.addEventListener.bind(win), removeEventListener: win.removeEventListener.bind(win), document }, async () => {
    FakeWS.reset();
    const clock = new Clock();
    const c = createClient({ url: 'ws://gw.test/v1/stream', WebSocket: FakeWS, timers: clock, getToken: () => 't', multiTab: false, backoff: { minMs: 60_000, maxMs: 60_000 }, random: () => 1 });
    await flush();
    FakeWS.instances[0].open();
    FakeWS.instances[0].welcome();
    FakeWS.instances[0].serverClose(1006);
    assert.equal(c.state, 'waiting');
    assert.deepEqual(clock.pending(), [60_000]);
    win.dispatchEvent(new Event('online'));
    await flush();
    assert.equal(FakeWS.instances.length, 2, 'online: reconnected without waiting');
    FakeWS.instances[1].serverClose(1006);
    document.dispatchEvent(new Event('visibilitychange'));
    await flush();
    assert.equal(FakeWS.instances.length, 2, 'a hidden tab waits');
    document.visibilityState = 'visible';
    document.dispatchEvent(new Event('visibilitychange'));
    await flush();
    assert.equal(FakeWS.instances.length, 3, 'visible: reconnected');
    c.dispose();
    win.dispatchEvent(new Event('online'));
    await flush();
    assert.equal(FakeWS.instances.length, 3, 'a disposed client ignores the events');
  });
});

/** A Web Locks stand-in: exclusive locks granted in request order. */
function fakeLocks() {
  const held = new Map(); // name -> queue of waiters
  return {
    request(name, cb) {
      return new Promise((resolve) => {
        const q = held.get(name) ?? [];
        held.set(name, q);
        const run = () => Promise.resolve(cb()).then(() => {
          q.shift();
          resolve();
          if (q.length) q[0]();
        });
        q.push(run);
        if (q.length === 1) run();
      });
    },
  };
}

test('tabs of one user share one socket; the leader routes answers by tab; a new leader takes over', async () => {
  await withGlobals({ navigator: { locks: fakeLocks() }, document: Object.assign(new EventTarget(), { visibilityState: 'visible' }) }, async () => {
    FakeWS.reset();
    const mk = (userId) => createClient({ url: 'ws://tabs.test/v1/stream', WebSocket: FakeWS, getToken: () => `tok-${userId}`, userId });
    const leader = mk('user_a');
    const follower = mk('user_a');
    const other = mk('user_b');
    const ws = await until(() => FakeWS.instances.find((w) => w.protocols[1] === 'bearer.tok-user_a'), 'the leader socket');
    ws.open();
    ws.welcome('user_a', 'org_a');
    await until(() => follower.state === 'ready', 'the follower sees the leader ready');
    assert.equal(leader.isLeader, true);
    assert.equal(follower.isLeader, false);
    assert.equal(FakeWS.instances.filter((w) => w.protocols[1] === 'bearer.tok-user_a').length, 1, 'one socket for the two tabs of user_a');
    assert.equal(FakeWS.instances.filter((w) => w.protocols[1] === 'bearer.tok-user_b').length, 1, 'another user never shares it');

    const snaps = [];
    follower.onSnapshot(collection('tasks'), (s) => snaps.push(s));
    const sub = await until(() => ws.sentOf('subscribe')[0], 'the follower subscribe on the leader socket');
    assert.match(sub.id, /^[a-z0-9]+~s\d+$/, 'id prefixed with the tab');
    ws.push({ type: 'subscribed', id: sub.id, epoch: 'e1', resumed: false });
    ws.push({ type: 'snapshot', sub: sub.id, seq: 4, final: true, docs: [{ id: 't1', path: 'tasks/t1', data: { a: 1 }, update_time: '2026-01-01T00:00:01Z' }] });
    await until(() => snaps.at(-1)?.status === 'ready', 'the snapshot routed to the follower');
    assert.deepEqual(snaps.at(-1).docs.map((d) => d.id), ['t1']);

    // The leader tab goes away: the follower takes the lock, opens a socket and resumes.
    leader.dispose();
    const ws2 = await until(() => FakeWS.instances.filter((w) => w.protocols[1] === 'bearer.tok-user_a')[1], 'the new leader socket');
    ws2.open();
    ws2.welcome('user_a', 'org_a');
    const resub = await until(() => ws2.sentOf('subscribe')[0], 'resubscribe on the new socket');
    assert.deepEqual(resub.resume, { epoch: 'e1', seq: 4 });
    assert.equal(follower.isLeader, true);
    follower.dispose();
    other.dispose();
  });
});
