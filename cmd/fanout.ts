/**
 * `--all`: `rpc call`, `rpc ping` and `rpc hash` asking every server at once
 * and reporting one line per server (see `core/client/fanout.ts`).
 *
 * @module
 */

import type { RpcClient } from "../core/client/client.ts";
import type { Cluster, ServerEntry } from "../core/deploy/cluster.ts";
import type { BrokerSettings } from "./broker.ts";
import { fetchState } from "../core/deploy/client.ts";
import type { StateReport } from "../core/deploy/messages.ts";
import { procedureKey } from "../core/deploy/plan.ts";
import {
  callAll,
  fanOut,
  type FanOutOptions,
  pickServers,
  type ServerResult,
} from "../core/client/fanout.ts";
import { ErrorKind, RpcError } from "../core/errors.ts";
import { ServiceClient } from "../core/client/failover.ts";
import { sha256Hex } from "../core/hash.ts";
import { parseHealth } from "../core/client/replies.ts";
import type { Health } from "../core/server/server.ts";
import { stringifyJson } from "../core/types/types.ts";
import { declaredTypes, typedArguments } from "./arguments.ts";
import { fanOutExitCode } from "./exit_codes.ts";
import { oneLine, plain, print, UsageError, writeAll } from "./common.ts";
import type { FanOutFlags } from "./fanout_flags.ts";
import { formatUptime } from "./ping.ts";
import { type ClientSettings, clientSettings, connectOptions } from "./settings.ts";

/** Fleets at least this large get a progress line on a terminal. */
const PROGRESS_MIN_SERVERS = 10;

function subset(flags: FanOutFlags): string[] | undefined {
  if (flags.servers === undefined) return undefined;
  const names = flags.servers.split(",").map((name) => name.trim()).filter((name) => name !== "");
  if (names.length === 0) throw new UsageError("--servers names no server");
  return names;
}

/**
 * The library options of a command-line fan-out: security from the
 * settings, `--timeout` for the whole, and a progress line on stderr when
 * it is a terminal and the fleet is large.
 */
function libraryOptions(
  flags: FanOutFlags,
  settings: ClientSettings,
  total: number,
): FanOutOptions & { finish(): void } {
  const progress = total >= PROGRESS_MIN_SERVERS && Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  let failed = 0;
  let shown = false;
  return {
    ...connectOptions(settings),
    timeoutMs: settings.timeoutMs,
    ...(flags.parallel !== undefined ? { parallel: flags.parallel } : {}),
    onResult: progress
      ? (result, settled, all) => {
        if (!result.ok) failed++;
        shown = true;
        writeAll(
          Deno.stderr,
          encoder.encode(`\r\x1b[K${settled}/${all} answered, ${failed} failed`),
        );
      }
      : undefined,
    finish: () => {
      if (shown) writeAll(Deno.stderr, encoder.encode("\r\x1b[K"));
    },
  };
}

/**
 * Prints one line (or one JSON object) per server and returns the exit
 * code. `describe` turns an ok value into the rest of its line, and
 * `jsonOf` into the fields of its JSON object.
 */
export function printResults<T>(
  results: readonly ServerResult<T>[],
  json: boolean,
  describe: (value: T) => string,
  jsonOf: (value: T) => Record<string, unknown>,
): number {
  for (const line of resultLines(results, json, describe, jsonOf)) print(line);
  return fanOutExitCode(results);
}

/** The lines {@linkcode printResults} prints. */
export function resultLines<T>(
  results: readonly ServerResult<T>[],
  json: boolean,
  describe: (value: T) => string,
  jsonOf: (value: T) => Record<string, unknown>,
): string[] {
  if (json) {
    return results.map((result) =>
      stringifyJson({
        server: result.server,
        address: result.address,
        ok: result.ok,
        ms: Math.round(result.ms * 100) / 100,
        ...(result.ok
          ? jsonOf(result.value)
          : { error: { kind: result.error.kind, message: result.error.message } }),
      })
    );
  }
  const width = Math.max(0, ...results.map((result) => result.server.length));
  return results.map((result) => {
    const rest = result.ok
      ? `ok${result.value === undefined ? "" : ` ${describe(result.value)}`}`
      : `${result.error.kind}: ${result.error.message}`;
    return oneLine(`${result.server.padEnd(width)}  ${rest}`).trimEnd();
  });
}

async function needCluster(settings: ClientSettings, what: string): Promise<Cluster> {
  if (!settings.cluster && settings.broker) return await brokerCluster(settings.broker);
  if (!settings.cluster) {
    throw new UsageError(
      `${what} needs init.yaml to find the servers: pass --config FILE or set RPC_CONFIG`,
    );
  }
  return settings.cluster;
}

/** How long `--all` through a broker without init.yaml listens for the servers' announcements. */
const DISCOVER_MS = 1_000;

/**
 * The fleet as the servers on the broker announce themselves, for `--all`
 * without init.yaml: every server up, each the provider of what it serves.
 */
async function brokerCluster(broker: BrokerSettings): Promise<Cluster> {
  const { discoverServers } = await import("./broker.ts");
  const { redactBrokerUrl } = await import("../core/transport/nats/mod.ts");
  const found = await discoverServers(broker, DISCOVER_MS);
  const position = { line: 0, column: 0 };
  const cluster: Cluster = {
    file: `the broker ${redactBrokerUrl(broker.url)}`,
    servers: new Map(),
    clients: new Map(),
    services: new Map(),
  };
  for (const { server, services } of found) {
    cluster.servers.set(server, { name: server, host: "", port: 0, position });
    for (const service of services) {
      const entry = cluster.services.get(service) ??
        { name: service, providers: [], rpcs: [], position };
      entry.providers.push(server);
      cluster.services.set(service, entry);
    }
  }
  return cluster;
}

/** What `rpc call --all` needs of its command line. */
export interface CallAllFlags extends FanOutFlags {
  json: boolean;
  types?: string;
  service: string;
  rpc: string;
  args: readonly string[];
}

/** `rpc call --all --service S RPC ARGS…`: the call on every provider of S. */
export async function runCallAll(flags: CallAllFlags, settings: ClientSettings): Promise<number> {
  const cluster = await needCluster(settings, "--all");
  // Argument types come from --types or init.yaml, else from whichever provider is up.
  const lister = {
    list: () => new ServiceClient(cluster, flags.service, connectOptions(settings)),
  };
  const { values, chosen } = await typedArguments(flags, cluster, {
    list: async (request) => {
      const service = lister.list();
      try {
        return await service.list(request);
      } finally {
        service.close();
      }
    },
  }, { timeoutMs: settings.timeoutMs });
  const total = cluster.services.get(flags.service)?.providers.length ?? 0;
  if (cluster.services.has(flags.service) && total === 0) {
    throw new RpcError(
      ErrorKind.Unavailable,
      `Service ${flags.service} has no providers in ${cluster.file}`,
    );
  }
  const options = libraryOptions(flags, settings, total);
  let results;
  try {
    results = await callAll(cluster, flags.service, flags.rpc, values, {
      ...options,
      ...declaredTypes(chosen),
      ...(flags.servers !== undefined ? { servers: subset(flags) } : {}),
    });
  } finally {
    options.finish();
  }
  return printResults(
    results,
    flags.json,
    (returned) => returned.map(plain).join(" "),
    (returned) => ({ "return-values": returned }),
  );
}

/** The servers `rpc ping --all` and `rpc hash --all` ask: all of init.yaml's, or `--servers`. */
async function fleet(flags: FanOutFlags, settings: ClientSettings): Promise<ServerEntry[]> {
  const cluster = await needCluster(settings, "--all");
  const servers = [...cluster.servers.values()];
  const names = subset(flags);
  return names === undefined ? servers : pickServers(servers, names, `servers of ${cluster.file}`);
}

/** What one server answers `rpc ping --all`. */
interface FleetPing extends Health {
  roundTripMs: number;
  generation?: number;
}

async function pingOne(client: RpcClient, remainingMs: number): Promise<FleetPing> {
  const limit = Math.min(remainingMs, 2 ** 31 - 1);
  const sent = performance.now();
  const health = parseHealth(await client.admin({ op: "health" }, { timeoutMs: limit }));
  const roundTripMs = performance.now() - sent;
  let generation: number | undefined;
  try {
    generation = (await fetchState(client, { timeoutMs: limit })).generation;
  } catch {
    // A library server has no deployed state.
  }
  return { ...health, roundTripMs, ...(generation === undefined ? {} : { generation }) };
}

/** `rpc ping --all`: health of every server of init.yaml. */
export async function runPingAll(
  flags: FanOutFlags & { json: boolean; config?: string; as?: string; timeout?: string },
): Promise<number> {
  const settings = await clientSettings(flags);
  const servers = await fleet(flags, settings);
  const options = libraryOptions(flags, settings, servers.length);
  let results;
  try {
    results = await fanOut(servers, pingOne, options);
  } finally {
    options.finish();
  }
  return printResults(
    results,
    flags.json,
    (report) =>
      `rpc ${report.version}, up ${formatUptime(report.uptimeMs)}, round trip ${
        report.roundTripMs.toFixed(2)
      } ms, ${report.callsInFlight} in flight, ${report.connections} connection${
        report.connections === 1 ? "" : "s"
      }${report.generation === undefined ? "" : `, generation ${report.generation}`}`,
    (report) => ({ health: report }),
  );
}

/**
 * A short fingerprint of what a server holds: the SHA-256 over its
 * procedures' keys and hashes, sorted, so equal deployments print equal.
 */
export function stateFingerprint(state: StateReport): string {
  const lines = state.procedures.map((procedure) => `${procedureKey(procedure)} ${procedure.hash}`)
    .sort();
  return sha256Hex(lines.join("\n")).slice(0, 16);
}

/** `rpc hash --all`: what every server of init.yaml holds, one line each. */
export async function runHashAll(
  flags: FanOutFlags & { json: boolean; config?: string },
): Promise<number> {
  const settings = await clientSettings({ ...flags, as: undefined });
  const servers = await fleet(flags, settings);
  const options = libraryOptions(flags, settings, servers.length);
  let results;
  try {
    results = await fanOut(
      servers,
      (client) => fetchState(client),
      options,
    );
  } finally {
    options.finish();
  }
  return printResults(
    results,
    flags.json,
    (state) =>
      `generation ${state.generation}, ${state.procedures.length} procedures, code ${
        stateFingerprint(state)
      }`,
    (state) => ({ fingerprint: stateFingerprint(state), state }),
  );
}
