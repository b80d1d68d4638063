import assert from "node:assert/strict";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import { ErrorKind, RpcError } from "../errors.ts";
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

function pipeline(limits: Partial<ServerLimits> = {}, callTimeoutMs = 60_000) {
  const { logger, records } = recordingLogger();
  const stats = newStats();
  const resolved = resolveLimits(limits);
  const pipeline = new CallPipeline({
    registry,
    admission: new CallAdmission(resolved, new RateLimiter(resolved)),
    runner: new CallRunner(callTimeoutMs),
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

Deno.test("pipeline: a trusted procedure that returns at once is answered before call() returns, with no cancel handle", async () => {
  const { pipeline: p, stats } = pipeline();
  const { session, peer } = sessionOverMemory();
  const echo = p.call(session, 1, call("conf", "echo", ["x"]));
  const pair = p.call(session, 2, call("conf", "pair", [[1, 2], ["a", "b"]]));
  const fail = p.call(session, 3, call("conf", "fail", ["boom"]));
  // Answered in the same tick: nothing was ever in flight to cancel.
  assert.equal(session.inflight.size, 0);
  assert.equal(stats.callsServed, 2);
  assert.equal(stats.callsFailed, 1);
  await Promise.all([echo, pair, fail]);
  const replies = await peer.next(3);
  assert.deepEqual(replies.map((m) => [m.serial, m.type]), [
    [1, "RPC-RES"],
    [2, "RPC-RES"],
    [3, "RPC-EX"],
  ]);
  assert.deepEqual(replies[0].value, { "return-values": ["x"] });
  assert.deepEqual(replies[1].value, { "return-values": [["1:a", "2:b"]] });
  assert.match(
    (replies[2].value as Record<string, string>)["exception-message"],
    /boom/,
  );
});

Deno.test("pipeline: a trusted procedure that returns a promise is in flight, cancellable and timed", async () => {
  const { pipeline: p } = pipeline({}, 100);
  const { session, peer } = sessionOverMemory();
  const slow = p.call(session, 1, call("conf", "sleep", [5]));
  assert.equal(session.inflight.has(1), true, "a waiting call has its cancel handle");
  const cancelled = p.call(session, 2, call("conf", "sleep", [5]));
  session.inflight.get(2)!.abort(new RpcError(ErrorKind.Cancelled, "Call cancelled by the client"));
  await Promise.all([slow, cancelled]);
  const replies = await peer.next(2);
  const kinds = new Map(
    replies.map((m) => [m.serial, (m.value as Record<string, string>)["exception-type"]]),
  );
  assert.equal(kinds.get(1), "Timeout");
  assert.equal(kinds.get(2), "Cancelled");
  assert.equal(session.inflight.size, 0);
});
