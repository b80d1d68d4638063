/**
 * `rpc call`: one call from the command line, for scripts and smoke tests.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { multiple, optional } from "@optique/core/modifiers";
import { argument, command, constant, option } from "@optique/core/primitives";
import { string } from "@optique/core/valueparser";
import { connect, type RpcClient } from "../core/client.ts";
import type { Cluster } from "../core/cluster.ts";
import { ErrorKind, RpcError } from "../core/errors.ts";
import type { RpcDescription } from "../core/message.ts";
import {
  coerceArgument,
  coercionRank,
  formatType,
  parseType,
  type RpcType,
  stringifyJson,
} from "../core/types.ts";
import {
  asOption,
  clientName,
  configOption,
  jsonFlag,
  maybeCluster,
  parseDuration,
  plain,
  print,
  resolveServer,
  splitTypeList,
  UsageError,
} from "./common.ts";

/** The parser of `rpc call`. */
export const callCommand = command(
  "call",
  object({
    command: constant("call" as const),
    config: configOption,
    as: asOption,
    json: jsonFlag,
    types: optional(option("-t", "--types", string({ metavar: "TYPES" }), {
      description:
        message`Argument types, comma-separated (e.g. ${"int,List[str]"}); default: from init.yaml, else asked of the server.`,
    })),
    timeout: optional(option("--timeout", string({ metavar: "DURATION" }), {
      description: message`Give up after this long (e.g. ${"500ms"}, ${"5s"}); default 30s.`,
    })),
    server: argument(string({ metavar: "SERVER" }), {
      description: message`Server name from init.yaml, or host:port.`,
    }),
    service: argument(string({ metavar: "SERVICE" })),
    rpc: argument(string({ metavar: "RPC" })),
    args: multiple(argument(string({ metavar: "ARG" }))),
  }),
  {
    brief: message`Call one procedure and print its return values.`,
    description:
      message`Arguments are converted to the RPC's declared types: ${"int"} and ${"float"} are decimal numbers, ${"bool"} is true or false, ${"str"} is taken as is, lists are JSON (${"[1,2]"}) or comma-separated (${"1,2"}). Put ${"--"} before arguments that start with a dash. Exit status: 0 on success, 3 when the server cannot be reached, 4 on timeout, 10-18 by exception kind (see README).`,
    footer: message`Examples:
  rpc call --config init.yaml --as c1 s1 service1 rpc1 42 hello
  rpc call 127.0.0.1:8181 service1 rpc2 1,2,3 '["a","b"]' --json
  rpc call --types float,List[float] s2 service2 rpc3 -- -1.5 2,3`,
  },
);

/** Options of {@linkcode runCall}, as parsed. */
export interface CallCommandOptions {
  config?: string;
  as?: string;
  json: boolean;
  types?: string;
  timeout?: string;
  server: string;
  service: string;
  rpc: string;
  args: readonly string[];
}

/** A chosen signature for command-line arguments. */
interface Chosen {
  args: RpcType[];
  returns?: RpcType[];
}

/** Picks the overload whose argument types the texts fit most exactly. */
export function chooseSignature(
  candidates: readonly { args: RpcType[]; returns: RpcType[] }[],
  texts: readonly string[],
): Chosen | undefined {
  let best: { score: number; chosen: Chosen } | undefined;
  let tie = false;
  for (const candidate of candidates) {
    if (candidate.args.length !== texts.length) continue;
    let score = 0;
    let fits = true;
    for (let i = 0; i < texts.length && fits; i++) {
      const rank = coercionRank(candidate.args[i], texts[i]);
      if (rank === undefined) fits = false;
      else score += rank;
    }
    if (!fits) continue;
    if (!best || score > best.score) {
      best = { score, chosen: candidate };
      tie = false;
    } else if (score === best.score) {
      tie = true;
    }
  }
  if (tie) {
    throw new UsageError("Arguments fit several overloads equally; pass --types to pick one");
  }
  return best?.chosen;
}

function signaturesFromCluster(cluster: Cluster | undefined, service: string, rpc: string) {
  const entries = cluster?.services.get(service)?.rpcs.filter((entry) => entry.name === rpc) ?? [];
  return entries.map((entry) => ({
    args: [...entry.signature.args],
    returns: [...entry.signature.returns],
  }));
}

function signaturesFromServer(
  services: { name: string; rpcs: RpcDescription[] }[],
  service: string,
  rpc: string,
) {
  const found =
    services.find((entry) => entry.name === service)?.rpcs.filter((entry) => entry.name === rpc) ??
      [];
  return found.map((entry) => ({
    args: entry.args.map(parseType),
    returns: entry.returns.map(parseType),
  }));
}

/** Converts the argument texts, choosing types from --types, init.yaml or the server. */
async function typedArguments(
  options: CallCommandOptions,
  cluster: Cluster | undefined,
  client: RpcClient,
): Promise<{ values: unknown[]; chosen?: Chosen }> {
  let chosen: Chosen | undefined;
  if (options.types !== undefined) {
    let args: RpcType[];
    try {
      args = splitTypeList(options.types).map(parseType);
    } catch (error) {
      throw new UsageError(`--types: ${(error as Error).message}`);
    }
    if (args.length !== options.args.length) {
      throw new UsageError(
        `--types names ${args.length} types but ${options.args.length} arguments were given`,
      );
    }
    chosen = { args };
  } else {
    let candidates = signaturesFromCluster(cluster, options.service, options.rpc);
    if (candidates.length === 0) {
      candidates = signaturesFromServer(await client.list(), options.service, options.rpc);
    }
    chosen = chooseSignature(candidates, options.args);
    if (!chosen && candidates.length === 0) {
      // Unknown to us: send strings and let the server answer (RPC Not Found, ...).
      return { values: [...options.args] };
    }
    if (!chosen) {
      const signatures = candidates.map((c) => `(${c.args.map(formatType).join(", ")})`).join(", ");
      throw new RpcError(
        ErrorKind.InvalidArguments,
        `Arguments ${
          JSON.stringify(options.args)
        } fit no signature of ${options.service}.${options.rpc}: ${signatures}`,
      );
    }
  }
  const values = options.args.map((text, i) => {
    try {
      return coerceArgument(chosen!.args[i], text);
    } catch (error) {
      throw new RpcError(
        ErrorKind.InvalidArguments,
        `argument ${i + 1}: ${(error as Error).message}`,
      );
    }
  });
  return { values, chosen };
}

/** Runs `rpc call`; returns the exit code. */
export async function runCall(options: CallCommandOptions): Promise<number> {
  const cluster = await maybeCluster(options.config);
  const endpoint = resolveServer(options.server, cluster);
  const timeoutMs = options.timeout ? parseDuration(options.timeout) : 30_000;
  const client = await connect(endpoint, {
    client: clientName(options.as),
    connectTimeoutMs: timeoutMs,
  });
  try {
    const { values, chosen } = await typedArguments(options, cluster, client);
    const results = await client.call(options.service, options.rpc, values, {
      timeoutMs,
      ...(chosen ? { argumentTypes: chosen.args.map(formatType) } : {}),
      ...(chosen?.returns ? { returnTypes: chosen.returns.map(formatType) } : {}),
    });
    if (options.json) print(stringifyJson({ "return-values": results }));
    else for (const value of results) print(plain(value));
    return 0;
  } finally {
    client.close();
  }
}
