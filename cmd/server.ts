/**
 * `rpc server`: serve the procedures of one server of the cluster.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message, text } from "@optique/core/message";
import { optional, withDefault } from "@optique/core/modifiers";
import { command, constant, flag, option } from "@optique/core/primitives";
import { choice, integer, string } from "@optique/core/valueparser";
import { checkSources, type Cluster, loadCluster } from "../core/cluster.ts";
import { desiredStateFor, Installer, planInstall, planIsEmpty } from "../core/deploy.ts";
import { hashSecret } from "../core/hash.ts";
import { DEFAULT_LIMITS, type ServerLimits } from "../core/limits.ts";
import {
  BufferedSink,
  formatJsonLine,
  formatTextLine,
  LOG_LEVELS,
  Logger,
  type LogLevel,
  type LogSink,
} from "../core/log.ts";
import { Registry, type Runner } from "../core/registry.ts";
import { PythonRunner } from "../core/runners/python.ts";
import { SandboxRunner } from "../core/runners/sandbox.ts";
import { TypeScriptRunner } from "../core/runners/typescript.ts";
import { RpcServer } from "../core/server.ts";
import type { TlsServerOptions } from "../core/transport.ts";
import { CodeStore, defaultStateDir } from "../core/store.ts";
import { configPath, examples, parseDuration, UsageError } from "./common.ts";

/** The parser of `rpc server`. */
export const serverCommand = command(
  "server",
  object({
    command: constant("server" as const),
    config: optional(option("-c", "--config", string({ metavar: "FILE" }), {
      description:
        message`init.yaml: this server's address, port and known clients, and its procedures when their sources are here (default: $RPC_CONFIG).`,
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
    maxFrameBytes: limitOption(
      "--max-frame-bytes",
      "BYTES",
      "Largest frame accepted",
      "maxFrameBytes",
    ),
    maxStringLength: limitOption(
      "--max-string",
      "CHARS",
      "Longest string in an argument",
      "maxStringLength",
    ),
    maxListLength: limitOption(
      "--max-list",
      "ITEMS",
      "Longest list in an argument",
      "maxListLength",
    ),
    maxDepth: limitOption(
      "--max-depth",
      "LEVELS",
      "Deepest list nesting in an argument",
      "maxDepth",
    ),
    maxConnections: limitOption(
      "--max-connections",
      "N",
      "Connections open at once",
      "maxConnections",
    ),
    maxConnectionsPerIp: limitOption(
      "--max-connections-per-ip",
      "N",
      "Connections open at once from one IP",
      "maxConnectionsPerIp",
    ),
    maxCallsPerConnection: limitOption(
      "--max-calls-per-connection",
      "N",
      "Calls in flight on one connection",
      "maxCallsPerConnection",
    ),
    idleTimeout: optional(option("--idle-timeout", string({ metavar: "DURATION" }), {
      description: message`Close connections idle this long (default ${"5m"}; 0 for never).`,
    })),
    frameTimeout: optional(option("--frame-timeout", string({ metavar: "DURATION" }), {
      description:
        message`Close connections whose frame takes longer to arrive (default ${"10s"}).`,
    })),
    clientRate: limitOption(
      "--rate",
      "CALLS",
      "Calls per second per client (token bucket)",
      "clientRate",
    ),
    clientBurst: limitOption(
      "--burst",
      "CALLS",
      "Burst size per client (default: the rate)",
      "clientBurst",
    ),
    globalRate: limitOption(
      "--global-rate",
      "CALLS",
      "Calls per second over all clients",
      "globalRate",
    ),
    globalBurst: limitOption(
      "--global-burst",
      "CALLS",
      "Burst size over all clients",
      "globalBurst",
    ),
    tlsCert: optional(option("--tls-cert", string({ metavar: "FILE" }), {
      description: message`Serve TLS with this PEM certificate chain (needs --tls-key).`,
    })),
    tlsKey: optional(option("--tls-key", string({ metavar: "FILE" }), {
      description: message`PEM private key of --tls-cert.`,
    })),
    tlsClientCa: optional(option("--tls-client-ca", string({ metavar: "FILE" }), {
      description:
        message`Require client certificates signed by this PEM CA; their CN names the client (mutual TLS).`,
    })),
    auditLog: optional(option("--audit-log", string({ metavar: "FILE" }), {
      description: message`Append one JSON line per call, refusal and install to FILE.`,
    })),
    sandboxMemory: withDefault(
      option("--sandbox-memory", integer({ min: 16 }), {
        description: message`Heap limit of each procedure sandbox, in MiB.`,
      }),
      256,
    ),
    workers: optional(option("--workers", integer({ min: 1, max: 256 }), {
      description: message`Sandboxes per permission set (default: the number of cores).`,
    })),
    stateDir: optional(option("--state-dir", string({ metavar: "DIR" }), {
      description:
        message`Where installed code is kept (default: $RPC_STATE_DIR, else ~/.local/state/rpc/NAME).`,
    })),
    adminTokenFile: optional(option("--admin-token-file", string({ metavar: "FILE" }), {
      description:
        message`File holding the admin secret that rpc init must present (default: $RPC_ADMIN_TOKEN).`,
    })),
    insecure: withDefault(
      flag("--insecure", {
        description: message`Accept installs from anyone, without an admin secret.`,
      }),
      false,
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
      message`Serves the procedures installed in its state directory, which survive restarts; rpc init replaces them while the server runs. With --config, address, port and known clients come from init.yaml, and the file's procedures for this server are installed at start when their sources are readable here. TypeScript procedures run in sandboxes with only the permissions init.yaml grants them (trusted: true runs one in the server itself); Python procedures in a pool of python3 interpreters. Logs every connection, client, unauthorized access, call and exception on stderr with a timestamp. Stops cleanly on SIGINT or SIGTERM.`,
    footer: examples(
      "rpc server --config init.yaml --name s1",
      "RPC_ADMIN_TOKEN=secret rpc server --name s1 --port 8181",
      "rpc server --name s1 --tls-cert s1.pem --tls-key s1.key --tls-client-ca clients-ca.pem",
      "rpc server --config init.yaml --name s2 --port 0 --log-file s2.jsonl --audit-log audit.jsonl",
    ),
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
  maxFrameBytes?: number;
  maxStringLength?: number;
  maxListLength?: number;
  maxDepth?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  maxCallsPerConnection?: number;
  idleTimeout?: string;
  frameTimeout?: string;
  clientRate?: number;
  clientBurst?: number;
  globalRate?: number;
  globalBurst?: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  auditLog?: string;
  sandboxMemory: number;
  workers?: number;
  callTimeout: string;
  stateDir?: string;
  adminTokenFile?: string;
  insecure: boolean;
}

/** An optional numeric limit flag whose default is in {@linkcode DEFAULT_LIMITS}. */
function limitOption(
  name: `--${string}`,
  metavar: Uppercase<`${"B" | "C" | "I" | "L" | "N"}${string}`>,
  what: string,
  key: keyof ServerLimits,
) {
  return optional(option(name, integer({ type: "number", min: 0, metavar }), {
    description: [text(`${what} (default ${DEFAULT_LIMITS[key]}; 0 for no limit).`)],
  }));
}

/** The limits given on the command line; the rest keep their defaults. */
export function limitsFrom(options: ServerCommandOptions): Partial<ServerLimits> {
  const duration = (text: string | undefined) =>
    text === undefined ? undefined : parseDuration(text);
  return {
    maxFrameBytes: options.maxFrameBytes,
    maxStringLength: options.maxStringLength,
    maxListLength: options.maxListLength,
    maxDepth: options.maxDepth,
    maxConnections: options.maxConnections,
    maxConnectionsPerIp: options.maxConnectionsPerIp,
    maxCallsPerConnection: options.maxCallsPerConnection,
    idleTimeoutMs: duration(options.idleTimeout),
    frameTimeoutMs: duration(options.frameTimeout),
    clientRate: options.clientRate,
    clientBurst: options.clientBurst,
    globalRate: options.globalRate,
    globalBurst: options.globalBurst,
  };
}

/** Reads the TLS files named on the command line. */
async function tlsFrom(options: ServerCommandOptions): Promise<TlsServerOptions | undefined> {
  if (!options.tlsCert && !options.tlsKey) {
    if (options.tlsClientCa) throw new UsageError("--tls-client-ca needs --tls-cert and --tls-key");
    return undefined;
  }
  if (!options.tlsCert || !options.tlsKey) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  return {
    cert: await Deno.readTextFile(options.tlsCert),
    key: await Deno.readTextFile(options.tlsKey),
    ...(options.tlsClientCa ? { clientCa: await Deno.readTextFile(options.tlsClientCa) } : {}),
  };
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

/** A logger that appends JSON lines to a file (the audit log). */
async function jsonLinesLogger(path: string): Promise<Logger> {
  const file = await Deno.open(path, { create: true, append: true });
  return new Logger([new BufferedSink(file, formatJsonLine)], { level: "debug" });
}

/** Reads the admin secret: `--admin-token-file`, else `RPC_ADMIN_TOKEN`. Never from argv. */
export async function adminToken(file: string | undefined): Promise<string | undefined> {
  if (file) {
    const token = (await Deno.readTextFile(file)).trim();
    if (!token) throw new UsageError(`Admin token file ${file} is empty`);
    return token;
  }
  return Deno.env.get("RPC_ADMIN_TOKEN")?.trim() || undefined;
}

/** Runs `rpc server` until SIGINT or SIGTERM; returns the exit code. */
export async function runServer(options: ServerCommandOptions): Promise<number> {
  const path = configPath(options.config, false, false);
  const cluster = path ? await loadCluster(path) : undefined;
  const name = options.name ?? Deno.env.get("RPC_SERVER_NAME") ?? "rpc";
  const entry = cluster?.servers.get(name);
  if (cluster && !entry && options.name) {
    throw new UsageError(
      `No server "${name}" in ${path}: it names ${[...cluster.servers.keys()].join(", ")}`,
    );
  }
  const token = await adminToken(options.adminTokenFile);
  const tls = await tlsFrom(options);
  const logger = await serverLogger(options.logFile, options.logLevel);
  const audit = options.auditLog ? await jsonLinesLogger(options.auditLog) : undefined;
  const runners: Record<string, Runner> = {
    typescript: new TypeScriptRunner(
      new SandboxRunner({
        memoryMb: options.sandboxMemory,
        ...(options.workers ? { size: options.workers } : {}),
      }),
    ),
    python: new PythonRunner(),
  };
  const server = new RpcServer({
    name,
    hostname: options.host ?? Deno.env.get("RPC_HOST") ?? entry?.host ?? "127.0.0.1",
    port: options.port ?? envPort() ?? entry?.port ?? 8181,
    registry: Registry.empty(),
    limits: limitsFrom(options),
    ...(tls ? { tls } : {}),
    ...(audit ? { audit } : {}),
    callTimeoutMs: parseDuration(options.callTimeout),
    logger,
  });
  const store = new CodeStore(
    options.stateDir ?? Deno.env.get("RPC_STATE_DIR") ?? defaultStateDir(name),
  );
  const installer = new Installer({
    store,
    server,
    runners,
    logger,
    ...(token ? { adminTokenHash: hashSecret(token) } : {}),
    ...(audit ? { audit } : {}),
    insecure: options.insecure,
  });
  server.admin = installer.handle;
  await installer.boot();
  if (cluster && entry) await installFromFile(installer, cluster, name, logger);
  if (!token && !options.insecure) {
    logger.warn(
      "admin",
      "no admin token: installs over the network are refused (see --admin-token-file)",
    );
  }
  await server.start();
  const stopped = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, () => stopped.resolve(signal));
  const signal = await stopped.promise;
  logger.info("shutdown", `received ${signal}, shutting down`);
  await server.close();
  await Promise.all(Object.values(runners).map((runner) => runner.close()));
  await logger.flush();
  await audit?.flush();
  return 0;
}

/**
 * Brings the server to what init.yaml declares for it, when the sources are
 * readable here; otherwise the file gives only address, port and clients.
 */
async function installFromFile(
  installer: Installer,
  cluster: Cluster,
  name: string,
  logger: Logger,
): Promise<void> {
  const problems = await checkSources(cluster, [name]);
  if (problems.length > 0) {
    logger.warn(
      "install",
      `${cluster.file}: sources for ${name} are not all readable here (${
        problems[0].message
      }); serving the installed state`,
    );
    return;
  }
  const { state, sources } = await desiredStateFor(cluster, name);
  const plan = planInstall(installer.manifest, state);
  if (planIsEmpty(plan)) return;
  const missing = new Map(plan.missing.map((blob) => [blob, sources.get(blob)!]));
  await installer.install(state, missing, cluster.file);
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
