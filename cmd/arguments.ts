/**
 * Command-line arguments of a call, as `rpc call`, `rpc call --all`, the
 * REPL and `rpc bench` read them: the `--types` option, where the
 * signatures come from (`--types`, else init.yaml, else the server), and the
 * hint a user needs when the texts fit several overloads. Choosing the
 * overload and reading the texts is `core/types/overload.ts`; this module
 * only adds what is about the command line.
 *
 * @module
 */

import { message } from "@optique/core/message";
import { optional } from "@optique/core/modifiers";
import { option } from "@optique/core/primitives";
import { string } from "@optique/core/valueparser";
import type { CallOptions, RequestOptions, RpcClient } from "../core/client/client.ts";
import type { Cluster } from "../core/deploy/cluster.ts";
import {
  type CoercedCall,
  coerceTexts,
  coerceWith,
  describedSignatures,
  OverloadError,
  type TextArgument,
} from "../core/types/overload.ts";
import { formatType, parseType, type RpcType, type Signature } from "../core/types/types.ts";
import { splitTypeList, UsageError } from "./common.ts";

/** `--types TYPES`, of `rpc call` and `rpc bench`. */
export const typesOption = optional(option("-t", "--types", string({ metavar: "TYPES" }), {
  description:
    message`Argument types, comma-separated (e.g. ${"int,List[str]"}); default: from init.yaml, else asked of the server.`,
}));

/** The signatures init.yaml declares for `service.rpc`. */
export function signaturesFromCluster(
  cluster: Cluster | undefined,
  service: string,
  rpc: string,
): Signature[] {
  const entries = cluster?.services.get(service)?.rpcs.filter((entry) => entry.name === rpc) ?? [];
  return entries.map((entry) => entry.signature);
}

/**
 * {@linkcode coerceTexts}, with the hint the command line adds when the
 * texts fit several overloads equally: a usage error naming `--types`.
 */
export function coerceCommandLine(
  overloads: readonly Signature[],
  args: readonly TextArgument[],
  target: { service: string; rpc: string },
): CoercedCall {
  try {
    return coerceTexts(overloads, args, target);
  } catch (error) {
    if (error instanceof OverloadError && error.problem === "ambiguous") {
      throw new UsageError(
        `Arguments of ${target.service}.${target.rpc} fit several overloads equally: pass --types to pick one. ${error.valid}`,
      );
    }
    throw error;
  }
}

/** The types chosen for command-line arguments: the return types only when known. */
export interface Chosen {
  args: readonly RpcType[];
  returns?: readonly RpcType[];
}

/** Argument values, and the types chosen for them (absent when nothing was known). */
export interface TypedArguments {
  values: unknown[];
  chosen?: Chosen;
}

/** What {@linkcode typedArguments} needs of a command line. */
export interface ArgumentTexts {
  /** `--types`, when given. */
  types?: string;
  service: string;
  rpc: string;
  args: readonly string[];
}

/**
 * Converts the argument texts, choosing types from --types, init.yaml or the
 * server (asked over `client` with `request`, which carries the command's
 * time limit so a server that never answers LIST cannot hang it), as
 * `rpc call` does.
 */
export async function typedArguments(
  options: ArgumentTexts,
  cluster: Cluster | undefined,
  client: Pick<RpcClient, "list">,
  request: RequestOptions,
): Promise<TypedArguments> {
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
    return { values: coerceWith(args, options.args), chosen: { args } };
  }
  let overloads = signaturesFromCluster(cluster, options.service, options.rpc);
  if (overloads.length === 0) {
    overloads = describedSignatures(await client.list(request), options.service, options.rpc);
  }
  const { values, signature } = coerceCommandLine(overloads, options.args, options);
  return { values, ...(signature ? { chosen: signature } : {}) };
}

/** Call options that declare the chosen types to the server. */
export function declaredTypes(chosen: Chosen | undefined): CallOptions {
  return {
    ...(chosen ? { argumentTypes: chosen.args.map(formatType) } : {}),
    ...(chosen?.returns ? { returnTypes: chosen.returns.map(formatType) } : {}),
  };
}
