/**
 * The resolve stage of the call pipeline: chooses which overload of an
 * authorized RPC runs (by the request's `argument-types`, or by the
 * arguments' own types when it has none) and checks the arguments against
 * it. The rule is the one rpc uses everywhere, `chooseOverload` in
 * `core/types/overload.ts`, applied by the {@linkcode Registry} to the
 * signatures it keeps per RPC; this stage is the one place the server calls
 * it, so a change of rule touches nothing else in the pipeline.
 *
 * @module
 */

import type { CallRequest } from "../wire/message.ts";
import type { Overload, Registry, ResolvedCall } from "./registry.ts";

/**
 * Resolves `request` among `overloads`, those the authorize stage returned
 * from `registry`: the overload that runs and its checked arguments.
 *
 * @throws {RpcError} `Invalid Arguments` naming the valid signatures.
 */
export function resolve(
  registry: Registry,
  request: CallRequest,
  overloads: Overload[],
): ResolvedCall {
  return registry.resolveAmong(request, overloads);
}
