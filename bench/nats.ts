/**
 * NATS against direct TCP (issue 16, item 4, third measurement): calls/s
 * and p50 of an echo through a nats-server on loopback and straight over
 * TCP, at 1, 16 and 64 calls in flight on one connection (one session).
 *
 * One `RpcServer` in this process, with an in-process procedure (no
 * sandbox), serves both: its TCP listener, and sessions taken through the
 * broker (`serveConnection`). The broker is a real `nats-server` process on
 * 127.0.0.1 (started here, stopped at the end). Client and server share one
 * process and its event loop; the broker has its own.
 *
 *     deno run --allow-all bench/nats.ts [--seconds 3]
 *
 * Not a test: figures depend on the machine and its load.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runBench } from "../core/client/bench.ts";
import { silentLogger } from "../core/log.ts";
import { type Procedure, type ProcedureSpec, Registry } from "../core/server/registry.ts";
import { RpcServer } from "../core/server/server.ts";
import { Broker } from "../core/transport/nats/mod.ts";
import { parseSignature } from "../core/types/types.ts";
import { startNats } from "../tests/nats_helpers.ts";

const { values: flags } = parseArgs({
  options: { seconds: { type: "string", default: "3" } },
});
const DURATION_MS = Number(flags.seconds) * 1000;
const LEVELS = [1, 16, 64];

const registry = await Registry.load([{
  name: "svc",
  procedures: [{
    service: "svc",
    rpc: "echo",
    signature: parseSignature(["str"], ["str"]),
    language: "typescript",
    path: "/bench/echo.ts",
    hash: "0".repeat(64),
  }],
}], {
  typescript: {
    load: (spec: ProcedureSpec): Promise<Procedure> =>
      Promise.resolve({ spec, invoke: (args: unknown[]) => Promise.resolve(args[0]) }),
    close: () => Promise.resolve(),
  },
});

const nats = await startNats();
const server = new RpcServer({
  registry,
  name: "bench",
  port: 0,
  logger: silentLogger(),
  limits: { maxConnectionsPerIp: 0, maxCallsPerConnection: 0 },
});
const tcp = await server.start();
const serving = await Broker.connect({ url: nats.url });
const listener = serving.listen({ name: "bench", services: () => ["svc"], version: "bench" });
(async () => {
  for (;;) {
    const session = await listener.accept();
    if (!session) return;
    server.serveConnection(session);
  }
})();
const client = await Broker.connect({ url: nats.url });

const rows: string[] = [];
try {
  for (const concurrency of LEVELS) {
    const figures: Record<string, { rps: number; p50: number }> = {};
    for (const path of ["tcp", "nats"] as const) {
      const report = await runBench({
        endpoint: { hostname: tcp.hostname, port: tcp.port },
        ...(path === "nats" ? { dial: () => client.open({ server: "bench" }) } : {}),
        service: "svc",
        rpc: "echo",
        args: ["hello"],
        concurrency,
        durationMs: DURATION_MS,
      });
      if (report.ok !== report.count) {
        throw new Error(`${path} C=${concurrency}: ${JSON.stringify(report.errors)}`);
      }
      figures[path] = { rps: report.rps, p50: report.latencyMs.p50 };
    }
    const { tcp: direct, nats: brokered } = figures;
    rows.push(
      `C=${String(concurrency).padEnd(3)} tcp ${direct.rps.toFixed(0).padStart(6)} calls/s p50 ${
        direct.p50.toFixed(3)
      } ms | nats ${brokered.rps.toFixed(0).padStart(6)} calls/s p50 ${
        brokered.p50.toFixed(3)
      } ms | nats/tcp ${(brokered.rps / direct.rps).toFixed(2)}×`,
    );
    console.log(rows.at(-1));
  }
} finally {
  listener.close();
  await client.close();
  await serving.close();
  await server.close();
  await nats.stop();
}
