import test from 'node:test';
import assert from 'node:assert/strict';
import {
  applyOp, arrayRemove, arrayUnion, Bytes, collection, compareValues, doc, DocumentReference, encodeValue,
  GeoPoint, increment, matches, parseServerFrame, serverTimestamp, Timestamp,
} from '../../packages/client/dist/esm/index.js';

test('Timestamp parses RFC 3339 with up to nine fraction digits and offsets', () => {
  const cases = [
    ['2026-01-02T03:04:05Z', 1767323045, 0],
    ['2026-01-02T03:04:05.5Z', 1767323045, 500000000],
    ['2026-01-02T03:04:05.000000001Z', 1767323045, 1],
    ['2026-01-02T04:04:05+01:00', 1767323045, 0],
  ];
  for (const [s, sec, ns] of cases) {
    const t = Timestamp.parse(s);
    assert.equal(t.seconds, sec, s);
    assert.equal(t.nanoseconds, ns, s);
  }
  for (const bad of ['', '2026-01-02', '2026-01-02T03:04:05', '2026-01-02T03:04:05.1234567890Z', 'x']) {
    assert.throws(() => Timestamp.parse(bad), RangeError, bad);
  }
  assert.ok(Timestamp.parse('2026-01-01T00:00:00.5Z').compare(Timestamp.parse('2026-01-01T00:00:00Z')) > 0, 'compares as instants, not text');
  assert.equal(Timestamp.fromDate(new Date(1500)).toISOString(), '1970-01-01T00:00:01.500000000Z');
});

test('Bytes round-trip standard base64 and refuse anything else', () => {
  const b = Bytes.fromUint8Array(new Uint8Array([0, 255, 1]));
  assert.equal(b.toBase64(), 'AP8B');
  assert.deepEqual([...Bytes.fromBase64('AP8B').toUint8Array()], [0, 255, 1]);
  for (const bad of ['A', 'AP8', '_-8B', 'AP8B=']) assert.throws(() => Bytes.fromBase64(bad), RangeError, bad);
});

test('encodeValue maps typed values to their wire form and refuses the unencodable', () => {
  assert.deepEqual(
    encodeValue({ t: new Timestamp(1, 2), d: new Date(0), b: Bytes.fromBase64('aGk='), r: new DocumentReference('a/b'), g: new GeoPoint(1, 2), n: NaN, i: -Infinity, s: serverTimestamp(), inc: increment(2), au: arrayUnion(1, new Date(0)), ar: arrayRemove('x'), skip: undefined, nested: [{ x: 1 }] }),
    {
      t: '1970-01-01T00:00:01.000000002Z', d: '1970-01-01T00:00:00.000000000Z', b: 'aGk=', r: 'a/b', g: { latitude: 1, longitude: 2 }, n: 'NaN', i: '-Infinity',
      s: { $transform: 'server_timestamp' }, inc: { $transform: 'increment', by: 2 }, au: { $transform: 'array_union', values: [1, '1970-01-01T00:00:00.000000000Z'] },
      ar: { $transform: 'array_remove', values: ['x'] }, nested: [{ x: 1 }],
    },
  );
  for (const bad of [() => {}, Symbol('x'), 10n, new Map(), [undefined]]) assert.throws(() => encodeValue(bad), TypeError);
});

test('queries are immutable, validated and keyed canonically', () => {
  const q = collection('tasks').where('status', '==', 'open').orderBy('created_at', 'desc').limit(10);
  assert.deepEqual(q.toFrame(), {
    type: 'subscribe', collection: 'tasks', where: [{ field: 'status', op: '==', value: 'open' }],
    order_by: [{ field: 'created_at', direction: 'desc' }], limit: 10,
  });
  assert.equal(q.key(), collection('tasks').where('status', '==', 'open').orderBy('created_at', 'desc').limit(10).key());
  assert.notEqual(q.key(), collection('tasks').key());
  assert.throws(() => collection('tasks/t1'), /document path/);
  assert.throws(() => doc('tasks'), /collection path/);
  assert.throws(() => collection('a//b'), /bad path/);
  assert.throws(() => collection('tasks').where('x', '~=', 1), /unknown operator/);
  assert.throws(() => collection('tasks').limit(0), RangeError);
  assert.throws(() => collection('tasks').orderBy('x', 'up'), /direction/);
  assert.equal(doc('projects/p1/tasks/t9').parent, 'projects/p1/tasks');
  assert.deepEqual(doc('tasks/t1').toFrame(), { type: 'subscribe', doc: 'tasks/t1' });
});

test('client-side matching follows Firestore for the wire types', () => {
  const d = { status: 'open', n: 3, tags: ['a', 'b'], m: { k: 1 }, nul: null };
  const cases = [
    [[{ field: 'status', op: '==', value: 'open' }], true],
    [[{ field: 'status', op: '!=', value: 'open' }], false],
    [[{ field: 'missing', op: '!=', value: 'x' }], false],
    [[{ field: 'nul', op: '!=', value: 'x' }], false],
    [[{ field: 'n', op: '>', value: 2 }], true],
    [[{ field: 'n', op: '>', value: '2' }], false],
    [[{ field: 'n', op: '<=', value: 3 }], true],
    [[{ field: 'n', op: 'in', value: [1, 3] }], true],
    [[{ field: 'n', op: 'not-in', value: [1, 3] }], false],
    [[{ field: 'tags', op: 'array-contains', value: 'b' }], true],
    [[{ field: 'tags', op: 'array-contains-any', value: ['x', 'a'] }], true],
    [[{ field: 'm.k', op: '==', value: 1 }], true],
  ];
  for (const [filters, want] of cases) assert.equal(matches(d, filters), want, JSON.stringify(filters));
  assert.ok(compareValues(null, false) < 0 && compareValues(1, 'a') < 0 && compareValues('a', [1]) < 0 && compareValues([1], { a: 1 }) < 0);
  assert.ok(compareValues(NaN, -Infinity) < 0);
});

test('optimistic op application', () => {
  const now = () => 'NOW';
  assert.deepEqual(applyOp({ a: 1, m: { x: 1, y: 2 } }, { op: 'update', path: 'c/d', data: { 'm.x': 5, n: { $transform: 'increment', by: 2 } } }, now), { a: 1, m: { x: 5, y: 2 }, n: 2 });
  assert.equal(applyOp(null, { op: 'update', path: 'c/d', data: { a: 1 } }), null, 'update of a missing document');
  assert.deepEqual(applyOp({ a: 1, b: 2 }, { op: 'set', path: 'c/d', data: { b: 3, c: 4 }, merge: ['b'] }), { a: 1, b: 3 });
  assert.deepEqual(applyOp({ a: 1 }, { op: 'set', path: 'c/d', data: { t: { $transform: 'server_timestamp' } } }, now), { t: 'NOW' });
  assert.deepEqual(applyOp({ l: [1, 2] }, { op: 'update', path: 'c/d', data: { l: { $transform: 'array_union', values: [2, 3] } } }), { l: [1, 2, 3] });
  assert.deepEqual(applyOp({ l: [1, 2, 1] }, { op: 'update', path: 'c/d', data: { l: { $transform: 'array_remove', values: [1] } } }), { l: [2] });
  assert.deepEqual(applyOp({ '`a.b`': 0 }, { op: 'update', path: 'c/d', data: { '`a.b`': 1 } }), { '`a.b`': 0, 'a.b': 1 });
  assert.equal(applyOp({ a: 1 }, { op: 'delete', path: 'c/d' }), null);
  assert.deepEqual(applyOp({ a: 1 }, { op: 'create', path: 'c/d', data: { b: 1 } }), { a: 1 }, 'create of an existing document changes nothing');
});

test('parseServerFrame ignores what is not a known frame', () => {
  for (const bad of ['', 'null', '[]', '{"type":1}', '{"type":"future"}', '{', '"x"']) assert.equal(parseServerFrame(bad), undefined, bad);
  assert.equal(parseServerFrame('{"type":"pong","id":"p1"}').type, 'pong');
});
