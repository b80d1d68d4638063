import assert from "node:assert/strict";
import { ReplyBudget, RESERVE_SHARE } from "./backpressure.ts";

const MiB = 1024 * 1024;

function budget(maxUnsentBytes = 16 * MiB, maxUnsentTotal = 0) {
  let resumed = 0;
  const replies = new ReplyBudget({ maxUnsentBytes, maxUnsentTotal });
  return { replies, resumed: () => resumed, open: () => replies.open(() => resumed++) };
}

Deno.test("ConnectionReplies runs calls at once while the client keeps up", () => {
  const { open } = budget();
  const connection = open();
  for (let i = 0; i < 10; i++) {
    assert.equal(connection.acquire(), undefined);
    connection.changed(100); // the reply is queued
    connection.release();
    connection.changed(-100); // and written
  }
  assert.equal(connection.unsent, 0);
  assert.equal(connection.running, 0);
  assert.ok(connection.mayRead());
});

Deno.test("ConnectionReplies runs at most 1/RESERVE_SHARE calls while reply sizes are unknown", () => {
  const { open } = budget();
  const connection = open();
  let started = 0;
  while (connection.acquire() === undefined) started++;
  assert.equal(started, Math.round(1 / RESERVE_SHARE));
  assert.equal(connection.waiting, 1);
  assert.equal(connection.mayRead(), false, "not read while calls wait");
});

Deno.test("ConnectionReplies holds calls and reading once a reply is past the bound", async () => {
  const { replies, resumed, open } = budget(1000);
  const connection = open();
  assert.equal(connection.acquire(), undefined, "a call always starts on an idle connection");
  connection.changed(1500);
  connection.release();
  assert.equal(connection.mayRead(), false);
  const order: number[] = [];
  const first = connection.acquire()!;
  const second = connection.acquire()!;
  first.then(() => order.push(1));
  second.then(() => order.push(2));
  assert.equal(replies.stalled, 1);
  connection.changed(-700); // 800 left: still over what a call may add
  await Promise.resolve();
  assert.deepEqual(order, []);
  connection.changed(-800); // all written: one call at a time, in order
  await Promise.resolve();
  assert.deepEqual(order, [1]);
  connection.changed(1500);
  connection.release();
  connection.changed(-1500);
  await Promise.resolve();
  assert.deepEqual(order, [1, 2]);
  connection.release();
  assert.ok(connection.mayRead());
  assert.equal(replies.stalled, 0);
  assert.ok(resumed() > 0, "the read loop was woken");
});

Deno.test("ConnectionReplies takes a waiting call out when its signal aborts", async () => {
  const { open } = budget(1000);
  const connection = open();
  connection.acquire();
  connection.changed(5000);
  connection.release();
  const controller = new AbortController();
  const waiting = connection.acquire(controller.signal)!;
  controller.abort(new Error("cancelled"));
  await assert.rejects(waiting, /cancelled/);
  assert.equal(connection.waiting, 0);
  connection.changed(-5000);
  assert.equal(connection.running, 0, "the aborted call never started");
});

Deno.test("ReplyBudget holds connections with a backlog once the total is reached", async () => {
  const { replies, open } = budget(0, 1000);
  const slow = open();
  const other = open();
  slow.acquire();
  slow.changed(1200);
  slow.release();
  assert.ok(replies.full);
  assert.equal(slow.mayRead(), false, "the connection with a backlog is held");
  assert.ok(other.mayRead(), "a connection that keeps up is not");
  assert.equal(other.acquire(), undefined);
  other.changed(10);
  const waiting = slow.acquire()!;
  let started = false;
  waiting.then(() => started = true);
  other.changed(-10);
  other.release();
  await Promise.resolve();
  assert.equal(started, false);
  slow.changed(-600); // under the total, but not with room for another reply of 1200 bytes
  await Promise.resolve();
  assert.equal(started, false);
  assert.equal(slow.mayRead(), false, "not read while a call waits");
  slow.changed(-600);
  await Promise.resolve();
  assert.ok(started);
  assert.ok(slow.mayRead());
});

Deno.test("ReplyBudget counts running calls against the total, so bursts add up", () => {
  const { replies, open } = budget(0, 64 * 1000);
  // Nothing is known of the replies yet: each call reserves 1/64 of the total.
  const first = open();
  let started = 0;
  while (first.acquire() === undefined) started++;
  assert.equal(started, 64);
  assert.equal(replies.reserved, 64 * 1000);
  // Another connection gets one call at a time: enough to make progress.
  const second = open();
  assert.equal(second.acquire(), undefined);
  assert.notEqual(second.acquire(), undefined);
});

Deno.test("ConnectionReplies.stalledFor() counts from the last byte written", () => {
  const { open } = budget();
  const connection = open();
  assert.equal(connection.stalledFor(), 0);
  connection.changed(100);
  const now = performance.now();
  assert.ok(connection.stalledFor(now + 5000) >= 5000);
  connection.changed(-100);
  assert.equal(connection.stalledFor(now + 5000), 0);
});
