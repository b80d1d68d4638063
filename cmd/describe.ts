/**
 * `rpc describe`: the signatures and docs of one RPC (all its overloads), or
 * of one service, as the server lists them for this client.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { argument, command, constant } from "@optique/core/primitives";
import { ErrorKind, RpcError } from "../core/errors.ts";
import type { RpcDescription, ServiceDescription } from "../core/wire/message.ts";
import { stringifyJson } from "../core/types/types.ts";
import {
  asOption,
  configOption,
  examples,
  jsonFlag,
  print,
  securityOptions,
  serverArgument,
  targetValue,
  timeoutOption,
  UsageError,
} from "./common.ts";
import { fetchServices, formatRpc, formatRpcLines } from "./list.ts";
import { clientSettings } from "./settings.ts";

/** The parser of `rpc describe`. */
export const describeCommand = command(
  "describe",
  object({
    command: constant("describe" as const),
    ...securityOptions,
    config: configOption,
    as: asOption,
    json: jsonFlag,
    timeout: timeoutOption,
    server: serverArgument,
    target: argument(targetValue, {
      description: message`The RPC as ${"service.rpc"}, or a whole service.`,
    }),
  }),
  {
    brief: message`Show the signatures and doc of one RPC or service.`,
    description:
      message`Asks the server which services this client may call (LIST) and prints every overload of the RPC, ${"rpc1(int, str) -> str"}, each with its doc. Exit status 12 when the client sees no such service, 13 when the service has no such RPC.`,
    footer: examples(
      "rpc describe --config init.yaml --as c1 s1 service1.rpc1",
      "rpc describe --as c1 s1 service1",
      "rpc describe --as c1 127.0.0.1:8181 service1.add --json",
    ),
  },
);

/** Options of {@linkcode runDescribe}, as parsed. */
export interface DescribeCommandOptions {
  config?: string;
  as?: string;
  json: boolean;
  timeout?: string;
  server: string;
  target: string;
}

/** What `service.rpc` (or `service`) names: the service and the matching overloads. */
export interface Described {
  service: string;
  /** The RPC name, or `undefined` when a whole service was asked for. */
  rpc?: string;
  rpcs: RpcDescription[];
}

/** Splits `service.rpc` at its last dot; a name without a dot is a service. */
export function splitTarget(target: string): { service: string; rpc?: string } {
  const dot = target.lastIndexOf(".");
  if (dot < 0) return { service: target };
  if (dot === 0 || dot === target.length - 1) {
    throw new UsageError(`Cannot read "${target}": expected service.rpc or service`);
  }
  return { service: target.slice(0, dot), rpc: target.slice(dot + 1) };
}

/**
 * Finds `service.rpc` (or `service`) in a listing.
 *
 * @throws {RpcError} `Service Not Found` or `RPC Not Found`, naming what there is.
 */
export function describeTarget(services: readonly ServiceDescription[], target: string): Described {
  const { service, rpc } = splitTarget(target);
  const found = services.find((entry) => entry.name === service);
  if (!found) {
    const visible = services.map((entry) => entry.name).join(", ") || "none";
    throw new RpcError(
      ErrorKind.ServiceNotFound,
      `No service ${service} among those this client may call (${visible})`,
    );
  }
  if (rpc === undefined) return { service, rpcs: found.rpcs };
  const rpcs = found.rpcs.filter((entry) => entry.name === rpc);
  if (rpcs.length === 0) {
    const names = [...new Set(found.rpcs.map((entry) => entry.name))].join(", ") || "none";
    throw new RpcError(
      ErrorKind.RpcNotFound,
      `No RPC ${rpc} in service ${service} (it has ${names})`,
    );
  }
  return { service, rpc, rpcs };
}

/** Plain-text lines: `service.rpc(int, str) -> str` per overload, each doc indented below. */
export function formatDescribed(described: Described): string[] {
  if (described.rpc === undefined) {
    return [described.service, ...formatRpcLines(described.rpcs)];
  }
  const lines: string[] = [];
  for (const rpc of described.rpcs) {
    lines.push(`${described.service}.${formatRpc(rpc)}`);
    if (rpc.doc) lines.push(`    ${rpc.doc.trim().split(/\r?\n/)[0]}`);
  }
  return lines;
}

/** The JSON shape of a description. */
export function describedJson(described: Described): unknown {
  return described.rpc === undefined
    ? { service: described.service, rpcs: described.rpcs }
    : { service: described.service, rpc: described.rpc, overloads: described.rpcs };
}

/** Runs `rpc describe`; returns the exit code. */
export async function runDescribe(options: DescribeCommandOptions): Promise<number> {
  splitTarget(options.target);
  const settings = await clientSettings(options);
  const described = describeTarget(await fetchServices(options.server, settings), options.target);
  if (options.json) print(stringifyJson(describedJson(described)));
  else for (const line of formatDescribed(described)) print(line);
  return 0;
}
