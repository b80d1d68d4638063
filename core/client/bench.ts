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
 * import { sha256Hex } from "../hash.ts";
 * import { Registry } from "../server/registry.ts";
 * import { InlineTypeScriptRunner } from "../runners/typescript.ts";
 * import { RpcServer } from "../server/server.ts";
 * import { parseSignature } from "../types/types.ts";
 *
 * const path = fileURLToPath(new URL("../../services/service1/rpc1.ts", import.meta.url));
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

import type { CallOptions, ClientOptions, Endpoint, PreparedCall, RpcClient } from "./client.ts";
import { connect } from "./connect.ts";
import { RpcError } from "../errors.ts";
import { build as buildHistogram, type Histogram } from "hdr-histogram-js";
import type { TlsClientOptions } from "../transport/mod.ts";

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
  /** Opens each connection instead of dialing `endpoint` (a session through a broker). */
  dial?: ClientOptions["dial"];
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
  /** `ok / count`, from 0 to 1 (0 when no call finished). */
  successRate: number;
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
  /**
   * Where each call's latency is measured from: its `start`, or with `rps`
   * the moment it was `due` by the schedule (so waiting for a free slot
   * behind a slow call counts).
   */
  latencyFrom: "start" | "due";
}

/** Latencies are recorded in whole microseconds, up to one hour. */
const HIGHEST_TRACKABLE_US = 3_600_000_000;

/**
 * Upper bounds of the histogram's rows, in ms: 1, 2 and 5 times each power
 * of ten from 10 µs to 1000 s. Fixed rows need no pass over the samples
 * (min and max are not known until the end) and read easily.
 */
const ROW_BOUNDS_MS: readonly number[] = (() => {
  const bounds: number[] = [];
  for (let decade = 0.01; decade <= 1_000_000; decade *= 10) {
    for (const step of [1, 2, 5]) bounds.push(Number((decade * step).toPrecision(3)));
  }
  return bounds;
})();

/**
 * Records latencies: percentiles from an HDR histogram (hdr-histogram-js,
 * three significant digits, constant memory however many calls), and a
 * count per row of {@linkcode ROW_BOUNDS_MS} for the printed histogram.
 */
export class LatencyRecorder {
  #histogram: Histogram = buildHistogram({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_TRACKABLE_US,
    numberOfSignificantValueDigits: 3,
  });
  #rows = new Float64Array(ROW_BOUNDS_MS.length + 1);
  #count = 0;
  #sum = 0;
  #min = Infinity;
  #max = 0;

  /** Records one latency in ms. */
  record(ms: number): void {
    const value = Math.max(0, ms);
    this.#histogram.recordValue(
      Math.min(HIGHEST_TRACKABLE_US, Math.max(1, Math.round(value * 1000))),
    );
    let row = 0;
    while (row < ROW_BOUNDS_MS.length && value > ROW_BOUNDS_MS[row]) row++;
    this.#rows[row]++;
    this.#count++;
    this.#sum += value;
    if (value < this.#min) this.#min = value;
    if (value > this.#max) this.#max = value;
  }

  /** How many latencies were recorded. */
  get count(): number {
    return this.#count;
  }

  /**
   * The figures (min, mean and max exact; percentiles within 0.1%) and the
   * histogram rows from the first non-empty one to the last.
   */
  summary(): { latencyMs: LatencySummary; histogram: BenchReport["histogram"] } {
    if (this.#count === 0) {
      return { latencyMs: { min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 }, histogram: [] };
    }
    // A percentile is never reported outside what was measured.
    const at = (percentile: number) =>
      Math.min(
        this.#max,
        Math.max(this.#min, this.#histogram.getValueAtPercentile(percentile) / 1000),
      );
    const first = this.#rows.findIndex((count) => count > 0);
    const last = this.#rows.findLastIndex((count) => count > 0);
    const histogram: BenchReport["histogram"] = [];
    for (let row = first; row <= last; row++) {
      histogram.push({
        upToMs: row < ROW_BOUNDS_MS.length ? Math.min(ROW_BOUNDS_MS[row], this.#max) : this.#max,
        count: this.#rows[row],
      });
    }
    return {
      latencyMs: {
        min: this.#min,
        mean: this.#sum / this.#count,
        p50: at(50),
        p90: at(90),
        p99: at(99),
        max: this.#max,
      },
      histogram,
    };
  }
}

/**
 * Summarizes latencies (ms) into figures and a histogram, as a run does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { summarize } from "./bench.ts";
 * const { latencyMs, histogram } = summarize(new Float64Array([0.3, 0.4, 3, 4]));
 * assert.equal(latencyMs.min, 0.3);
 * assert.equal(latencyMs.max, 4);
 * assert.ok(Math.abs(latencyMs.p50 - 0.4) < 0.001);
 * assert.deepEqual(histogram.map((row) => row.count), [2, 0, 0, 2]);
 * ```
 */
export function summarize(latencies: Float64Array): {
  latencyMs: LatencySummary;
  histogram: BenchReport["histogram"];
} {
  const recorder = new LatencyRecorder();
  for (const value of latencies) recorder.record(value);
  return recorder.summary();
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
    ...(options.dial ? { dial: options.dial } : {}),
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
  const recorder = new LatencyRecorder();
  const errors: Record<string, number> = {};
  let started = 0;
  let finished = 0;
  let failed = 0;
  const begin = performance.now();
  const deadline = begin + durationMs;
  const interval = options.rps ? 1000 / options.rps : 0;

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

  // A call ends where the next one on this loop starts, and the calls whose replies came in one
  // read end together: one clock reading serves every loop resumed in the same tick (it is
  // dropped by a microtask queued behind them), so a batch of 64 calls reads the clock once.
  let tickNow = -1;
  const endTick = () => {
    tickNow = -1;
  };
  const now = () => {
    if (tickNow < 0) {
      tickNow = performance.now();
      queueMicrotask(endTick);
    }
    return tickNow;
  };
  // The call is encoded once per connection; each call still goes with a serial of its own.
  // Arguments that cannot be encoded fail every call, counted as they come, as unprepared calls do.
  const preparedCalls = clients.map((client): PreparedCall | undefined => {
    try {
      return client.prepare(service, rpc, args, callOptions);
    } catch {
      return undefined;
    }
  });
  const loop = async (index: number): Promise<void> => {
    const client = connectionCount > 0 ? clients[index % connectionCount] : undefined;
    const prepared = connectionCount > 0 ? preparedCalls[index % connectionCount] : undefined;
    let t0 = now();
    while (started < total) {
      if (interval > 0) {
        // Open loop: call k is due at begin + k × interval, however long earlier calls take.
        const due = begin + started * interval;
        if (due >= deadline) break;
        started++;
        const current = performance.now();
        if (due > current) await new Promise((resolve) => setTimeout(resolve, due - current));
        // Latency counts from when the call was due, not from when a free slot let it start:
        // a stall then shows in every call it delayed (no coordinated omission).
        t0 = due;
      } else {
        if (t0 >= deadline) break;
        started++;
      }
      try {
        if (prepared) await prepared.call();
        else if (client) await client.call(service, rpc, args, callOptions);
        else await callOnce();
      } catch (error) {
        const kind = RpcError.from(error).kind;
        errors[kind] = (errors[kind] ?? 0) + 1;
        failed++;
      }
      // At a set rate, a call's latency counts from its due time, so it needs a fresh reading.
      const t1 = interval > 0 ? performance.now() : now();
      recorder.record(t1 - t0);
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
  const { latencyMs, histogram } = recorder.summary();
  return {
    count: finished,
    ok: finished - failed,
    errors,
    successRate: finished === 0 ? 0 : (finished - failed) / finished,
    totalMs,
    rps: (finished * 1000) / totalMs,
    latencyMs,
    histogram,
    concurrency,
    connections: connectionCount,
    latencyFrom: interval > 0 ? "due" : "start",
  };
}

/** Formats milliseconds for people: `87 µs`, `1.25 ms`, `2.40 s`. */
export function formatMs(value: number): string {
  if (value < 1) return `${(value * 1000).toFixed(0)} µs`;
  if (value < 1000) return `${value.toFixed(2)} ms`;
  return `${(value / 1000).toFixed(2)} s`;
}

/** A fraction as a percentage with two decimals: `99.50%`. */
export function formatRate(fraction: number): string {
  return `${(fraction * 100).toFixed(2)}%`;
}

/**
 * The first line of a report: how many calls succeeded and, when some
 * failed, how they failed, e.g. `0.00% of 5000 calls succeeded; failed:
 * Client Not Registered 5000`.
 */
export function headline(report: BenchReport): string {
  const kinds = Object.entries(report.errors).sort(([, a], [, b]) => b - a);
  const failed = kinds.map(([kind, count]) => `${kind} ${count}`).join(", ");
  return `${formatRate(report.successRate)} of ${report.count} calls succeeded${
    failed ? `; failed: ${failed}` : ""
  }`;
}

/** Formats a report as text, ghz-style: summary, latency, histogram, outcomes. */
export function formatReport(report: BenchReport): string {
  const ms = formatMs;
  const lines = [
    headline(report),
    "",
    "Summary:",
    `  Count:        ${report.count}`,
    `  Succeeded:    ${report.ok} (${formatRate(report.successRate)})`,
    `  Total:        ${(report.totalMs / 1000).toFixed(2)} s`,
    `  Calls/s:      ${report.rps.toFixed(0)}${
      report.ok < report.count ? " (failed ones included)" : ""
    }`,
    `  In flight:    ${report.concurrency} over ${
      report.connections
        ? `${report.connections} connection${report.connections === 1 ? "" : "s"}`
        : "a new connection per call"
    }`,
    "",
    report.latencyFrom === "due"
      ? "Latency (from when each call was due at the set rate):"
      : "Latency:",
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
