// Every frame the client sends validates against docs/schema (the
// contract wire/schema_test.go checks against the Go types), and the
// server frames of the schemas' own examples parse.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { collection, createClient, doc, increment, serverTimestamp, arrayUnion } from '../../packages/client/dist/esm/index.js';
import { Clock, FakeWS, flush } from '../helpers/fakes.mjs';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../docs/schema');
const load = (name) => JSON.parse(readFileSync(path.join(dir, `${name}.json`), 'utf8'));

/** The subset of JSON Schema the frame schemas use (as wire/schema_test.go's validator). */
function validate(root, s, v, at) {
  if (s.$ref) return validate(root, root.$defs[s.$ref.replace('#/$defs/', '')], v, at);
  if ('const' in s && s.const !== v) return `${at}: ${JSON.stringify(v)} is not ${JSON.stringify(s.const)}`;
  if (s.enum && !s.enum.includes(v)) return `${at}: ${JSON.stringify(v)} not in enum`;
  switch (s.type) {
    case 'object': {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${at}: not an object`;
      for (const r of s.required ?? []) if (!(r in v)) return `${at}: missing ${r}`;
      for (const [k, e] of Object.entries(v)) {
        const ps = s.properties?.[k];
        if (!ps) {
          if (s.additionalProperties === false) return `${at}: unexpected property ${k}`;
          continue;
        }
        const err = validate(root, ps, e, `${at}.${k}`);
        if (err) return err;
      }
      return null;
    }
    case 'array':
      if (!Array.isArray(v)) return `${at}: not an array`;
      if (s.minItems !== undefined && v.length < s.minItems) return `${at}: too few items`;
      for (const [i, e] of v.entries()) {
        const err = s.items && validate(root, s.items, e, `${at}[${i}]`);
        if (err) return err;
      }
      return null;
    case 'string':
      if (typeof v !== 'string') return `${at}: not a string`;
      if (s.minLength !== undefined && v.length < s.minLength) return `${at}: too short`;
      if (s.maxLength !== undefined && v.length > s.maxLength) return `${at}: too long`;
      return null;
    case 'integer':
      if (!Number.isInteger(v)) return `${at}: not an integer`;
      if (s.minimum !== undefined && v < s.minimum) return `${at}: below minimum`;
      return null;
    case 'boolean':
      return typeof v === 'boolean' ? null : `${at}: not a boolean`;
    default:
      return null;
  }
}

test('every frame the client sends validates against its schema', async () => {
  FakeWS.reset();
  const clock = new Clock();
  const client = createClient({ url: 'ws://gw.test/v1/stream', WebSocket: FakeWS, timers: clock, getToken: () => 'tok', pingIntervalMs: 1000 });
  await flush();
  const ws = FakeWS.instances[0];
  ws.open();
  ws.welcome();
  await flush();
  const stop = client.onSnapshot(collection('tasks').where('status', 'in', ['open', 'done']).orderBy('created_at', 'desc').limit(5), () => {});
  client.onSnapshot(doc('tasks/t1'), () => {});
  const s = ws.sentOf('subscribe')[0];
  ws.push({ type: 'subscribed', id: s.id, epoch: 'e1', resumed: false });
  ws.push({ type: 'snapshot', sub: s.id, seq: 3, final: true, docs: [] });
  const b = client.batch();
  b.create('tasks/a', { at: serverTimestamp(), n: increment(1), tags: arrayUnion('x'), when: new Date(0) })
    .set('tasks/b', { x: 1 }, { merge: true })
    .update('tasks/c', { 'm.k': 1 }, { updateTime: '2026-01-01T00:00:00Z' })
    .delete('tasks/d', { exists: true });
  b.commit().catch(() => {});
  ws.push({ type: 'auth_expiring', expires_at: '2030-01-01T00:00:00Z' });
  await flush();
  await clock.advance(1000);
  stop();
  ws.serverClose(1012);
  await clock.advance(20_000);
  const ws2 = FakeWS.instances[1];
  ws2.open();
  ws2.welcome();
  await flush();
  const frames = [...ws.sent, ...ws2.sent];
  const types = new Set(frames.map((f) => f.type));
  assert.deepEqual([...types].sort(), ['auth', 'ping', 'subscribe', 'unsubscribe', 'write']);
  assert.ok(ws2.sentOf('subscribe').some((f) => f.resume === undefined && f.doc === 'tasks/t1'));
  for (const f of frames) {
    const schema = load(f.type);
    assert.equal(validate(schema, schema, f, f.type), null, JSON.stringify(f));
  }
  client.dispose();
});

test('the validator refuses a frame that breaks its schema', () => {
  const schema = load('subscribe');
  assert.match(validate(schema, schema, { type: 'subscribe', id: 's', limit: -1 }, 's'), /below minimum/);
  assert.match(validate(schema, schema, { type: 'subscribe', id: 's', colection: 'x' }, 's'), /unexpected property/);
  const w = load('write');
  assert.match(validate(w, w, { type: 'write', id: 'w', idempotency_key: 'k', ops: [{ op: 'upsert', path: 'a/b' }] }, 'w'), /not in enum/);
});
