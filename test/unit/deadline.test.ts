// src/deadline.ts: one timeout race, whose timer never outlives it.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { delayUnless, onceWithin, withDeadline } from '../../src/deadline.ts';

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

test('onceWithin: the event, the error it emits, an ending event or the deadline; no listener or timer left', async () => {
  const before = timers();
  const e = new EventEmitter();
  const got = onceWithin(e, 'ready', 60_000, () => new Error('late'));
  e.emit('ready', 1, 2);
  assert.deepEqual(await got, [1, 2]);

  const failed = onceWithin(e, 'ready', 60_000, () => new Error('late'));
  e.emit('error', new Error('boom'));
  await assert.rejects(failed, /boom/);

  const gone = onceWithin(e, 'ready', 60_000, () => new Error('late'), {
    endsOn: ['close'],
    gone: () => new Error('went away'),
  });
  e.emit('close');
  await assert.rejects(gone, /went away/);

  await assert.rejects(
    onceWithin(e, 'ready', 1, () => new Error('late')),
    /late/,
  );
  for (const name of ['ready', 'error', 'close']) assert.equal(e.listenerCount(name), 0, name);
  assert.equal(timers(), before);
});

test('delayUnless: waits its time, or stops early when told, and leaves no timer', async () => {
  const before = timers();
  let stop!: () => void;
  const stopped = new Promise<void>((r) => {
    stop = r;
  });
  const t0 = Date.now();
  const waiting = delayUnless(60_000, stopped);
  stop();
  await waiting;
  assert.ok(Date.now() - t0 < 30_000, 'the stop cut the 60 s wait short');
  await delayUnless(5, new Promise(() => {}));
  assert.equal(timers(), before);
});
