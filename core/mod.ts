/**
 * The rpc toolkit as a library: a client that calls procedures as if they
 * were local functions, the server, and the shared protocol pieces.
 *
 * @example
 * ```ts ignore
 * import { connect } from "./mod.ts";
 * const client = await connect("127.0.0.1:8181", { client: "c1" });
 * console.log(await client.service("service1").rpc1(3, "ab"));
 * client.close();
 * ```
 *
 * @module
 */

export { connect, parseEndpoint, RpcClient } from "./client.ts";
export type { CallOptions, ClientOptions, Endpoint, ServiceProxy } from "./client.ts";
export { ErrorKind, EXIT_CODES, RpcError } from "./errors.ts";
export { callService, connectService, ServiceClient } from "./failover.ts";
export type { ServiceCallOptions, ServiceClientOptions } from "./failover.ts";
export { RpcServer } from "./server.ts";
export type { KnownClient, ServerOptions } from "./server.ts";
export { Registry } from "./registry.ts";
export type { Procedure, ProcedureSpec, Runner, ServiceSpec } from "./registry.ts";
export { loadCluster, parseCluster } from "./cluster.ts";
export type { Cluster } from "./cluster.ts";
export { formatType, parseType } from "./types.ts";
export type { RpcType, Signature } from "./types.ts";
export { PROTOCOL_VERSION } from "./message.ts";
