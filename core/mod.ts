/**
 * The rpc toolkit as a library: a client that calls procedures as if they
 * were local functions, the server, and the shared protocol pieces.
 *
 * @example A server embedded in this process, serving the demo's `rpc1`, and a client calling it
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileURLToPath } from "node:url";
 * import { connect, parseType, Registry, RpcServer } from "./mod.ts";
 * import { sha256Hex } from "./hash.ts";
 * import { InlineTypeScriptRunner } from "./runners/typescript.ts";
 *
 * const path = fileURLToPath(new URL("../services/service1/rpc1.ts", import.meta.url));
 * const registry = await Registry.load([{
 *   name: "service1",
 *   procedures: [{
 *     service: "service1",
 *     rpc: "rpc1",
 *     signature: { args: [parseType("int"), parseType("str")], returns: [parseType("str")] },
 *     language: "typescript",
 *     path,
 *     hash: sha256Hex(await Deno.readTextFile(path)),
 *     trusted: true, // runs in this isolate, unsandboxed
 *   }],
 * }], { typescript: new InlineTypeScriptRunner() });
 * const server = new RpcServer({ registry }); // 127.0.0.1, a free port
 * const { port } = await server.start();
 *
 * const client = await connect({ hostname: "127.0.0.1", port });
 * assert.equal(await client.service("service1").rpc1(3, "ab"), "ababab");
 * client.close();
 * await server.close();
 * ```
 *
 * @module
 */

export { parseEndpoint, RpcClient } from "./client/client.ts";
export { connect, connectOver } from "./client/connect.ts";
export type { CallOptions, ClientOptions, Endpoint, ServiceProxy } from "./client/client.ts";
export { ErrorKind, ErrorReason, RpcError } from "./errors.ts";
export type { RpcErrorOptions } from "./errors.ts";
export { callService, connectService, ServiceClient } from "./client/failover.ts";
export type { ServiceCallOptions, ServiceClientOptions } from "./client/failover.ts";
export { callAll, fanOut, fanOutOutcome } from "./client/fanout.ts";
export type {
  CallAllOptions,
  FanOutOptions,
  FanOutOutcome,
  ServerResult,
} from "./client/fanout.ts";
export type { BalancePolicy } from "./client/balance.ts";
export { RpcServer } from "./server/server.ts";
export { MemoryListener, memoryPair } from "./transport/mod.ts";
export type { Address, Connection, Listener } from "./transport/mod.ts";
export type { KnownClient, ServerOptions } from "./server/server.ts";
export { Registry } from "./server/registry.ts";
export type { Procedure, ProcedureSpec, Runner, ServiceSpec } from "./server/registry.ts";
export { loadCluster, parseCluster } from "./deploy/cluster.ts";
export type { Cluster } from "./deploy/cluster.ts";
export { formatType, parseType } from "./types/types.ts";
export { coerceArgument } from "./types/coerce.ts";
export { chooseOverload, coerceTexts, OverloadError, TEXTS, VALUES } from "./types/overload.ts";
export type {
  ArgumentReader,
  CoercedCall,
  OverloadProblem,
  TextArgument,
} from "./types/overload.ts";
export type { RpcType, Signature } from "./types/types.ts";
export { PROTOCOL_VERSION } from "./wire/message.ts";
