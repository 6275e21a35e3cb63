// NameBindings (src/egress/name-bindings.ts): which allowed names an address was returned for, until when.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NameBindings } from '../../../src/egress/name-bindings.ts';

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test('an address is bound to every name it was returned for, for the TTL plus the grace', () => {
  const c = clock();
  const b = new NameBindings({ now: c.now, graceS: 10 });
  b.bind('a.example', ['192.0.2.1', '192.0.2.2'], 60);
  b.bind('b.example', ['192.0.2.2'], 5);
  assert.deepEqual(b.namesFor('192.0.2.1'), ['a.example']);
  assert.deepEqual(b.namesFor('192.0.2.2').sort(), ['a.example', 'b.example']);
  assert.deepEqual(b.namesFor('192.0.2.3'), []);
  c.advance(15_000); // b.example: 5 s TTL + 10 s grace is over
  assert.deepEqual(b.namesFor('192.0.2.2'), ['a.example']);
  c.advance(55_000); // a.example: 60 + 10 s
  assert.deepEqual(b.namesFor('192.0.2.1'), []);
  assert.equal(b.size, 1, 'the expired address was dropped when looked at');
});

test('a later answer with a shorter TTL never cuts an earlier binding short', () => {
  const c = clock();
  const b = new NameBindings({ now: c.now, graceS: 0 });
  b.bind('a.example', ['192.0.2.1'], 100);
  b.bind('a.example', ['192.0.2.1'], 1);
  c.advance(50_000);
  assert.deepEqual(b.namesFor('192.0.2.1'), ['a.example']);
});

test('the table is bounded: expired bindings go first, then the oldest addresses', () => {
  const c = clock();
  const b = new NameBindings({ now: c.now, graceS: 0, maxAddresses: 8 });
  b.bind('old.example', ['192.0.2.1'], 1);
  for (let i = 2; i <= 8; i++) b.bind(`n${i}.example`, [`192.0.2.${i}`], 3600);
  c.advance(2_000);
  b.bind('new.example', ['192.0.2.9'], 3600); // full: the expired one makes room
  assert.equal(b.size, 8);
  assert.deepEqual(b.namesFor('192.0.2.2'), ['n2.example']);
  for (let i = 10; i < 100; i++) b.bind(`m${i}.example`, [`192.0.2.${i}`], 3600);
  assert.ok(b.size <= 8, `size ${b.size}`);
  assert.deepEqual(b.namesFor('192.0.2.99'), ['m99.example'], 'the newest binding is kept');
  assert.deepEqual(b.namesFor('192.0.2.2'), [], 'the oldest went');
});
