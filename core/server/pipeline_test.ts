import assert from "node:assert/strict";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import type { CallRequest } from "../wire/message.ts";
import { RUNNERS, servicesFor } from "../../tests/conformance/runners.ts";
import { CallAdmission } from "./admit.ts";
import { RateLimiter, resolveLimits, type ServerLimits } from "./limits.ts";
import { CallPipeline } from "./pipeline.ts";
import { CallRecorder } from "./record.ts";
import { RefusalLog } from "./refusals.ts";
import { Registry } from "./registry.ts";
import { CallRunner } from "./run.ts";
import { newStats, recordingLogger, sessionOverMemory } from "./test_support.ts";

const registry = await Registry.load(await servicesFor(RUNNERS[0]), {
  typescript: new InlineTypeScriptRunner(),
});

function pipeline(limits: Partial<ServerLimits> = {}) {
  const { logger, records } = recordingLogger();
  const stats = newStats();
  const resolved = resolveLimits(limits);
  const pipeline = new CallPipeline({
    registry,
    admission: new CallAdmission(resolved, new RateLimiter(resolved)),
    runner: new CallRunner(60_000),
    recorder: new CallRecorder({ logger, refusals: new RefusalLog({ logger }), stats }),
  });
  return { pipeline, records, stats };
}

const call = (service: string, rpc: string, args: unknown[]): CallRequest => ({
  service,
  rpc,
  arguments: args,
});

Deno.test("pipeline: a call goes through every stage to RPC-RES, and is counted and logged", async () => {
  const { pipeline: p, records, stats } = pipeline();
  const { session, peer } = sessionOverMemory();
  await p.call(session, 1, call("conf", "add", [[1, 2, 3]]));
  const [reply] = await peer.next();
  assert.deepEqual([reply.type, reply.serial, reply.value], [
    "RPC-RES",
    1,
    { "return-values": [6] },
  ]);
  assert.equal(session.calls, 1);
  assert.equal(session.inflight.size, 0);
  assert.equal(stats.callsServed, 1);
  assert.match(records[0].msg, /^memory:test conf\.add\(List\[int\]\) ok /);
});

Deno.test("pipeline: each stage's refusal is the call's RPC-EX, and the connection goes on", async () => {
  const { pipeline: p, records, stats } = pipeline({ clientRate: 1, clientBurst: 3 });
  const { session, peer } = sessionOverMemory();
  await p.call(session, 1, call("private", "echo", ["x"])); // authorize
  await p.call(session, 2, call("conf", "add", ["a", "b", "c"])); // resolve
  await p.call(session, 3, call("conf", "fail", ["boom"])); // run
  await p.call(session, 4, call("conf", "echo", ["x"])); // admit: over the burst of 3
  const replies = await peer.next(4);
  assert.deepEqual(
    replies.map((m) => [m.serial, m.type, (m.value as Record<string, string>)["exception-type"]]),
    [
      [1, "RPC-EX", "Client Not Registered"],
      [2, "RPC-EX", "Invalid Arguments"],
      [3, "RPC-EX", "Execution Exception"],
      [4, "RPC-EX", "Rate Limited"],
    ],
  );
  assert.equal(stats.callsFailed, 4);
  assert.deepEqual(records.map((r) => r.event), [
    "unauthorized",
    "exception",
    "exception",
    "exception",
  ]);
  assert.equal(session.inflight.size, 0);
});

Deno.test("pipeline: a new registry serves the calls resolved after it is set", async () => {
  const { pipeline: p } = pipeline();
  const { session, peer } = sessionOverMemory();
  p.registry = Registry.empty();
  await p.call(session, 1, call("conf", "echo", ["x"]));
  const [reply] = await peer.next();
  assert.equal((reply.value as Record<string, string>)["exception-type"], "Service Not Found");
});
