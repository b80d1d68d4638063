import assert from "node:assert/strict";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import { CONNECTION_SERIAL, type Message } from "../wire/message.ts";
import { RUNNERS, servicesFor } from "../../tests/conformance/runners.ts";
import { AdminRoute } from "./admin_route.ts";
import { CallAdmission } from "./admit.ts";
import { Dispatcher } from "./dispatch.ts";
import { ConnectionGate } from "./gate.ts";
import { health } from "./health.ts";
import { Identification } from "./identify.ts";
import { RateLimiter, resolveLimits } from "./limits.ts";
import { CallPipeline } from "./pipeline.ts";
import { CallRecorder } from "./record.ts";
import { RefusalLog } from "./refusals.ts";
import { Registry } from "./registry.ts";
import { CallRunner } from "./run.ts";
import type { Session } from "./session.ts";
import { newStats, recordingLogger, sessionOverMemory } from "./test_support.ts";

const registry = await Registry.load(await servicesFor(RUNNERS[0]), {
  typescript: new InlineTypeScriptRunner(),
});

/** Every stage, real, wired as RpcServer wires them; and a session being read. */
function dispatching() {
  const { logger, records } = recordingLogger();
  const stats = newStats();
  const limits = resolveLimits();
  const sessions = new Set<Session>();
  const refusals = new RefusalLog({ logger });
  const gate = new ConnectionGate({ limits, logger, refusals, stats, sessions });
  const dispatcher = new Dispatcher({
    logger,
    identification: new Identification({
      name: "s1",
      clients: new Map([["owner", { name: "owner" }]]),
      logger,
      refusals,
      stats,
      gate,
    }),
    pipeline: new CallPipeline({
      registry,
      admission: new CallAdmission(limits, new RateLimiter(limits)),
      runner: new CallRunner(60_000),
      recorder: new CallRecorder({ logger, refusals, stats }),
    }),
    admin: new AdminRoute({ health: () => health("s1", stats, sessions), logger, refusals }),
  });
  const { session, peer } = sessionOverMemory();
  const reading = dispatcher.read(session);
  return { session, peer, reading, records };
}

const request = (serial: number, rpc: string, args: unknown[], client?: string): Message => ({
  type: "RPC-REQ",
  serial,
  value: { service: "conf", rpc, arguments: args, ...(client ? { client } : {}) },
});

Deno.test("dispatch: the first RPC-REQ identifies the connection, then runs; LIST and ADMIN health answer", async () => {
  const { session, peer, reading } = dispatching();
  peer.channel.send(request(1, "echo", ["hi"], "owner"));
  peer.channel.send({ type: "LIST", serial: 2, value: {} });
  peer.channel.send({ type: "ADMIN", serial: 3, value: { op: "health" } });
  const replies = await peer.next(3);
  const bySerial = new Map(replies.map((m) => [m.serial, m]));
  assert.deepEqual(bySerial.get(1)?.value, { "return-values": ["hi"] });
  assert.equal(bySerial.get(2)?.type, "LIST-RES");
  assert.equal(bySerial.get(3)?.type, "ADMIN-RES");
  assert.equal(session.client, "owner");
  peer.conn.close();
  await reading;
});

Deno.test("dispatch: a serial already in flight is refused under the connection's serial; cancel ends the call", async () => {
  const { peer, reading, records } = dispatching();
  peer.channel.send(request(1, "sleep", [30]));
  peer.channel.send(request(1, "echo", ["again"]));
  const [refused] = await peer.next(1);
  assert.deepEqual([refused.type, refused.serial, refused.value], [
    "RPC-EX",
    CONNECTION_SERIAL,
    {
      "exception-type": "Malformed Frame",
      "exception-message": "Serial 1 is already in use by a call in flight on this connection",
    },
  ]);
  assert.ok(records.some((r) => r.event === "protocol"));
  peer.channel.send({ type: "RPC-CANCEL", serial: 1, value: {} });
  const [, cancelled] = await peer.next(2);
  assert.deepEqual([cancelled.serial, cancelled.value], [1, {
    "exception-type": "Cancelled",
    "exception-message": "Call cancelled by the client",
  }]);
  peer.conn.close();
  await reading;
});

Deno.test("dispatch: a message only a server sends is refused, and the connection goes on", async () => {
  const { peer, reading } = dispatching();
  peer.channel.send({ type: "LIST-RES", serial: 4, value: { services: [] } });
  peer.channel.send(request(5, "echo", ["still here"]));
  const [refused, answered] = await peer.next(2);
  assert.deepEqual(refused.value, {
    "exception-type": "Malformed Frame",
    "exception-message": "A server does not accept LIST-RES messages",
  });
  assert.deepEqual(answered.value, { "return-values": ["still here"] });
  peer.conn.close();
  await reading;
});

Deno.test("dispatch: after the client half-closes, its calls in flight are still answered, then the connection ends", async () => {
  const { peer, reading } = dispatching();
  peer.channel.send(request(1, "sleep", [0.05]));
  await peer.channel.flush();
  await peer.conn.closeWrite();
  await reading;
  const [reply] = await peer.next(1);
  assert.deepEqual(reply.value, { "return-values": ["slept 0.05s"] });
  await peer.done;
});
