/**
 * Validators for the replies a client reads: the `health` admin op and the
 * service list (`LIST-RES`). Each builds a fresh value of its type with only
 * the fields it knows, checked in the order they are listed, or throws a
 * `Malformed Frame` {@linkcode RpcError} naming the first field that is wrong
 * and the value found there. (The deploy replies have theirs in
 * `core/deploy/messages.ts`.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHealth } from "./replies.ts";
 * const health = {
 *   server: "s1", version: "0.1.0", uptimeMs: 5000, connections: 1, connectionsAccepted: 3,
 *   connectionsRefused: 0, callsServed: 10, callsFailed: 1, callsInFlight: 0,
 * };
 * assert.deepEqual(parseHealth(health), health);
 * assert.throws(() => parseHealth({ ...health, callsServed: "10" }), {
 *   kind: "Malformed Frame",
 *   message: 'Cannot read the health reply: callsServed must be a count, got "10"',
 * });
 * ```
 *
 * @module
 */

import { ErrorKind } from "../errors.ts";
import type { Health } from "../server/server.ts";
import type { RpcDescription, ServiceDescription } from "../wire/message.ts";
import { count, list, record, text, texts, validated } from "../wire/validate.ts";

/**
 * Validates a server's reply to the `health` op.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the health reply: …".
 */
export function parseHealth(value: unknown): Health {
  return validated(ErrorKind.MalformedFrame, "Cannot read the health reply", () => {
    const reply = record(value, "the reply");
    const field = (name: Exclude<keyof Health, "server" | "version">) => count(reply[name], name);
    return {
      server: text(reply.server, "server"),
      version: text(reply.version, "version"),
      uptimeMs: field("uptimeMs"),
      connections: field("connections"),
      connectionsAccepted: field("connectionsAccepted"),
      connectionsRefused: field("connectionsRefused"),
      callsServed: field("callsServed"),
      callsFailed: field("callsFailed"),
      callsInFlight: field("callsInFlight"),
    };
  });
}

function rpcDescription(value: unknown, service: string, i: number): RpcDescription {
  const where = `rpcs[${i}] of service ${service}`;
  const item = record(value, where);
  const rpc = text(item.name, `${where}.name`);
  const name = `${service}.${rpc}`;
  return {
    name: rpc,
    args: texts(item.args, `args of ${name}`),
    returns: texts(item.returns, `returns of ${name}`),
    ...(item.yields !== undefined ? { yields: texts(item.yields, `yields of ${name}`) } : {}),
    ...(item.doc !== undefined ? { doc: text(item.doc, `doc of ${name}`) } : {}),
  };
}

/**
 * Validates the value of a `LIST-RES`: the services a client may call.
 *
 * @throws {RpcError} `Malformed Frame`, "Cannot read the service list: …".
 */
export function parseServiceList(value: unknown): ServiceDescription[] {
  return validated(ErrorKind.MalformedFrame, "Cannot read the service list", () => {
    const reply = record(value, "the reply");
    return list(reply.services, "services").map((item, i): ServiceDescription => {
      const service = record(item, `services[${i}]`);
      const name = text(service.name, `services[${i}].name`);
      return {
        name,
        rpcs: list(service.rpcs, `rpcs of service ${name}`).map((rpc, j) =>
          rpcDescription(rpc, name, j)
        ),
      };
    });
  });
}
