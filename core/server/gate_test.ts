import assert from "node:assert/strict";
import { CONNECTION_SERIAL } from "../wire/message.ts";
import { memoryPair } from "../transport/memory.ts";
import { ConnectionGate } from "./gate.ts";
import { resolveLimits, type ServerLimits } from "./limits.ts";
import { RefusalLog } from "./refusals.ts";
import type { Session } from "./session.ts";
import { newStats, Peer, recordingLogger, sessionOverMemory } from "./test_support.ts";

function gate(limits: Partial<ServerLimits>) {
  const { logger, records } = recordingLogger();
  const stats = newStats();
  const sessions = new Set<Session>();
  const refusals = new RefusalLog({ logger, intervalMs: 0 });
  const gate = new ConnectionGate({
    limits: resolveLimits(limits),
    logger,
    refusals,
    stats,
    sessions,
  });
  /** Admits a connection from memory:name as the server does, or returns why not. */
  const connect = (name: string, id = sessions.size + 1) => {
    const decision = gate.check(`memory:${name}`);
    if (!decision.admitted) return { decision, opened: undefined };
    const opened = sessionOverMemory({ id, name, reserved: decision.over });
    sessions.add(opened.session);
    gate.opened(opened.session);
    return { decision, opened };
  };
  const close = (session: Session) => {
    sessions.delete(session);
    gate.closed(session);
  };
  return { gate, connect, close, records, stats };
}

Deno.test("gate: a peer over its connection limit is refused until one of its connections closes", () => {
  const { connect, close } = gate({ maxConnectionsPerIp: 2, adminReserve: 0 });
  const first = connect("a").opened!;
  connect("a");
  assert.deepEqual(connect("a").decision, {
    over: "memory:a has 2 connections (limit 2)",
    admitted: false,
  });
  assert.deepEqual(connect("b").decision, { over: undefined, admitted: true });
  close(first.session);
  assert.deepEqual(connect("a").decision, { over: undefined, admitted: true });
});

Deno.test("gate: refuse tells the peer why under the connection serial, closes, counts and logs it", async () => {
  const { gate: g, records, stats } = gate({});
  const [clientEnd, serverEnd] = memoryPair("flood");
  const peer = new Peer(clientEnd);
  g.refuse(serverEnd, "memory:flood", "the server has 9 connections (limit 9)");
  const [reply] = await peer.next();
  await peer.done;
  assert.deepEqual(reply, {
    type: "RPC-EX",
    serial: CONNECTION_SERIAL,
    value: {
      "exception-type": "Unavailable",
      "exception-message": "Connection refused: the server has 9 connections (limit 9)",
    },
  });
  assert.equal(stats.refused, 1);
  assert.deepEqual(
    records.map((r) => [r.level, r.event, r.msg]),
    [[
      "warn",
      "refused",
      "connection from memory:flood refused: the server has 9 connections (limit 9)",
    ]],
  );
});

Deno.test("gate: over the limit, a slot kept for admins is taken, and the oldest unproven one gives way", async () => {
  const { connect, records } = gate({ maxConnections: 1, adminReserve: 1 });
  connect("a");
  const second = connect("b");
  assert.deepEqual(second.decision, {
    over: "the server has 1 connections (limit 1)",
    admitted: true,
  });
  assert.equal(
    records.at(-1)?.msg,
    "connection from memory:b takes a slot kept for admins (the server has 1 connections (limit 1)): it must prove the admin token",
  );
  // A third takes the only reserved slot from the second, which has not proved the admin token.
  const third = connect("c");
  assert.equal(third.decision.admitted, true);
  const [evicted] = await second.opened!.peer.next();
  assert.deepEqual(evicted.value, {
    "exception-type": "Unavailable",
    "exception-message":
      "Connection refused: the server has 1 connections (limit 1); the slots kept for admins went to newer connections",
  });
  // An admin in the reserved slot keeps it: the next one over the limit is refused.
  third.opened!.session.admin = true;
  assert.deepEqual(connect("d").decision.admitted, false);
});

Deno.test("gate: refuseReserved answers what a non-admin sent in a reserved slot, and refuses the session", async () => {
  const { gate: g, connect, stats, records } = gate({ maxConnections: 1, adminReserve: 1 });
  connect("a");
  const { session, peer } = connect("b").opened!;
  assert.equal(g.refuseReserved(session, 7, "LIST"), false);
  assert.equal(session.refused, true);
  assert.equal(stats.refused, 1);
  const [reply] = await peer.next();
  assert.deepEqual(reply, {
    type: "RPC-EX",
    serial: 7,
    value: {
      "exception-type": "Unavailable",
      "exception-message":
        "Connection refused: the server has 1 connections (limit 1); the slots kept for admins need the admin token proven with AUTH first",
    },
  });
  assert.equal(
    records.at(-1)?.msg,
    "connection from memory:b refused: the server has 1 connections (limit 1) (LIST in a slot kept for admins)",
  );
  await peer.done; // the server's end was closed after the reply
});
