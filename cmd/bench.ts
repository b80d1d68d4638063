/**
 * `rpc bench`: load a server with one RPC and report what it sustained, in
 * the manner of ghz: calls in flight over some connections, for a count or a
 * duration, optionally capped at a rate; then count, time, calls/s, latency
 * figures, a histogram, and the outcomes by exception kind.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { multiple, optional, withDefault } from "@optique/core/modifiers";
import { argument, command, constant, flag, option } from "@optique/core/primitives";
import { integer, string } from "@optique/core/valueparser";
import { type BenchProgress, formatRate, formatReport, runBench } from "../core/client/bench.ts";
import { type ErrorKind, RpcError } from "../core/errors.ts";
import { connect } from "../core/client/connect.ts";
import { stringifyJson } from "../core/types/types.ts";
import { declaredTypes, typedArguments, typesOption } from "./arguments.ts";
import {
  asOption,
  configLongOption,
  examples,
  jsonFlag,
  parseDuration,
  print,
  resolveServer,
  rpcArgument,
  securityOptions,
  serverArgument,
  serviceArgument,
  timeoutOption,
  UsageError,
  writeAll,
} from "./common.ts";
import { clientSettings, connectOptions } from "./settings.ts";

/** The parser of `rpc bench`. */
export const benchCommand = command(
  "bench",
  object({
    command: constant("bench" as const),
    ...securityOptions,
    config: configLongOption,
    as: asOption,
    json: jsonFlag,
    types: typesOption,
    timeout: timeoutOption,
    concurrency: withDefault(
      option("-c", "--concurrency", integer({ min: 1, max: 100_000, metavar: "N" }), {
        description: message`Calls in flight at once.`,
      }),
      1,
    ),
    connections: withDefault(
      option("--connections", integer({ min: 1, max: 10_000, metavar: "N" }), {
        description: message`Connections the calls in flight are spread over (at most ${"-c"}).`,
      }),
      1,
    ),
    total: optional(option("-n", "--total", integer({ min: 1, metavar: "TOTAL" }), {
      description: message`Stop after this many calls.`,
    })),
    duration: optional(option("--duration", string({ metavar: "DURATION" }), {
      description:
        message`Stop after this long (e.g. ${"10s"}, ${"1m"}); default 10s unless ${"-n"} is given. With both, whichever comes first.`,
    })),
    rps: optional(option("--rps", integer({ min: 1, metavar: "N" }), {
      description: message`Start at most this many calls per second, over all connections.`,
    })),
    maxErrorRate: withDefault(
      option("--max-error-rate", string({ metavar: "RATE" }), {
        description:
          message`Fail (exit non-zero) when more than this share of the calls fail: a fraction (${"0.01"}) or a percentage (${"1%"}).`,
      }),
      "0",
    ),
    connectionPerCall: withDefault(
      flag("--connection-per-call", {
        description:
          message`Open a new connection (with its handshake) for every call, and close it after.`,
      }),
      false,
    ),
    server: serverArgument,
    service: serviceArgument,
    rpc: rpcArgument,
    args: multiple(argument(string({ metavar: "ARG" }), {
      description: message`Arguments, converted to the RPC's declared types as by rpc call.`,
    })),
  }),
  {
    brief: message`Load a server with one RPC and report calls/s and latency.`,
    description:
      message`Keeps ${"-c"} calls in flight over ${"--connections"} connections until ${"-n"} calls have finished or ${"--duration"} has passed, and prints the count, total time, calls/s, min/mean/p50/p90/p99/max latency, a latency histogram, and the outcomes by exception kind; a failed call is counted and the run goes on. With ${"--rps"}, calls are started on a fixed schedule and each call's latency counts from when it was due, so a stall is not hidden. Arguments are converted as by rpc call. Progress goes to stderr about once a second. ${"--timeout"} bounds connecting, asking the server for the signatures, and each call. Exit status: 0 when no more calls failed than ${"--max-error-rate"} allows (default: none), else the exit code of the most frequent failure (14 for Client Not Registered, ...); 3 when the server cannot be reached.`,
    footer: examples(
      "rpc bench --as c1 s1 service1 rpc1 3 ab -n 10000 -c 16",
      "rpc bench --as c1 127.0.0.1:8181 service1 add 2 3 --duration 30s -c 64 --connections 4",
      "rpc bench --as c1 s1 service1 rpc1 3 ab --rps 500 --duration 1m --json > report.json",
      "rpc bench --as c1 s1 service1 rpc1 3 ab --connection-per-call -n 1000 --max-error-rate 1%",
    ),
  },
);

/** Options of {@linkcode runBenchCommand}, as parsed. */
export interface BenchCommandOptions {
  config?: string;
  as?: string;
  json: boolean;
  types?: string;
  timeout?: string;
  concurrency: number;
  connections: number;
  total?: number;
  duration?: string;
  rps?: number;
  maxErrorRate: string;
  connectionPerCall: boolean;
  server: string;
  service: string;
  rpc: string;
  args: readonly string[];
}

const encoder = new TextEncoder();

/** One progress line: `3 s  12345 calls  4102 calls/s  0 errors`. */
export function formatProgress(progress: BenchProgress): string {
  const errors = progress.errors === 1 ? "1 error" : `${progress.errors} errors`;
  return `${Math.round(progress.elapsedMs / 1000)} s  ${progress.count} calls  ${
    Math.round(progress.rate)
  } calls/s  ${errors}`;
}

/**
 * Writes progress to stderr: rewriting one line on a terminal, else one line
 * per report. Returns a function that ends the progress display.
 */
function progressWriter(stream: typeof Deno.stderr = Deno.stderr) {
  const terminal = stream.isTerminal();
  let shown = false;
  return {
    show(progress: BenchProgress): void {
      const line = formatProgress(progress);
      writeAll(stream, encoder.encode(terminal ? `\r\x1b[K${line}` : `${line}\n`));
      shown = true;
    },
    end(): void {
      if (terminal && shown) writeAll(stream, encoder.encode("\r\x1b[K"));
    },
  };
}

/** Runs `rpc bench`; returns the exit code. */
export async function runBenchCommand(options: BenchCommandOptions): Promise<number> {
  const maxErrorRate = parseErrorRate(options.maxErrorRate);
  const settings = await clientSettings(options);
  const endpoint = resolveServer(options.server, settings.cluster, settings.broker !== undefined);
  let durationMs: number | undefined;
  if (options.duration !== undefined) {
    durationMs = parseDuration(options.duration);
    if (durationMs <= 0) {
      throw new UsageError(`--duration must be positive, got "${options.duration}"`);
    }
  }
  const connecting = connectOptions(settings);
  const client = await connect(endpoint, connecting);
  let typed;
  try {
    typed = await typedArguments(options, settings.cluster, client, {
      timeoutMs: settings.timeoutMs,
    });
  } finally {
    client.close();
  }
  const progress = progressWriter();
  let report;
  try {
    report = await runBench({
      endpoint,
      ...(settings.client ? { client: settings.client } : {}),
      ...(settings.secret ? { secret: settings.secret } : {}),
      ...(settings.tls ? { tls: settings.tls } : {}),
      ...(connecting.localAddress ? { localAddress: connecting.localAddress } : {}),
      ...(connecting.dial ? { dial: connecting.dial } : {}),
      service: options.service,
      rpc: options.rpc,
      args: typed.values,
      ...declaredTypes(typed.chosen),
      concurrency: options.concurrency,
      connections: options.connections,
      ...(options.total !== undefined ? { total: options.total } : {}),
      ...(durationMs !== undefined ? { durationMs } : {}),
      ...(options.rps !== undefined ? { rps: options.rps } : {}),
      connectionPerCall: options.connectionPerCall,
      timeoutMs: settings.timeoutMs,
      connectTimeoutMs: settings.timeoutMs,
      onProgress: progress.show,
    });
  } finally {
    progress.end();
  }
  print(options.json ? stringifyJson(report) : formatReport(report));
  const failed = report.count - report.ok;
  if (report.count > 0 && failed / report.count > maxErrorRate) {
    // The most frequent failure names the run's failure and gives its exit code.
    const [kind] = Object.entries(report.errors).sort(([, a], [, b]) => b - a)[0];
    throw new RpcError(
      kind as ErrorKind,
      `${failed} of ${report.count} calls failed (${
        formatRate(failed / report.count)
      }), more than --max-error-rate ${formatRate(maxErrorRate)} allows`,
    );
  }
  return 0;
}

/**
 * Reads `--max-error-rate`: a fraction from 0 to 1 (`0.01`) or a
 * percentage (`1%`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseErrorRate } from "./bench.ts";
 * assert.equal(parseErrorRate("1%"), 0.01);
 * assert.equal(parseErrorRate("0.5"), 0.5);
 * ```
 * @throws {UsageError} for anything else.
 */
export function parseErrorRate(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(%?)$/.exec(text.trim());
  const rate = match ? Number(match[1]) / (match[2] ? 100 : 1) : NaN;
  if (!(rate >= 0 && rate <= 1)) {
    throw new UsageError(
      `--max-error-rate: expected a fraction from 0 to 1 or a percentage, got "${text}"`,
    );
  }
  return rate;
}
