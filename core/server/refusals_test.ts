import assert from "node:assert/strict";
import { Logger, MemorySink } from "../log.ts";
import { RefusalLog } from "./refusals.ts";

function setup(options: { intervalMs?: number; maxGroups?: number } = {}) {
  let now = 1_000;
  const log = new MemorySink();
  const audit = new MemorySink();
  const refusals = new RefusalLog({
    logger: new Logger([log]),
    audit: new Logger([audit], { level: "debug" }),
    intervalMs: options.intervalMs ?? 10_000,
    ...(options.maxGroups ? { maxGroups: options.maxGroups } : {}),
    now: () => now,
  });
  return {
    refusals,
    log,
    audit,
    advance(ms: number) {
      now += ms;
    },
    messages: (sink: MemorySink) => sink.records.map((record) => record.msg),
  };
}

Deno.test("RefusalLog: the first refusal is written, the rest are counted and summarised", () => {
  const { refusals, log, audit, advance, messages } = setup();
  try {
    assert.equal(refusals.refused("10.0.0.9", "address c3", true), true);
    for (let i = 0; i < 12_345; i++) {
      assert.equal(refusals.refused("10.0.0.9", "address c3", true), false);
    }
    // Another reason, and another peer, are groups of their own.
    assert.equal(refusals.refused("10.0.0.9", "not a tenant of vault", true), true);
    assert.equal(refusals.refused("10.0.0.8", "address c3", true), true);
    advance(10_000);
    refusals.flush();
    assert.deepEqual(messages(log), [
      "10.0.0.9: refused 12,345 more times in the last 10 s (address c3)",
    ]);
    assert.deepEqual(messages(audit), messages(log));
    assert.equal(log.records[0].count, 12_345);
    assert.equal(log.records[0].event, "refused-repeatedly");
    assert.equal(log.records[0].level, "warn");
  } finally {
    refusals.close();
  }
});

Deno.test("RefusalLog: a group idle for a whole interval is forgotten, so the next refusal is written", () => {
  const { refusals, log, advance } = setup();
  try {
    assert.equal(refusals.refused("10.0.0.9", "secret c1"), true);
    advance(5_000);
    assert.equal(refusals.refused("10.0.0.9", "secret c1"), false);
    advance(5_000);
    refusals.flush();
    assert.equal(log.records.length, 1);
    // Still refused within the interval after: counted, and summarised again.
    advance(3_000);
    assert.equal(refusals.refused("10.0.0.9", "secret c1"), false);
    advance(7_000);
    refusals.flush();
    assert.equal(log.records.length, 2);
    assert.match(log.records[1].msg, /refused 1 more times in the last 10 s \(secret c1\)$/);
    // A quiet interval: forgotten.
    advance(10_000);
    refusals.flush();
    assert.equal(refusals.refused("10.0.0.9", "secret c1"), true);
    // An unaudited group is summarised in the log only.
    assert.equal(log.records.length, 2);
  } finally {
    refusals.close();
  }
});

Deno.test("RefusalLog: connection lines of a peer refused repeatedly are counted, others written", () => {
  const { refusals, log, advance, messages } = setup();
  try {
    assert.equal(refusals.quiet("10.0.0.9", true), false, "not refused yet");
    refusals.refused("10.0.0.9", "address c3");
    assert.equal(refusals.quiet("10.0.0.9", true), false, "refused only once");
    refusals.refused("10.0.0.9", "address c3");
    for (let i = 0; i < 500; i++) assert.equal(refusals.quiet("10.0.0.9", true), true);
    assert.equal(refusals.quiet("10.0.0.9"), true, "not counted without count");
    assert.equal(refusals.quiet("10.0.0.8", true), false, "another peer");
    advance(10_000);
    refusals.flush();
    assert.deepEqual(messages(log), [
      "10.0.0.9: refused 1 more times in the last 10 s (address c3)",
      "10.0.0.9: 500 more connection attempts in the last 10 s, not logged one by one while it is refused repeatedly",
    ]);
    // The interval after the last counted refusal has passed: its connections are written again.
    assert.equal(refusals.quiet("10.0.0.9", true), false);
  } finally {
    refusals.close();
  }
});

Deno.test("RefusalLog: beyond maxGroups, refusals are counted together", () => {
  const { refusals, log, advance } = setup({ maxGroups: 3 });
  try {
    let written = 0;
    for (let peer = 0; peer < 1_000; peer++) {
      if (refusals.refused(`10.0.${peer >> 8}.${peer & 255}`, "admin token")) written++;
    }
    assert.equal(written, 3);
    advance(10_000);
    refusals.flush();
    assert.deepEqual(log.records.map((record) => record.msg), [
      "other peers: refused 997 more times in the last 10 s (various)",
    ]);
  } finally {
    refusals.close();
  }
});

Deno.test("RefusalLog: an interval of 0 writes every refusal", () => {
  const { refusals, log } = setup({ intervalMs: 0 });
  for (let i = 0; i < 5; i++) assert.equal(refusals.refused("10.0.0.9", "address c3"), true);
  assert.equal(refusals.quiet("10.0.0.9", true), false);
  refusals.close();
  assert.equal(log.records.length, 0);
});

Deno.test("RefusalLog: close() writes what was counted", () => {
  const { refusals, log, advance } = setup();
  refusals.refused("10.0.0.9", "address c3");
  refusals.refused("10.0.0.9", "address c3");
  advance(2_500);
  refusals.close();
  assert.deepEqual(log.records.map((record) => record.msg), [
    "10.0.0.9: refused 1 more times in the last 2.5 s (address c3)",
  ]);
});
