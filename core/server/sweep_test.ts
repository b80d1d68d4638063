import assert from "node:assert/strict";
import { RateLimiter, resolveLimits, type ServerLimits } from "./limits.ts";
import { RefusalLog } from "./refusals.ts";
import type { Session } from "./session.ts";
import { SessionSweeper } from "./sweep.ts";
import { newStats, recordingLogger, sessionOverMemory } from "./test_support.ts";

function sweeping(limits: Partial<ServerLimits>) {
  const { logger, records } = recordingLogger();
  const stats = newStats();
  const sessions = new Set<Session>();
  const resolved = resolveLimits(limits);
  const sweeper = new SessionSweeper({
    limits: resolved,
    logger,
    refusals: new RefusalLog({ logger, intervalMs: 0 }),
    stats,
    rates: new RateLimiter(resolved),
    sessions,
  });
  const open = (name: string) => {
    const opened = sessionOverMemory({ name });
    opened.session.acceptedAt = 0;
    opened.session.lastMessageAt = 0;
    sessions.add(opened.session);
    return opened;
  };
  return { sweeper, open, records, stats };
}

Deno.test("sweep: a connection that sent nothing within the handshake limit is closed and counted refused", async () => {
  const { sweeper, open, records, stats } = sweeping({ handshakeTimeoutMs: 100 });
  const silent = open("silent");
  const greeted = open("greeted");
  greeted.session.greeted = true;
  greeted.session.lastMessageAt = 150;
  sweeper.sweep(50);
  assert.equal(stats.refused, 0);
  sweeper.sweep(150);
  await silent.peer.done;
  assert.equal(silent.session.channel.closed, true);
  assert.equal(greeted.session.channel.closed, false);
  assert.equal(stats.refused, 1);
  assert.deepEqual(records.map((r) => [r.level, r.event, r.msg]), [[
    "warn",
    "unauthorized",
    "memory:silent: closing, no message arrived within 100 ms of connecting",
  ]]);
});

Deno.test("sweep: a client that owes the proof of its secret past the limit is closed", () => {
  const { sweeper, open, records } = sweeping({ handshakeTimeoutMs: 100 });
  const { session } = open("owing");
  session.greeted = true;
  session.awaitingProof = { name: "c2", secretHash: "0".repeat(64) };
  sweeper.sweep(101);
  assert.equal(
    records[0].msg,
    "memory:owing: closing, client c2 did not prove its secret within 100 ms of connecting",
  );
});

Deno.test("sweep: an idle connection is closed; one with a call in flight is not", () => {
  const { sweeper, open, records, stats } = sweeping({ idleTimeoutMs: 1000 });
  const idle = open("idle");
  const busy = open("busy");
  for (const { session } of [idle, busy]) session.greeted = true;
  busy.session.inflight.set(1, new AbortController());
  sweeper.sweep(1001);
  assert.equal(idle.session.channel.closed, true);
  assert.equal(busy.session.channel.closed, false);
  assert.equal(stats.refused, 0); // idle is not a refusal
  assert.deepEqual(records.map((r) => [r.level, r.event, r.msg]), [[
    "info",
    "disconnect",
    "memory:idle: closing, idle for 1000 ms",
  ]]);
});
