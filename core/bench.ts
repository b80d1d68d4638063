/**
 * A load generator for rpc servers, in the manner of ghz: a number of calls
 * in flight spread over a number of connections, for a count or a duration,
 * optionally capped at a rate, with a latency distribution and a count per
 * outcome.
 *
 * @example 100 calls of the demo's `rpc1`, served in this process for the example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileURLToPath } from "node:url";
 * import { formatReport, runBench } from "./bench.ts";
 * import { sha256Hex } from "./hash.ts";
 * import { Registry } from "./registry.ts";
 * import { InlineTypeScriptRunner } from "./runners/typescript.ts";
 * import { RpcServer } from "./server.ts";
 * import { parseSignature } from "./types.ts";
 *
 * const path = fileURLToPath(new URL("../services/service1/rpc1.ts", import.meta.url));
 * const rpc1 = {
 *   service: "service1", rpc: "rpc1", signature: parseSignature(["int", "str"], ["str"]),
 *   language: "typescript" as const, path, hash: sha256Hex(await Deno.readTextFile(path)),
 *   trusted: true,
 * };
 * const registry = await Registry.load(
 *   [{ name: "service1", procedures: [rpc1] }],
 *   { typescript: new InlineTypeScriptRunner() },
 * );
 * const server = new RpcServer({ registry });
 * const endpoint = await server.start();
 *
 * const report = await runBench({
 *   endpoint,
 *   service: "service1",
 *   rpc: "rpc1",
 *   args: [3, "ab"],
 *   concurrency: 4,
 *   total: 100,
 * });
 * assert.equal(report.count, 100);
 * assert.equal(report.ok, 100);
 * assert.deepEqual(report.errors, {});
 * assert.equal(report.histogram.reduce((sum, row) => sum + row.count, 0), 100);
 * assert.match(formatReport(report), /\[OK\] 100/); // the table `rpc bench` prints
 * await server.close();
 * ```
 *
 * @module
 */

import { type CallOptions, connect, type Endpoint, type RpcClient } from "./client.ts";
import { RpcError } from "./errors.ts";
import type { TlsClientOptions } from "./transport.ts";

/** Options of {@linkcode runBench}. */
export interface BenchOptions {
  endpoint: Endpoint;
  client?: string;
  /** The client's secret, when the server knows one for it. */
  secret?: string;
  /** Connect with TLS. */
  tls?: TlsClientOptions;
  /** The source address to connect from (the address `rpc up` gives this client). */
  localAddress?: string;
  service: string;
  rpc: string;
  args: unknown[];
  argumentTypes?: string[];
  returnTypes?: string[];
  /** Calls in flight at once. Default 1. */
  concurrency?: number;
  /** Connections the calls are spread over. Default 1 (at most `concurrency`). */
  connections?: number;
  /** Stop after this many calls. */
  total?: number;
  /** Stop after this long (ms). Default 10 s when `total` is not given. */
  durationMs?: number;
  /** Cap on calls started per second, over all connections. */
  rps?: number;
  /** Open a new connection for every call (and close it after). */
  connectionPerCall?: boolean;
  /** Time limit of one call in ms; a call past it counts as `Timeout`. Default: none. */
  timeoutMs?: number;
  /** Time limit of connecting in ms. Default 10 s. */
  connectTimeoutMs?: number;
  /** Called about once a second while running. */
  onProgress?: (progress: BenchProgress) => void;
}

/** A snapshot while running. */
export interface BenchProgress {
  count: number;
  errors: number;
  elapsedMs: number;
  /** Calls per second over the last interval. */
  rate: number;
}

/** Latency figures in milliseconds. */
export interface LatencySummary {
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** The result of a run. */
export interface BenchReport {
  /** Calls that finished, with a reply or a failure. */
  count: number;
  ok: number;
  /** Failed calls by exception kind, e.g. `{"Execution Exception": 3}`. */
  errors: Record<string, number>;
  totalMs: number;
  /** Finished calls per second. */
  rps: number;
  /** Latency of every finished call, failed ones included. */
  latencyMs: LatencySummary;
  /** Latency histogram: calls that took at most `upToMs` (and more than the row before). */
  histogram: { upToMs: number; count: number }[];
  concurrency: number;
  /** Connections used; 0 for a new connection per call. */
  connections: number;
}

/** Growable store of latencies. */
class Samples {
  values = new Float64Array(1 << 16);
  length = 0;
  push(value: number): void {
    if (this.length === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.length++] = value;
  }
}

function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[index];
}

/**
 * Summarizes latencies (ms) into figures and a histogram of `buckets` rows
 * from the fastest to the slowest. Rows grow geometrically (each bound is the
 * previous one times the same factor), so one slow outlier does not squeeze
 * every other call into the first row, as equal rows would.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { summarize } from "./bench.ts";
 * const { latencyMs, histogram } = summarize(new Float64Array([1, 2, 3, 4]), 2);
 * assert.equal(latencyMs.p50, 2);
 * assert.equal(latencyMs.max, 4);
 * assert.deepEqual(histogram.map((row) => row.count), [2, 2]);
 * ```
 */
export function summarize(latencies: Float64Array, buckets = 10): {
  latencyMs: LatencySummary;
  histogram: BenchReport["histogram"];
} {
  const sorted = latencies.slice().sort();
  if (sorted.length === 0) {
    return { latencyMs: { min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 }, histogram: [] };
  }
  let sum = 0;
  for (const value of sorted) sum += value;
  const min = sorted[0];
  const max = sorted[sorted.length - 1];
  const histogram: BenchReport["histogram"] = [];
  // Geometric bounds from min to max; equal steps when min is 0 (no ratio to take).
  const floor = min > 0 ? min : 0;
  const factor = floor > 0 ? Math.pow(max / floor, 1 / buckets) : 0;
  const step = (max - min) / buckets || 1;
  let index = 0;
  for (let bucket = 1; bucket <= buckets; bucket++) {
    const upToMs = bucket === buckets
      ? max
      : factor > 0
      ? floor * Math.pow(factor, bucket)
      : min + step * bucket;
    let count = 0;
    while (index < sorted.length && sorted[index] <= upToMs) {
      count++;
      index++;
    }
    histogram.push({ upToMs, count });
  }
  return {
    latencyMs: {
      min,
      mean: sum / sorted.length,
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      max,
    },
    histogram,
  };
}

/**
 * Runs a benchmark and reports what it measured. Connecting the first time
 * fails the whole run (`Unavailable`, `Timeout`, ...); after that, every
 * failure is counted by kind and the run goes on.
 */
export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
  const connectionCount = options.connectionPerCall
    ? 0
    : Math.max(1, Math.min(Math.floor(options.connections ?? 1), concurrency));
  const total = options.total ?? Infinity;
  const durationMs = options.durationMs ?? (options.total === undefined ? 10_000 : Infinity);
  const clientOptions = {
    ...(options.client ? { client: options.client } : {}),
    ...(options.secret ? { secret: options.secret } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    ...(options.connectTimeoutMs ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
  };
  const clients: RpcClient[] = [];
  try {
    for (let i = 0; i < connectionCount; i++) {
      clients.push(await connect(options.endpoint, clientOptions));
    }
  } catch (error) {
    for (const client of clients) client.close();
    throw error;
  }
  const callOptions: CallOptions = {
    ...(options.argumentTypes ? { argumentTypes: options.argumentTypes } : {}),
    ...(options.returnTypes ? { returnTypes: options.returnTypes } : {}),
    ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
  };
  const { service, rpc, args } = options;
  const samples = new Samples();
  const errors: Record<string, number> = {};
  let started = 0;
  let finished = 0;
  let failed = 0;
  const begin = performance.now();
  const deadline = begin + durationMs;
  const interval = options.rps ? 1000 / options.rps : 0;
  let nextSlot = begin;

  let progressTimer: ReturnType<typeof setInterval> | undefined;
  if (options.onProgress) {
    const onProgress = options.onProgress;
    let lastCount = 0;
    let lastTime = begin;
    progressTimer = setInterval(() => {
      const now = performance.now();
      onProgress({
        count: finished,
        errors: failed,
        elapsedMs: now - begin,
        rate: ((finished - lastCount) * 1000) / (now - lastTime),
      });
      lastCount = finished;
      lastTime = now;
    }, 1000);
  }

  const callOnce = async (): Promise<void> => {
    const once = await connect(options.endpoint, clientOptions);
    try {
      await once.call(service, rpc, args, callOptions);
    } finally {
      once.close();
    }
  };

  // One clock reading per call: a call ends where the next one on this loop starts.
  const loop = async (index: number): Promise<void> => {
    const client = connectionCount > 0 ? clients[index % connectionCount] : undefined;
    let t0 = performance.now();
    while (started < total && t0 < deadline) {
      started++;
      if (interval > 0) {
        const slot = nextSlot;
        nextSlot = Math.max(nextSlot + interval, t0);
        if (slot > t0) await new Promise((resolve) => setTimeout(resolve, slot - t0));
        t0 = performance.now();
      }
      try {
        if (client) await client.call(service, rpc, args, callOptions);
        else await callOnce();
      } catch (error) {
        const kind = RpcError.from(error).kind;
        errors[kind] = (errors[kind] ?? 0) + 1;
        failed++;
      }
      const t1 = performance.now();
      samples.push(t1 - t0);
      finished++;
      t0 = t1;
    }
  };

  try {
    await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(i)));
  } finally {
    if (progressTimer !== undefined) clearInterval(progressTimer);
    for (const client of clients) client.close();
  }
  const totalMs = performance.now() - begin;
  const { latencyMs, histogram } = summarize(samples.values.subarray(0, samples.length));
  return {
    count: finished,
    ok: finished - failed,
    errors,
    totalMs,
    rps: (finished * 1000) / totalMs,
    latencyMs,
    histogram,
    concurrency,
    connections: connectionCount,
  };
}

/** Formats milliseconds for people: `87 µs`, `1.25 ms`, `2.40 s`. */
export function formatMs(value: number): string {
  if (value < 1) return `${(value * 1000).toFixed(0)} µs`;
  if (value < 1000) return `${value.toFixed(2)} ms`;
  return `${(value / 1000).toFixed(2)} s`;
}

/** Formats a report as text, ghz-style: summary, latency, histogram, outcomes. */
export function formatReport(report: BenchReport): string {
  const ms = formatMs;
  const lines = [
    "Summary:",
    `  Count:        ${report.count}`,
    `  Total:        ${(report.totalMs / 1000).toFixed(2)} s`,
    `  Calls/s:      ${report.rps.toFixed(0)}`,
    `  In flight:    ${report.concurrency} over ${
      report.connections
        ? `${report.connections} connection${report.connections === 1 ? "" : "s"}`
        : "a new connection per call"
    }`,
    "",
    "Latency:",
    `  min ${ms(report.latencyMs.min)}   mean ${ms(report.latencyMs.mean)}   p50 ${
      ms(report.latencyMs.p50)
    }`,
    `  p90 ${ms(report.latencyMs.p90)}   p99 ${ms(report.latencyMs.p99)}   max ${
      ms(report.latencyMs.max)
    }`,
    "",
    "Histogram:",
  ];
  const widest = Math.max(1, ...report.histogram.map((row) => row.count));
  for (const row of report.histogram) {
    const bar = "∎".repeat(Math.round((row.count / widest) * 40));
    lines.push(`  ${ms(row.upToMs).padStart(10)} [${String(row.count).padStart(8)}] |${bar}`);
  }
  lines.push("", "Outcomes:", `  [OK] ${report.ok}`);
  for (const [kind, count] of Object.entries(report.errors)) lines.push(`  [${kind}] ${count}`);
  return lines.join("\n");
}
