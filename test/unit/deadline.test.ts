// src/deadline.ts: one timeout race, whose timer never outlives it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withDeadline } from '../../src/deadline.ts';

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

test('a race the work wins settles with it and leaves no timer behind', async () => {
  const before = timers();
  assert.equal(await withDeadline(Promise.resolve(42), 60_000, () => new Error('late')), 42);
  await assert.rejects(
    withDeadline(Promise.reject(new Error('boom')), 60_000, () => new Error('late')),
    /boom/,
  );
  assert.equal(timers(), before, 'the 60 s timers are cleared, not left pending');
});

test('a race the deadline wins rejects with the caller error', async () => {
  const late = new Error('late');
  const never = new Promise<number>(() => {});
  await assert.rejects(
    withDeadline(never, 1, () => late),
    (e) => e === late,
  );
});
