import assert from "node:assert/strict";
import { VERSION } from "../version.ts";
import { callsInFlight, health } from "./health.ts";
import type { Session } from "./session.ts";
import { newStats, sessionOverMemory } from "./test_support.ts";

Deno.test("health: counters, open connections and calls in flight across them", () => {
  const stats = newStats();
  stats.connections = 5;
  stats.refused = 2;
  stats.callsServed = 40;
  stats.callsFailed = 3;
  const sessions = new Set<Session>();
  for (const name of ["a", "b"]) sessions.add(sessionOverMemory({ name }).session);
  const [a, b] = [...sessions];
  a.inflight.set(1, new AbortController());
  a.inflight.set(2, new AbortController());
  b.inflight.set(1, new AbortController());
  const report = health("s1", stats, sessions);
  assert.ok(report.uptimeMs >= 0);
  assert.deepEqual({ ...report, uptimeMs: 0 }, {
    server: "s1",
    version: VERSION,
    uptimeMs: 0,
    connections: 2,
    connectionsAccepted: 5,
    connectionsRefused: 2,
    callsServed: 40,
    callsFailed: 3,
    callsInFlight: 3,
  });
  assert.equal(callsInFlight([]), 0);
});
