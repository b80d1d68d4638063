/**
 * Fleet figures on one machine (issue 16, item 4, first two measurements):
 *
 * 1. fan-out: `callAll` of an echo to 10, 50 and 200 in-process servers, p50
 *    and p99 of the whole fan-out (connect, call, close: what one
 *    `rpc call --all` does), `--rounds` rounds each, with the default
 *    parallelism (16) and with all servers at once;
 * 2. balancing: 10 providers whose procedure sleeps 2 ms, one of them 20 ms
 *    (10× slower); 16 callers make `--calls` calls in total through one
 *    `ServiceClient` with `round-robin`, then `p2c`, and again with all ten
 *    fast as the reference; p50 and p99 per call.
 *
 * Servers are `RpcServer` instances in this process on 127.0.0.1 (port 0),
 * with an in-process procedure (no sandbox), so the figures are the
 * client's and the protocol's, not the sandboxes'. Client and servers share
 * one process and its event loop: a real fleet only does better.
 *
 *     deno run --allow-all bench/fleet.ts [--rounds 50] [--calls 4000]
 *
 * Not a test: figures depend on the machine and its load.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { Cluster, ServerEntry } from "../core/deploy/cluster.ts";
import { callAll } from "../core/client/fanout.ts";
import { ServiceClient } from "../core/client/failover.ts";
import { silentLogger } from "../core/log.ts";
import {
  type Procedure,
  type ProcedureSpec,
  Registry,
  type Runner,
} from "../core/server/registry.ts";
import { RpcServer } from "../core/server/server.ts";
import { parseSignature } from "../core/types/types.ts";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "50" },
    calls: { type: "string", default: "4000" },
  },
});
const ROUNDS = Number(flags.rounds);
const CALLS = Number(flags.calls);

/** A runner whose `echo` answers after `delayMs`. */
function echoRunner(delayMs: number): Runner {
  return {
    load: (spec: ProcedureSpec): Promise<Procedure> =>
      Promise.resolve({
        spec,
        invoke: async (args: unknown[]) => {
          if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
          return args[0];
        },
      }),
    close: () => Promise.resolve(),
  };
}

async function startServers(delays: number[]): Promise<{ servers: RpcServer[]; cluster: Cluster }> {
  const servers: RpcServer[] = [];
  const entries = new Map<string, ServerEntry>();
  const signature = parseSignature(["str"], ["str"]);
  for (const [i, delayMs] of delays.entries()) {
    const registry = await Registry.load([{
      name: "svc",
      procedures: [{
        service: "svc",
        rpc: "echo",
        signature,
        language: "typescript",
        path: "/bench/echo.ts",
        hash: "0".repeat(64),
      }],
    }], { typescript: echoRunner(delayMs) });
    const name = `s${i + 1}`;
    const server = new RpcServer({ registry, name, port: 0, logger: quiet });
    const address = await server.start();
    servers.push(server);
    entries.set(name, { name, host: address.hostname, port: address.port, position: nowhere });
  }
  const cluster: Cluster = {
    file: "bench",
    servers: entries,
    clients: new Map(),
    services: new Map([["svc", {
      name: "svc",
      providers: [...entries.keys()],
      rpcs: [{
        name: "echo",
        signature,
        source: "echo.ts",
        path: "/bench/echo.ts",
        language: "typescript",
        idempotent: true,
        position: nowhere,
        sourcePosition: nowhere,
      }],
      position: nowhere,
    }]]),
  };
  return { servers, cluster };
}

const nowhere = { line: 0, column: 0 };
const quiet = silentLogger();

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function summary(samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  return `p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms`;
}

async function fanOutFigures(): Promise<void> {
  console.log("## Fan-out (callAll of an echo, whole fan-out)\n");
  console.log("| servers | parallel | rounds | result |");
  console.log("| ------- | -------- | ------ | ------ |");
  for (const count of [10, 50, 200]) {
    const { servers, cluster } = await startServers(Array(count).fill(0));
    try {
      for (const parallel of [16, count]) {
        const samples: number[] = [];
        for (let round = 0; round < ROUNDS; round++) {
          const started = performance.now();
          const results = await callAll(cluster, "svc", "echo", ["x"], {
            parallel,
            timeoutMs: 30_000,
          });
          samples.push(performance.now() - started);
          const failed = results.filter((result) => !result.ok);
          if (failed.length > 0) throw new Error(`${failed.length} servers failed`);
        }
        console.log(`| ${count} | ${parallel} | ${ROUNDS} | ${summary(samples)} |`);
      }
    } finally {
      await Promise.all(servers.map((server) => server.close()));
    }
  }
}

async function balanceRun(delays: number[], policy: "round-robin" | "p2c"): Promise<string> {
  const { servers, cluster } = await startServers(delays);
  const client = new ServiceClient(cluster, "svc", { balance: policy });
  try {
    const samples: number[] = [];
    let left = CALLS;
    const caller = async () => {
      while (left-- > 0) {
        const started = performance.now();
        await client.call("echo", ["x"]);
        samples.push(performance.now() - started);
      }
    };
    await Promise.all(Array.from({ length: 16 }, caller));
    return summary(samples);
  } finally {
    client.close();
    await Promise.all(servers.map((server) => server.close()));
  }
}

async function balanceFigures(): Promise<void> {
  console.log(`\n## Balancing (10 providers, 16 callers, ${CALLS} calls)\n`);
  console.log("| providers | policy | result |");
  console.log("| --------- | ------ | ------ |");
  const fast = Array(10).fill(2);
  const oneSlow = [...fast.slice(0, 9), 20];
  for (const [label, delays] of [["all 2 ms", fast], ["one of ten 20 ms", oneSlow]] as const) {
    for (const policy of ["round-robin", "p2c"] as const) {
      console.log(`| ${label} | ${policy} | ${await balanceRun([...delays], policy)} |`);
    }
  }
}

await fanOutFigures();
await balanceFigures();
