/**
 * `rpc server`: serve the procedures of one server of the cluster.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { optional, withDefault } from "@optique/core/modifiers";
import { command, constant, option } from "@optique/core/primitives";
import { choice, integer, string } from "@optique/core/valueparser";
import { checkSources, type Cluster, loadCluster, serviceSpecsFor } from "../core/cluster.ts";
import { ConfigError } from "../core/errors.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../core/frame.ts";
import {
  BufferedSink,
  formatJsonLine,
  formatTextLine,
  LOG_LEVELS,
  Logger,
  type LogLevel,
  type LogSink,
} from "../core/log.ts";
import { Registry, type Runner, type ServiceSpec } from "../core/registry.ts";
import { InlineTypeScriptRunner } from "../core/runners/typescript.ts";
import { type KnownClient, RpcServer } from "../core/server.ts";
import { configPath, parseDuration, UsageError } from "./common.ts";

/** The parser of `rpc server`. */
export const serverCommand = command(
  "server",
  object({
    command: constant("server" as const),
    config: optional(option("-c", "--config", string({ metavar: "FILE" }), {
      description:
        message`init.yaml: this server's address and port, its services and its known clients.`,
    })),
    name: optional(option("-n", "--name", string({ metavar: "NAME" }), {
      description: message`This server's name in init.yaml (default: $RPC_SERVER_NAME).`,
    })),
    host: optional(option("--host", string({ metavar: "ADDRESS" }), {
      description: message`Address to bind, overriding init.yaml (default 127.0.0.1).`,
    })),
    port: optional(option("-p", "--port", integer({ min: 0, max: 65535 }), {
      description: message`Port to bind, overriding init.yaml; 0 picks a free port.`,
    })),
    logFile: optional(option("--log-file", string({ metavar: "FILE" }), {
      description: message`Also append the log to FILE as JSON lines.`,
    })),
    logLevel: withDefault(
      option("--log-level", choice(LOG_LEVELS), {
        description: message`Least severe level logged.`,
      }),
      "info" as LogLevel,
    ),
    maxFrameBytes: withDefault(
      option("--max-frame-bytes", integer({ min: 64 }), {
        description: message`Largest frame accepted.`,
      }),
      DEFAULT_MAX_FRAME_BYTES,
    ),
    callTimeout: withDefault(
      option("--call-timeout", string({ metavar: "DURATION" }), {
        description: message`Default time limit of one call (e.g. ${"30s"}).`,
      }),
      "60s",
    ),
  }),
  {
    brief: message`Serve procedures to clients.`,
    description:
      message`Listens on the address init.yaml gives this server and serves the services it provides, loading each procedure's src. Logs every connection, client, unauthorized access, call and exception on stderr with a timestamp. Stops cleanly on SIGINT or SIGTERM.`,
    footer: message`Examples:
  rpc server --config init.yaml --name s1
  rpc server --config init.yaml --name s2 --port 0 --log-file s2.jsonl`,
  },
);

/** Options of {@linkcode runServer}, as parsed. */
export interface ServerCommandOptions {
  config?: string;
  name?: string;
  host?: string;
  port?: number;
  logFile?: string;
  logLevel: LogLevel;
  maxFrameBytes: number;
  callTimeout: string;
}

/** Builds the logger: readable text on stderr, plus JSON lines to a file on request. */
export async function serverLogger(logFile: string | undefined, level: LogLevel): Promise<Logger> {
  const sinks: LogSink[] = [new BufferedSink(Deno.stderr, formatTextLine)];
  if (logFile) {
    const file = await Deno.open(logFile, { create: true, append: true });
    sinks.push(new BufferedSink(file, formatJsonLine));
  }
  return new Logger(sinks, { level });
}

/** Known clients from the cluster file. */
export function knownClients(cluster: Cluster): Map<string, KnownClient> {
  return new Map([...cluster.clients.values()].map((client) => [
    client.name,
    { name: client.name, ...(client.ip ? { ip: client.ip } : {}) },
  ]));
}

/** Runs `rpc server` until SIGINT or SIGTERM; returns the exit code. */
export async function runServer(options: ServerCommandOptions): Promise<number> {
  const name = options.name ?? Deno.env.get("RPC_SERVER_NAME");
  const path = configPath(options.config, true)!;
  if (!name) throw new UsageError("rpc server needs --name NAME (this server's name in init.yaml)");
  const cluster = await loadCluster(path);
  const entry = cluster.servers.get(name);
  if (!entry) {
    throw new UsageError(
      `No server "${name}" in ${path}: it names ${[...cluster.servers.keys()].join(", ")}`,
    );
  }
  const problems = await checkSources(cluster, [name]);
  if (problems.length > 0) throw new ConfigError(problems);
  const runners: Record<string, Runner> = { typescript: new InlineTypeScriptRunner() };
  const specs: ServiceSpec[] = await serviceSpecsFor(cluster, name);
  const registry = await Registry.load(specs, runners);
  const logger = await serverLogger(options.logFile, options.logLevel);
  const server = new RpcServer({
    name,
    hostname: options.host ?? Deno.env.get("RPC_HOST") ?? entry.host,
    port: options.port ?? envPort() ?? entry.port,
    registry,
    clients: knownClients(cluster),
    maxFrameBytes: options.maxFrameBytes,
    callTimeoutMs: parseDuration(options.callTimeout),
    logger,
  });
  server.start();
  const stopped = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, () => stopped.resolve(signal));
  const signal = await stopped.promise;
  logger.info("shutdown", `received ${signal}, shutting down`);
  await server.close();
  await Promise.all(Object.values(runners).map((runner) => runner.close()));
  await logger.flush();
  return 0;
}

function envPort(): number | undefined {
  const text = Deno.env.get("RPC_PORT");
  if (!text) return undefined;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`RPC_PORT=${text} is not a port`);
  }
  return port;
}
