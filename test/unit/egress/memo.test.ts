// boundedMemo (src/egress/memo.ts): what the proxy keeps per target and the relay per deny list.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { boundedMemo } from '../../../src/egress/memo.ts';

test('a memo computes each key once while it is kept', () => {
  const calls: string[] = [];
  const memo = boundedMemo(8, (k: string) => {
    calls.push(k);
    return { k };
  });
  const first = memo('a');
  assert.equal(memo('a'), first);
  memo('b');
  assert.deepEqual(calls, ['a', 'b']);
});

test('a full memo drops its oldest half and recomputes it on demand; the newest entries stay', () => {
  let computed = 0;
  const memo = boundedMemo(4, (k: number) => {
    computed++;
    return k * 2;
  });
  for (let i = 0; i < 1000; i++) memo(i);
  assert.equal(computed, 1000);
  // The newest keys are still there; the oldest were dropped and come back by recomputing.
  assert.equal(memo(999), 1998);
  assert.equal(computed, 1000);
  assert.equal(memo(0), 0);
  assert.equal(computed, 1001);
});

test('a computation that throws is not kept', () => {
  let calls = 0;
  const memo = boundedMemo(4, (k: string) => {
    calls++;
    if (k === 'bad') throw new Error('bad entry');
    return k;
  });
  assert.throws(() => memo('bad'), /bad entry/);
  assert.throws(() => memo('bad'), /bad entry/);
  assert.equal(calls, 2);
});
