/**
 * The authorize stage of the call pipeline: the service a call names must
 * exist, the caller must be one of its tenants (a service without tenants
 * is open to all), and the service must have the RPC, checked in that order
 * so that a caller learns nothing of a service it may not use. Only then
 * are integers beyond 2^53 in the arguments read exactly, so a caller that
 * may not call pays nothing for them.
 *
 * @module
 */

import { type CallRequest, exactArguments, hasDeferredArguments } from "../wire/message.ts";
import type { Overload, Registry } from "./registry.ts";

/**
 * Authorizes `client` (undefined for an anonymous caller) to make `request`
 * and returns the overloads of the RPC it names, for the resolve stage.
 *
 * @throws {RpcError} `Service Not Found`, `Client Not Registered`, `RPC Not
 * Found`, or `Invalid Arguments` for an integer longer than the limit.
 */
export function authorize(
  registry: Registry,
  client: string | undefined,
  request: CallRequest,
): Overload[] {
  const overloads = registry.target(client, request);
  if (hasDeferredArguments(request)) exactArguments(request);
  return overloads;
}
