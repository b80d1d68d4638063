/**
 * `rpc ping`: is a server up, what is it running, and what code does it
 * serve? Asks the public `health` op (version, uptime, connections, call
 * counts) and `state` op (the SHA-256 of every deployed procedure), and
 * measures the round trip.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { optional } from "@optique/core/modifiers";
import { command, constant } from "@optique/core/primitives";
import { connect } from "../core/client/connect.ts";
import { exitCodeOf } from "./exit_codes.ts";
import { RpcError } from "../core/errors.ts";
import { formatAddress } from "../core/transport/mod.ts";
import type { StateReport } from "../core/deploy/messages.ts";
import { parseHealth } from "../core/client/replies.ts";
import type { Health } from "../core/server/server.ts";
import { stringifyJson } from "../core/types/types.ts";
import {
  asOption,
  configOption,
  examples,
  jsonFlag,
  OutputClosed,
  print,
  resolveServer,
  securityOptions,
  serverArgument,
  timeoutOption,
  UsageError,
} from "./common.ts";
import { checkFanOutFlags, type FanOutFlags, fanOutOptions } from "./fanout_flags.ts";
import { clientSettings, connectOptions } from "./settings.ts";

/** The parser of `rpc ping`. */
export const pingCommand = command(
  "ping",
  object({
    command: constant("ping" as const),
    ...securityOptions,
    config: configOption,
    as: asOption,
    json: jsonFlag,
    timeout: timeoutOption,
    ...fanOutOptions,
    server: optional(serverArgument),
  }),
  {
    brief: message`Check that a server answers; show its version, uptime, load and deployed code.`,
    description:
      message`Connects, asks the server's public health and state, and prints its version, uptime, open connections, calls served and failed, the round-trip time, and the SHA-256 of every deployed procedure (compare with ${"rpc hash FILE"} to confirm what rpc init shipped). Exits 0 when the server answers, 3 when it cannot be reached, 4 on timeout. With ${"--all"}, one line per server of init.yaml.`,
    footer: examples(
      "rpc ping s1",
      "rpc ping 127.0.0.1:8181 --json",
      "rpc ping --config /etc/rpc/init.yaml s2 --timeout 2s",
      "rpc ping --all --config init.yaml",
    ),
  },
);

/** Options of {@linkcode runPing}, as parsed. */
export interface PingCommandOptions extends Partial<FanOutFlags> {
  config?: string;
  as?: string;
  json: boolean;
  timeout?: string;
  /** Absent with `--all`. */
  server?: string;
}

/** What `rpc ping --json` prints. */
export interface PingReport extends Health {
  ok: true;
  address: string;
  /** Time to connect and shake hands, in ms. */
  connectMs: number;
  /** Round trip of the `health` request on the open connection, in ms. */
  roundTripMs: number;
  generation?: number;
  installedAt?: string;
  /** `service.rpc(types)` → SHA-256 of its source, for every deployed procedure. */
  code?: Record<string, string>;
}

/**
 * Formats a duration for people: `3d 4h`, `2h 5m`, `4m 12s`, `9.2s`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatUptime } from "./ping.ts";
 * assert.equal(formatUptime(3_723_000), "1h 2m");
 * ```
 */
export function formatUptime(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const [d, h, m, s] = [
    Math.floor(seconds / 86400),
    Math.floor(seconds / 3600) % 24,
    Math.floor(seconds / 60) % 60,
    seconds % 60,
  ];
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s}s`;
  return `${(ms / 1000).toFixed(1)}s`;
}

/** The plain-text report. */
export function pingLines(report: PingReport): string[] {
  const lines = [
    `${report.server} (${report.address}): rpc ${report.version}, up ${
      formatUptime(report.uptimeMs)
    }, round trip ${report.roundTripMs.toFixed(2)} ms`,
    `  connections  ${report.connections} open, ${report.connectionsAccepted} accepted, ${report.connectionsRefused} refused since start`,
    `  calls        ${report.callsServed} served, ${report.callsFailed} failed, ${report.callsInFlight} in flight`,
  ];
  if (report.code) {
    const count = Object.keys(report.code).length;
    lines.push(
      report.generation
        ? `  deployed     generation ${report.generation}, installed ${report.installedAt}, ${count} procedures`
        : `  deployed     nothing yet`,
    );
    for (const [procedure, hash] of Object.entries(report.code)) {
      lines.push(`    ${hash}  ${procedure}`);
    }
  }
  return lines;
}

/** What `rpc ping --json` prints when the server does not answer. */
export interface PingFailure {
  ok: false;
  server: string;
  /** `host:port`, when the server could be resolved to one. */
  address?: string;
  error: { kind: string; message: string; exitCode: number };
}

/**
 * Runs `rpc ping`; returns the exit code. With `--json`, a failure is also
 * printed as JSON ({@linkcode PingFailure}) on stdout before it is reported
 * on stderr, so that a script reading stdout always gets JSON.
 */
export async function runPing(options: PingCommandOptions): Promise<number> {
  const fanOut = { ...options, all: options.all ?? false };
  checkFanOutFlags(fanOut);
  if (fanOut.all) {
    if (options.server !== undefined) throw new UsageError("Give a SERVER or --all, not both");
    // Only --all needs the fan-out, which brings deploy and hashing with it.
    const { runPingAll } = await import("./fanout.ts");
    return await runPingAll(fanOut);
  }
  if (options.server === undefined) throw new UsageError("rpc ping needs a SERVER, or --all");
  const server = options.server;
  let address: string | undefined;
  try {
    return await ping({ ...options, server }, (resolved) => address = resolved);
  } catch (error) {
    if (!options.json || error instanceof UsageError || error instanceof OutputClosed) throw error;
    const failure = RpcError.from(error);
    const report: PingFailure = {
      ok: false,
      server,
      ...(address ? { address } : {}),
      error: { kind: failure.kind, message: failure.message, exitCode: exitCodeOf(failure.kind) },
    };
    print(stringifyJson(report));
    throw failure;
  }
}

async function ping(
  options: PingCommandOptions & { server: string },
  resolved: (address: string) => void,
): Promise<number> {
  const settings = await clientSettings(options);
  const endpoint = resolveServer(options.server, settings.cluster, settings.broker !== undefined);
  // Through a broker a server has no address of ours: it is its name there.
  const address = settings.broker ? `nats:${endpoint.name}` : formatAddress(endpoint);
  resolved(settings.broker ? address : `${endpoint.hostname}:${endpoint.port}`);
  const started = performance.now();
  const client = await connect(endpoint, connectOptions(settings));
  const connectMs = performance.now() - started;
  try {
    const sent = performance.now();
    const health = parseHealth(
      await client.admin({ op: "health" }, { timeoutMs: settings.timeoutMs }),
    );
    const roundTripMs = performance.now() - sent;
    // Loaded here, not at start: the planner brings node:crypto with it.
    const [{ fetchState }, { procedureKey }] = await Promise.all([
      import("../core/deploy/client.ts"),
      import("../core/deploy/plan.ts"),
    ]);
    let state: StateReport | undefined;
    try {
      state = await fetchState(client, { timeoutMs: settings.timeoutMs });
    } catch {
      // A server without deployments (a library server) has no state to show.
    }
    const report: PingReport = {
      ok: true,
      ...health,
      address,
      connectMs,
      roundTripMs,
      ...(state
        ? {
          generation: state.generation,
          installedAt: state.installedAt,
          code: Object.fromEntries(
            state.procedures.map((procedure) => [procedureKey(procedure), procedure.hash]),
          ),
        }
        : {}),
    };
    if (options.json) print(stringifyJson(report));
    else for (const line of pingLines(report)) print(line);
    return 0;
  } finally {
    client.close();
  }
}
