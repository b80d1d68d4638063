/**
 * The server's call path in one process: 64 calls of a trusted `echo(str)`
 * at once on one session over an in-memory connection, through every stage
 * to `RPC-RES`, each logged at the default level to a sink that discards
 * its bytes. Network and process scheduling are left out, so a change to a
 * stage shows here even when a whole-server run is too noisy to tell.
 *
 *     deno bench --allow-all core/server/pipeline_bench.ts
 *
 * @module
 */

import { BufferedSink, formatTextLine, Logger } from "../log.ts";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import type { CallRequest } from "../wire/message.ts";
import { RUNNERS, servicesFor } from "../../tests/conformance/runners.ts";
import { CallAdmission } from "./admit.ts";
import { RateLimiter, resolveLimits } from "./limits.ts";
import { CallPipeline } from "./pipeline.ts";
import { CallRecorder } from "./record.ts";
import { RefusalLog } from "./refusals.ts";
import { Registry } from "./registry.ts";
import { CallRunner } from "./run.ts";
import { newStats, sessionOverMemory } from "./test_support.ts";

const registry = await Registry.load(await servicesFor(RUNNERS[0]), {
  typescript: new InlineTypeScriptRunner(),
});
const logger = new Logger([
  // Not paced (interval 0), so that no bench iteration waits for the log.
  new BufferedSink({ write: (data) => Promise.resolve(data.length) }, formatTextLine, undefined, 0),
]);
const limits = resolveLimits({});
const pipeline = new CallPipeline({
  registry,
  admission: new CallAdmission(limits, new RateLimiter(limits)),
  runner: new CallRunner(60_000),
  recorder: new CallRecorder({ logger, refusals: new RefusalLog({ logger }), stats: newStats() }),
});
const { session, peer } = sessionOverMemory();
const request: CallRequest = { service: "conf", rpc: "echo", arguments: ["x".repeat(32)] };
const BATCH = 64;
let serial = 0;

Deno.bench(`pipeline: ${BATCH} trusted echo calls at once, logged`, async () => {
  const calls = [];
  for (let i = 0; i < BATCH; i++) {
    calls.push(pipeline.call(session, ++serial, request, performance.now()));
  }
  await Promise.all(calls);
  // The replies are read by the peer as they come; what it kept is dropped.
  peer.received.length = 0;
});
