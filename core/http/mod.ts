/**
 * The HTTP side of a server in one call: the gateway with its metrics, as
 * `rpc server --http HOST:PORT` starts it.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { Runner } from "../server/registry.ts";
import { PythonRunner } from "../runners/python.ts";
import { SandboxRunner } from "../runners/sandbox.ts";
import { TypeScriptRunner } from "../runners/typescript.ts";
import type { RpcServer } from "../server/server.ts";
import type { Address, TlsServerOptions } from "../transport/mod.ts";
import { HttpGateway } from "./gateway.ts";
import { ServerMetrics } from "./metrics.ts";

export { HttpGateway } from "./gateway.ts";
export { ServerMetrics } from "./metrics.ts";

/** Options of {@linkcode httpGateway}. */
export interface HttpGatewayOptions {
  server: RpcServer;
  address: Address;
  /** The server's TLS settings: the gateway serves HTTPS with them. */
  tls?: TlsServerOptions;
  logger?: Logger;
  /** The installed generation, for `rpc_installed_generation`. */
  generation?: () => number;
  /** The server's runners, for the sandbox and Python metrics. */
  runners?: Record<string, Runner>;
}

/**
 * Builds the gateway of `server`, with metrics: the server reports its calls
 * and connections to them from now on. Call `start()` to bind.
 */
export function httpGateway(options: HttpGatewayOptions): HttpGateway {
  const { server, runners = {} } = options;
  const typescript = runners.typescript;
  const sandbox = typescript instanceof TypeScriptRunner ? typescript.sandbox : typescript;
  const python = runners.python;
  let gateway: HttpGateway | undefined = undefined;
  const metrics = new ServerMetrics({
    server,
    ...(options.generation ? { generation: options.generation } : {}),
    ...(sandbox instanceof SandboxRunner ? { sandbox: () => sandbox.stats } : {}),
    ...(python instanceof PythonRunner ? { python: () => python.stats } : {}),
    httpConnections: () => gateway?.connections ?? 0,
  });
  server.observer = metrics;
  gateway = new HttpGateway({
    server,
    hostname: options.address.hostname,
    port: options.address.port,
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    metrics,
  });
  return gateway;
}
