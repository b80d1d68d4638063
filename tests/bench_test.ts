/**
 * End-to-end tests of `rpc bench`: a real `rpc server` process on 127.0.0.1,
 * loaded by `rpc bench` processes with a small bounded count. Only counts and
 * outcomes are asserted, never timings.
 *
 * Run: `deno test --allow-all tests/bench_test.ts`
 */

import assert from "node:assert/strict";
import { describeResult, rpc, startServer, writeInitYaml } from "./helpers.ts";

const SOURCE = `
export function echo(text: string): string {
  return text;
}

export function fail(text: string): string {
  throw new Error("refused " + text);
}

export function twice(n: number): number {
  return n * 2;
}

export async function slow(ms: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return ms;
}
`;

/** What `rpc bench --json` prints. */
interface Report {
  count: number;
  ok: number;
  errors: Record<string, number>;
  successRate: number;
  totalMs: number;
  rps: number;
  latencyMs: Record<"min" | "mean" | "p50" | "p90" | "p99" | "max", number>;
  histogram: { upToMs: number; count: number }[];
  concurrency: number;
  connections: number;
  latencyFrom: "start" | "due";
}

Deno.test("e2e: rpc bench against a real server", async (t) => {
  await using config = await writeInitYaml({
    servers: { b1: { ip: "127.0.0.1", port: 9 } },
    // Two clients on one IP: a connection that names neither is anonymous.
    clients: { c1: { ip: "127.0.0.1", port: 6000 }, c2: { ip: "127.0.0.1", port: 6001 } },
    services: {
      bench: { providers: ["b1"], rpcs: ["echo", "fail", "twice", "slow"] },
      members: { providers: ["b1"], tenants: ["c1"], rpcs: ["echo"] },
    },
    rpcs: [
      { name: "echo", args: ["str"], returns: ["str"], src: "bench.ts" },
      { name: "fail", args: ["str"], returns: ["str"], src: "bench.ts" },
      { name: "twice", args: ["int"], returns: ["int"], src: "bench.ts" },
      { name: "slow", args: ["int"], returns: ["int"], src: "bench.ts" },
    ],
    files: { "bench.ts": SOURCE },
  });
  await using server = await startServer({ name: "b1", config: config.path });

  const bench = async (args: string[], code = 0) => {
    const result = await rpc(["bench", "--config", config.path, server.address, ...args]);
    assert.equal(result.code, code, describeResult(result));
    return { report: JSON.parse(result.stdout) as Report, stderr: result.stderr };
  };

  await t.step("-n 200 -c 4 --json counts every call, all OK", async () => {
    const { report } = await bench(["bench", "echo", "hello", "-n", "200", "-c", "4", "--json"]);
    assert.equal(report.count, 200);
    assert.equal(report.ok, 200);
    assert.deepEqual(report.errors, {});
    assert.equal(report.successRate, 1);
    assert.equal(report.latencyFrom, "start");
    assert.equal(report.concurrency, 4);
    assert.equal(report.connections, 1);
    assert.equal(report.histogram.reduce((sum, row) => sum + row.count, 0), 200);
    const { min, p50, p90, p99, max } = report.latencyMs;
    assert.ok(min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max, JSON.stringify(report));
  });

  await t.step("an RPC that throws is counted by kind, and fails the run: exit 10", async () => {
    const { report, stderr } = await bench(
      ["bench", "fail", "x", "-n", "200", "-c", "4", "--json"],
      10,
    );
    assert.equal(report.count, 200);
    assert.equal(report.ok, 0);
    assert.equal(report.successRate, 0);
    assert.deepEqual(report.errors, { "Execution Exception": 200 });
    assert.equal(
      stderr.split("\n").filter((line) => line.startsWith("error:")).join("\n"),
      "error: Execution Exception: 200 of 200 calls failed (100.00%), more than --max-error-rate 0.00% allows",
    );
  });

  await t.step("--max-error-rate lets a share of failures pass", async () => {
    const { report } = await bench(
      ["bench", "fail", "x", "-n", "20", "--max-error-rate", "100%", "--json"],
    );
    assert.equal(report.ok, 0);
    const bad = await rpc(["bench", server.address, "bench", "echo", "x", "--max-error-rate", "2"]);
    assert.equal(bad.code, 2, describeResult(bad));
    assert.match(bad.stderr, /^error: --max-error-rate: expected a fraction from 0 to 1/);
  });

  await t.step("calling a service with tenants without --as: exit 14 and a hint", async () => {
    const result = await rpc([
      "bench",
      "--config",
      config.path,
      server.address,
      "members",
      "echo",
      "x",
      "-n",
      "50",
    ]);
    assert.equal(result.code, 14, describeResult(result));
    assert.match(
      result.stdout,
      /^0\.00% of 50 calls succeeded; failed: Client Not Registered 50\n\nSummary:\n/,
    );
    assert.match(result.stdout, /\n {2}Succeeded: +0 \(0\.00%\)\n/);
    assert.match(result.stderr, /^error: Client Not Registered: 50 of 50 calls failed/m);
    assert.match(result.stderr, /\nhint: .*--as CLIENT or set RPC_CLIENT/);
    const named = await bench(["--as", "c1", "members", "echo", "x", "-n", "50", "--json"]);
    assert.equal(named.report.ok, 50);
  });

  await t.step("--rps measures each call from when it was due: a backlog shows", async () => {
    // 20 calls are due within 1 s, but one at a time each takes 100 ms: the last is due at
    // 950 ms and cannot finish before 2 s. Measured from its own start it would take 100 ms.
    const { report } = await bench([
      "bench",
      "slow",
      "100",
      "--rps",
      "20",
      "--duration",
      "1s",
      "-c",
      "1",
      "--json",
    ]);
    assert.equal(report.latencyFrom, "due");
    assert.equal(report.count, 20, JSON.stringify(report));
    assert.ok(report.latencyMs.max >= 900, JSON.stringify(report.latencyMs));
    assert.ok(report.latencyMs.min >= 100, JSON.stringify(report.latencyMs));
  });

  await t.step("arguments are converted as by rpc call (int from init.yaml)", async () => {
    const { report } = await bench(["bench", "twice", "21", "-n", "50", "-c", "2", "--json"]);
    assert.equal(report.ok, 50, JSON.stringify(report));
  });

  await t.step("--connections and --connection-per-call", async () => {
    const spread = await bench([
      "bench",
      "echo",
      "x",
      "-n",
      "100",
      "-c",
      "8",
      "--connections",
      "4",
      "--json",
    ]);
    assert.equal(spread.report.ok, 100);
    assert.equal(spread.report.connections, 4);
    const fresh = await bench([
      "bench",
      "echo",
      "x",
      "-n",
      "40",
      "-c",
      "2",
      "--connection-per-call",
      "--json",
    ]);
    assert.equal(fresh.report.ok, 40);
    assert.equal(fresh.report.connections, 0);
  });

  await t.step("the text report names the outcomes; progress goes to stderr", async () => {
    const result = await rpc([
      "bench",
      "--config",
      config.path,
      server.address,
      "bench",
      "fail",
      "x",
      "--duration",
      "1500ms",
      "--rps",
      "200",
      "--max-error-rate",
      "1",
    ]);
    assert.equal(result.code, 0, describeResult(result));
    assert.match(
      result.stdout,
      /^0\.00% of \d+ calls succeeded; failed: Execution Exception \d+\n\nSummary:\n {2}Count: +\d+\n/,
    );
    assert.match(result.stdout, /\nLatency \(from when each call was due at the set rate\):\n/);
    assert.match(result.stdout, /\n {2}\[OK\] 0\n {2}\[Execution Exception\] \d+\n?$/);
    assert.match(result.stdout, /\nHistogram:\n/);
    // Not a terminal: one progress line per second, at least one in 1.5 s.
    assert.match(result.stderr, /^1 s {2}\d+ calls {2}\d+ calls\/s {2}\d+ errors?$/m);
  });

  await t.step("an unknown RPC is counted as RPC Not Found", async () => {
    const { report } = await bench([
      "bench",
      "nothing",
      "x",
      "--types",
      "str",
      "-n",
      "20",
      "--json",
    ], 13);
    assert.deepEqual(report.errors, { "RPC Not Found": 20 });
  });

  await t.step("a server nobody listens on exits 3", async () => {
    const result = await rpc(["bench", "127.0.0.1:9", "bench", "echo", "x", "-n", "1"]);
    assert.equal(result.code, 3, describeResult(result));
    assert.match(result.stderr, /^error: Unavailable: /);
  });
});
