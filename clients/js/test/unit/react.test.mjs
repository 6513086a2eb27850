// @firegate/react against a scripted socket: hooks render {data, status,
// error}; the provider follows Clerk's useAuth() values.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createElement as h } from 'react';
import TestRenderer from 'react-test-renderer';
import { collection, FiregateProvider, useCollection, useDocument, useWrite } from '../../packages/react/dist/esm/index.js';
import { FakeWS, flush } from '../helpers/fakes.mjs';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;

const seen = { tasks: null, one: null, write: null };
function Tasks() {
  // A new Query object on every render: the same subscription.
  seen.tasks = useCollection(collection('tasks').orderBy('n'));
  seen.one = useDocument('tasks/t1');
  seen.write = useWrite();
  return h('ul', null, seen.tasks.data.map((d) => h('li', { key: d.id }, `${d.id}:${d.pending}`)));
}

function App({ userId, orgId, token }) {
  return h(FiregateProvider, { url: 'ws://gw.test/v1/stream', WebSocket: FakeWS, getToken: async () => token, userId, orgId }, h(Tasks));
}

test('FiregateProvider + hooks: live data, optimistic writes, org switch in band, user switch reconnects, sign-out clears', async () => {
  FakeWS.reset();
  let r;
  await act(async () => {
    r = TestRenderer.create(h(App, { userId: 'user_a', orgId: 'org_a', token: 'tok-a' }));
  });
  assert.equal(seen.tasks.status, 'loading');
  const ws = FakeWS.instances.at(-1);
  assert.deepEqual(ws.protocols, ['firegate.v1', 'bearer.tok-a']);
  await act(async () => {
    ws.open();
    ws.welcome('user_a', 'org_a');
    await flush();
  });
  const subs = ws.sentOf('subscribe');
  assert.equal(subs.length, 2, 'one query subscription despite re-renders, one document subscription');
  const q = subs.find((s) => s.collection);
  const d = subs.find((s) => s.doc);
  await act(async () => {
    ws.push({ type: 'subscribed', id: q.id, epoch: 'e1', resumed: false });
    ws.push({ type: 'snapshot', sub: q.id, seq: 1, final: true, docs: [{ id: 't1', path: 'tasks/t1', data: { n: 1 }, update_time: '2026-01-01T00:00:01Z' }] });
    ws.push({ type: 'subscribed', id: d.id, epoch: 'e2', resumed: false });
    ws.push({ type: 'snapshot', sub: d.id, seq: 1, final: true, docs: [{ id: 't1', path: 'tasks/t1', data: { n: 1 }, update_time: '2026-01-01T00:00:01Z' }] });
  });
  assert.equal(seen.tasks.status, 'ready');
  assert.deepEqual(r.toJSON().children.map((c) => c.children[0]), ['t1:false']);
  assert.equal(seen.one.data.data.n, 1);

  let p;
  await act(async () => {
    p = seen.write.update('tasks/t1', { n: 5 });
  });
  assert.equal(seen.write.status, 'pending');
  assert.equal(seen.one.data.data.n, 5, 'optimistic in every hook');
  assert.equal(seen.one.data.pending, true);
  await act(async () => {
    const w = ws.sentOf('write')[0];
    ws.push({ type: 'error', id: w.id, code: 'forbidden', message: 'no' });
    await p.catch(() => {});
  });
  assert.equal(seen.write.status, 'error');
  assert.equal(seen.write.error.code, 'forbidden');
  assert.equal(seen.one.data.data.n, 1, 'rolled back');

  // Org switch: an in-band auth on the same socket.
  await act(async () => {
    r.update(h(App, { userId: 'user_a', orgId: 'org_b', token: 'tok-a-b' }));
    await flush();
  });
  assert.equal(FakeWS.instances.length, 1);
  assert.equal(ws.sentOf('auth').at(-1).token, 'tok-a-b');

  // User switch: a new socket, nothing of user_a left.
  await act(async () => {
    r.update(h(App, { userId: 'user_b', orgId: 'org_b', token: 'tok-b' }));
    await flush();
  });
  assert.equal(FakeWS.instances.length, 2);
  assert.deepEqual(FakeWS.instances[1].protocols, ['firegate.v1', 'bearer.tok-b']);
  assert.equal(r.toJSON().children, null, 'no documents of the previous user');

  // Sign-out: getToken returns null, the socket closes, nothing is retried.
  await act(async () => {
    r.update(h(App, { userId: null, orgId: null, token: null }));
    await flush();
  });
  assert.equal(FakeWS.instances.length, 2, 'no socket for a signed-out user');
  assert.ok(FakeWS.instances[1].closedWith);
  await act(async () => r.unmount());
});
