/**
 * `rpc list`: the services, RPC signatures and one-line docs a server offers
 * to this client (introspection through `LIST`).
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { optional } from "@optique/core/modifiers";
import { command, constant } from "@optique/core/primitives";
import { connect } from "../core/client/connect.ts";
import type { RpcDescription, ServiceDescription } from "../core/wire/message.ts";
import { formatSignature, parseSignature, stringifyJson } from "../core/types/types.ts";
import {
  asOption,
  configOption,
  examples,
  jsonFlag,
  print,
  printError,
  resolveServer,
  securityOptions,
  serverArgument,
  timeoutOption,
  UsageError,
} from "./common.ts";
import { type ClientSettings, clientSettings, connectOptions } from "./settings.ts";

/** The parser of `rpc list`. */
export const listCommand = command(
  "list",
  object({
    command: constant("list" as const),
    ...securityOptions,
    config: configOption,
    as: asOption,
    json: jsonFlag,
    timeout: timeoutOption,
    server: optional(serverArgument),
  }),
  {
    brief: message`List the services and RPC signatures a server offers this client.`,
    description:
      message`Asks the server (LIST) which services this client may call, and prints each with its RPCs: one line per signature, with its one-line doc from init.yaml. A client sees only the services it is a tenant of, so pass ${"--as"}. Without SERVER, through a broker (${"--broker"}), lists the servers up on it and the services each serves, as they announce themselves.`,
    footer: examples(
      "rpc list --config init.yaml --as c1 s1",
      "rpc list --as c2 127.0.0.1:8282 --json",
      "RPC_CLIENT=c1 rpc list s1",
      "rpc list --broker nats://127.0.0.1:4222",
    ),
  },
);

/** Options of {@linkcode runList}, as parsed. */
export interface ListCommandOptions {
  config?: string;
  as?: string;
  json: boolean;
  timeout?: string;
  server?: string;
  broker?: string;
  brokerCreds?: string;
}

/**
 * Formats one overload as `rpc1(int, str) -> str`, or for a streaming RPC
 * `countdown(int) yields int -> str`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatRpc } from "./list.ts";
 * const rpc = { name: "rpc1", args: ["int", "str"], returns: ["str"] };
 * assert.equal(formatRpc(rpc), "rpc1(int, str) -> str");
 * ```
 */
export function formatRpc(rpc: RpcDescription): string {
  try {
    return formatSignature(rpc.name, parseSignature(rpc.args, rpc.returns, rpc.yields));
  } catch {
    // A type this build cannot parse: show it as the server spelled it.
    const several = (types: string[]) => types.length === 1 ? types[0] : `(${types.join(", ")})`;
    const yields = rpc.yields ? ` yields ${several(rpc.yields)}` : "";
    return `${rpc.name}(${rpc.args.join(", ")})${yields} -> ${several(rpc.returns)}`;
  }
}

/** Lines of signatures, each followed by its doc in an aligned column. */
export function formatRpcLines(rpcs: readonly RpcDescription[], indent = "  "): string[] {
  const signatures = rpcs.map(formatRpc);
  const width = Math.max(0, ...signatures.map((signature) => signature.length));
  return rpcs.map((rpc, i) =>
    rpc.doc
      ? `${indent}${signatures[i].padEnd(width)}  ${firstLine(rpc.doc)}`
      : `${indent}${signatures[i]}`
  );
}

/**
 * The plain-text listing: each service on its own line, then its RPCs
 * indented, one signature per line with its doc.
 */
export function formatServices(services: readonly ServiceDescription[]): string[] {
  const lines: string[] = [];
  for (const service of services) {
    lines.push(service.name);
    lines.push(...formatRpcLines(service.rpcs));
  }
  return lines;
}

function firstLine(text: string): string {
  return text.trim().split(/\r?\n/)[0];
}

/** Connects to `server` with the resolved settings and asks for its services. */
export async function fetchServices(
  server: string,
  settings: ClientSettings,
): Promise<ServiceDescription[]> {
  const client = await connect(
    resolveServer(server, settings.cluster, settings.broker !== undefined),
    connectOptions(settings),
  );
  try {
    return await client.list({ timeoutMs: settings.timeoutMs });
  } finally {
    client.close();
  }
}

/** A note for an empty listing, naming the likely reason. */
export function emptyListNote(server: string, client: string | undefined): string {
  return client
    ? `note: ${server} offers no services to client ${client}`
    : `note: ${server} offers no services to an anonymous client; pass --as CLIENT or set RPC_CLIENT`;
}

/** How long `rpc list` without SERVER listens for the servers' announcements. */
const DISCOVER_MS = 1_000;

/** `rpc list --broker` without SERVER: the servers up on the broker, one line each. */
async function listBroker(options: ListCommandOptions, settings: ClientSettings): Promise<number> {
  if (!settings.broker) {
    throw new UsageError(
      "rpc list needs a SERVER, or --broker URL to list the servers up on a broker",
    );
  }
  const { discoverServers } = await import("./broker.ts");
  const servers = await discoverServers(settings.broker, DISCOVER_MS);
  if (options.json) {
    print(stringifyJson({ servers }));
    return 0;
  }
  if (servers.length === 0) printError("note: no server answered on the broker");
  for (const server of servers) {
    print(
      `${server.server}  ${
        server.services.join(", ") || "(no services)"
      }  (rpc ${server.version}, ${server.sessions} session${
        server.sessions === 1 ? "" : "s"
      } through the broker)`,
    );
  }
  return 0;
}

/** Runs `rpc list`; returns the exit code. */
export async function runList(options: ListCommandOptions): Promise<number> {
  const settings = await clientSettings(options);
  if (options.server === undefined) return await listBroker(options, settings);
  const services = await fetchServices(options.server, settings);
  if (options.json) {
    print(stringifyJson({ services }));
    return 0;
  }
  if (services.length === 0) printError(emptyListNote(options.server, settings.client));
  for (const line of formatServices(services)) print(line);
  return 0;
}
