import assert from "node:assert/strict";
import { BUSY_SHARE, processCpuMs, Spread } from "./sandbox_spread.ts";

Deno.test("Spread: one sandbox takes calls until every one taking them is busy", () => {
  const spread = new Spread(3);
  assert.equal(spread.count, 1);
  spread.update([BUSY_SHARE - 0.01]);
  assert.equal(spread.count, 1);
  spread.update([0.98]);
  assert.equal(spread.count, 2);
  // One of the two is not busy: the count holds.
  spread.update([0.98, 0.4]);
  assert.equal(spread.count, 2);
  spread.update([0.9, 0.8]);
  assert.equal(spread.count, 3);
  // Never past the pool's size.
  spread.update([1, 1, 1]);
  assert.equal(spread.count, 3);
});

Deno.test("Spread: one fewer takes calls when the work fits in one fewer", () => {
  const spread = new Spread(2);
  spread.update([1]);
  assert.equal(spread.count, 2);
  // Together more than one busy sandbox's worth: both stay.
  spread.update([0.5, 0.4]);
  assert.equal(spread.count, 2);
  spread.update([0.4, 0.3]);
  assert.equal(spread.count, 1);
  // Never fewer than one.
  spread.update([0]);
  assert.equal(spread.count, 1);
});

Deno.test("Spread: a sample missing a sandbox changes nothing; widen() opens them all", () => {
  const spread = new Spread(4);
  spread.update([1]);
  spread.update([1]);
  assert.equal(spread.count, 2);
  spread.update([1]);
  assert.equal(spread.count, 2);
  spread.widen();
  assert.equal(spread.count, 4);
});

Deno.test("processCpuMs reads a process's CPU time from /proc", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  const before = await processCpuMs(Deno.pid);
  assert.ok(before !== undefined);
  const end = performance.now() + 300;
  while (performance.now() < end) {
    // Burns CPU in this process.
  }
  const after = await processCpuMs(Deno.pid);
  assert.ok(after! - before >= 150, `300 ms of work counted as ${after! - before} ms`);
  assert.equal(await processCpuMs(2 ** 22 + 1), undefined);
});
