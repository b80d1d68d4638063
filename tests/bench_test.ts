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
`;

/** What `rpc bench --json` prints. */
interface Report {
  count: number;
  ok: number;
  errors: Record<string, number>;
  totalMs: number;
  rps: number;
  latencyMs: Record<"min" | "mean" | "p50" | "p90" | "p99" | "max", number>;
  histogram: { upToMs: number; count: number }[];
  concurrency: number;
  connections: number;
}

Deno.test("e2e: rpc bench against a real server", async (t) => {
  await using config = await writeInitYaml({
    servers: { b1: { ip: "127.0.0.1", port: 9 } },
    services: { bench: { providers: ["b1"], rpcs: ["echo", "fail", "twice"] } },
    rpcs: [
      { name: "echo", args: ["str"], returns: ["str"], src: "bench.ts" },
      { name: "fail", args: ["str"], returns: ["str"], src: "bench.ts" },
      { name: "twice", args: ["int"], returns: ["int"], src: "bench.ts" },
    ],
    files: { "bench.ts": SOURCE },
  });
  await using server = await startServer({ name: "b1", config: config.path });

  const bench = async (args: string[]) => {
    const result = await rpc(["bench", "--config", config.path, server.address, ...args]);
    assert.equal(result.code, 0, describeResult(result));
    return { report: JSON.parse(result.stdout) as Report, stderr: result.stderr };
  };

  await t.step("-n 200 -c 4 --json counts every call, all OK", async () => {
    const { report } = await bench(["bench", "echo", "hello", "-n", "200", "-c", "4", "--json"]);
    assert.equal(report.count, 200);
    assert.equal(report.ok, 200);
    assert.deepEqual(report.errors, {});
    assert.equal(report.concurrency, 4);
    assert.equal(report.connections, 1);
    assert.equal(report.histogram.reduce((sum, row) => sum + row.count, 0), 200);
    const { min, p50, p90, p99, max } = report.latencyMs;
    assert.ok(min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max, JSON.stringify(report));
  });

  await t.step("an RPC that throws is counted by exception kind", async () => {
    const { report } = await bench(["bench", "fail", "x", "-n", "200", "-c", "4", "--json"]);
    assert.equal(report.count, 200);
    assert.equal(report.ok, 0);
    assert.deepEqual(report.errors, { "Execution Exception": 200 });
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
    ]);
    assert.equal(result.code, 0, describeResult(result));
    assert.match(result.stdout, /^Summary:\n {2}Count: +\d+\n/);
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
    ]);
    assert.deepEqual(report.errors, { "RPC Not Found": 20 });
  });

  await t.step("a server nobody listens on exits 3", async () => {
    const result = await rpc(["bench", "127.0.0.1:9", "bench", "echo", "x", "-n", "1"]);
    assert.equal(result.code, 3, describeResult(result));
    assert.match(result.stderr, /^error: Unavailable: /);
  });
});
