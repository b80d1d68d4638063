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
import type { StateCheck } from "../core/deploy/check.ts";
import type { Cluster, ServerEntry } from "../core/deploy/cluster.ts";
import type { Installer } from "../core/deploy/installer.ts";
import { LARGEST_FRAME_LIMIT } from "../core/wire/course.ts";
import { ErrorKind, RpcError } from "../core/errors.ts";
import { DEFAULT_LIMITS, frameLimitError, type ServerLimits } from "../core/server/limits.ts";
import type { StateDirLock } from "../core/deploy/state_lock.ts";
import {
  BufferedSink,
  formatJsonLine,
  formatTextLine,
  LOG_LEVELS,
  Logger,
  type LogLevel,
  type LogSink,
} from "../core/log.ts";
import { DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_BYTES, LogFile } from "../core/log_file.ts";
import { Registry, type Runner } from "../core/server/registry.ts";
import type { Address, TlsServerOptions } from "../core/transport/mod.ts";
import {
  configPath,
  configSource,
  examples,
  parseDuration,
  print,
  printError,
  serverNameValue,
  UsageError,
} from "./common.ts";
import { processEnvironment } from "./settings.ts";

/**
 * What serving and checking need beyond the command line: loaded when `rpc
 * server` runs, not for its help or a Tab of shell completion.
 */
async function servingModules() {
  const [
    { AdminOps },
    { checkCluster, checkStateDir },
    { checkSources, loadCluster },
    { desiredStateFor },
    { Installer },
    { planInstall, planIsEmpty },
    { hashSecret },
    { RpcServer },
    { httpGateway },
    { CodeStore, defaultStateDir },
    { checkLines, failureLines },
    { dirname, resolve },
  ] = await Promise.all([
    import("../core/server/admin.ts"),
    import("../core/deploy/check.ts"),
    import("../core/deploy/cluster.ts"),
    import("../core/deploy/desired.ts"),
    import("../core/deploy/installer.ts"),
    import("../core/deploy/plan.ts"),
    import("../core/hash.ts"),
    import("../core/server/server.ts"),
    import("../core/http/mod.ts"),
    import("../core/deploy/store.ts"),
    import("./check.ts"),
    import("node:path"),
  ]);
  return {
    AdminOps,
    checkCluster,
    checkLines,
    checkSources,
    checkStateDir,
    CodeStore,
    defaultStateDir,
    desiredStateFor,
    dirname,
    failureLines,
    hashSecret,
    httpGateway,
    Installer,
    loadCluster,
    planInstall,
    planIsEmpty,
    resolve,
    RpcServer,
  };
}

/** How `--log-format` writes the log on stderr. */
export type LogFormat = "text" | "json";

/** The choices of `--log-format`. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/** The parser of `rpc server`. */
export const serverCommand = command(
  "server",
  object({
    command: constant("server" as const),
    config: optional(option("-c", "--config", configSource, {
      description:
        message`init.yaml: this server's address, port and known clients, and its procedures when their sources are here (default: $RPC_CONFIG).`,
    })),
    name: optional(option("-n", "--name", serverNameValue, {
      description: message`This server's name in init.yaml (default: $RPC_SERVER_NAME).`,
    })),
    host: optional(option("--host", string({ metavar: "ADDRESS" }), {
      description: message`Address to bind, overriding init.yaml (default 127.0.0.1).`,
    })),
    port: optional(option("-p", "--port", integer({ min: 0, max: 65535 }), {
      description: message`Port to bind, overriding init.yaml; 0 picks a free port.`,
    })),
    listen: optional(option("--listen", string({ metavar: "unix:PATH" }), {
      description:
        message`Listen on a unix domain socket instead of TCP (unix:/run/rpc/rpc.sock); a stale socket file is replaced. Who may connect is the socket file's mode (--socket-mode).`,
    })),
    socketMode: optional(option("--socket-mode", string({ metavar: "MODE" }), {
      description:
        message`Permission bits of the --listen socket file, in octal (default 600: only this user may connect; 660 lets the file's group).`,
    })),
    logFile: optional(option("--log-file", string({ metavar: "FILE" }), {
      description:
        message`Also append the log to FILE as JSON lines (rotated by size; reopened on SIGHUP).`,
    })),
    logMaxBytes: withDefault(
      option("--log-max-bytes", integer({ type: "number", min: 0, metavar: "BYTES" }), {
        description: [
          text(
            `Rotate --log-file and --audit-log before they grow past this size (default ${DEFAULT_LOG_MAX_BYTES}; 0 never).`,
          ),
        ],
      }),
      DEFAULT_LOG_MAX_BYTES,
    ),
    logKeep: withDefault(
      option("--log-keep", integer({ type: "number", min: 0, metavar: "N" }), {
        description: [
          text(
            `Rotated files kept: FILE.1 (newest) to FILE.N (default ${DEFAULT_LOG_KEEP}; 0 none).`,
          ),
        ],
      }),
      DEFAULT_LOG_KEEP,
    ),
    refusalSummary: withDefault(
      option("--refusal-summary", string({ metavar: "DURATION" }), {
        description:
          message`Log the first of repeated refusals of one peer for one reason, then one count per DURATION (default ${"10s"}; 0 logs each).`,
      }),
      "10s",
    ),
    logLevel: withDefault(
      option("--log-level", choice(LOG_LEVELS, { metavar: "LEVEL" }), {
        description:
          message`Least severe level logged (rpc admin SERVER log-level changes it live).`,
      }),
      "info" as LogLevel,
    ),
    logFormat: withDefault(
      option("--log-format", choice(LOG_FORMATS, { metavar: "FORMAT" }), {
        description:
          message`How the log on stderr is written: readable text, or the JSON lines of --log-file.`,
      }),
      "text" as LogFormat,
    ),
    check: withDefault(
      flag("--check", {
        description:
          message`Check flags, init.yaml and every procedure (loading each with the real runners), print what would be served, and exit 0 or 1 without binding a port.`,
      }),
      false,
    ),
    grace: withDefault(
      option("--grace", string({ metavar: "DURATION" }), {
        description:
          message`On SIGTERM or SIGINT, stop accepting and give calls in flight this long to finish (a second signal cuts it short).`,
      }),
      "10s",
    ),
    http: optional(option("--http", string({ metavar: "HOST:PORT" }), {
      description:
        message`Also serve rpc over HTTP on HOST:PORT (HTTPS with the TLS flags): JSON calls, an OpenAPI document, a browser console and Prometheus metrics, behind the same identity and limits. Off by default.`,
    })),
    pidfile: optional(option("--pidfile", string({ metavar: "FILE" }), {
      description: message`Write the process id to FILE at start; remove it at exit.`,
    })),
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
    maxIntegerDigits: limitOption(
      "--max-int-digits",
      "DIGITS",
      "Most digits of an integer in a request",
      "maxIntegerDigits",
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
    adminReserve: optional(
      option("--admin-reserve", integer({ type: "number", min: 0, metavar: "N" }), {
        description: [
          text(
            `Connections kept beyond the connection limits for clients that prove the admin token (default ${DEFAULT_LIMITS.adminReserve}; 0 for none).`,
          ),
        ],
      }),
    ),
    handshakeTimeout: optional(option("--handshake-timeout", string({ metavar: "DURATION" }), {
      description:
        message`Close connections whose TLS handshake and first message take longer to arrive (default ${"10s"}; 0 for never).`,
    })),
    maxCallsPerConnection: limitOption(
      "--max-calls-per-connection",
      "N",
      "Calls in flight on one connection",
      "maxCallsPerConnection",
    ),
    maxUnsentBytes: limitOption(
      "--max-unsent-bytes",
      "BYTES",
      "Unsent reply bytes on one connection before it is paused",
      "maxUnsentBytes",
    ),
    maxUnsentTotal: limitOption(
      "--max-unsent-total",
      "BYTES",
      "Unsent reply bytes in all before connections with a backlog are paused",
      "maxUnsentTotal",
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
        description:
          message`Memory limit of each procedure sandbox, in MiB: what a TypeScript sandbox may use beyond what it starts with (JS heap, ArrayBuffers, WebAssembly), a Python interpreter's data and its /tmp.`,
      }),
      256,
    ),
    workers: optional(option("--workers", integer({ min: 1, max: 256 }), {
      description:
        message`Sandbox processes per service and permission set (default: the number of cores).`,
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
    loadTimeout: withDefault(
      option("--load-timeout", string({ metavar: "DURATION" }), {
        description:
          message`Time limit of loading one procedure at install or start; past it the install fails naming the procedure (default ${"30s"}; 0 for none).`,
      }),
      "30s",
    ),
  }),
  {
    brief: message`Serve procedures to clients.`,
    description:
      message`Serves the procedures installed in its state directory, which survive restarts; rpc init replaces them while the server runs. With --config, address, port and known clients come from init.yaml, and the file's procedures for this server are installed at start when their sources are readable here. TypeScript procedures run in sandboxes with only the permissions init.yaml grants them (trusted: true runs one in the server itself); Python procedures in python3 interpreters confined with bubblewrap (trusted: true runs one unconfined). Logs every connection, client, unauthorized access, call and exception on stderr with a timestamp. On SIGINT or SIGTERM it refuses new connections at once, gives calls in flight --grace to finish, then exits 0. --check validates everything and loads every procedure without serving.`,
    footer: examples(
      "rpc server --config init.yaml --name s1",
      "RPC_ADMIN_TOKEN=secret rpc server --name s1 --port 8181",
      "rpc server --name s1 --tls-cert s1.pem --tls-key s1.key --tls-client-ca clients-ca.pem",
      "rpc server --config init.yaml --name s2 --port 0 --log-file s2.jsonl --audit-log audit.jsonl",
      "rpc server --config init.yaml --name s1 --http 127.0.0.1:8080",
    ),
  },
);

/** Options of {@linkcode runServer}, as parsed. */
export interface ServerCommandOptions {
  config?: string;
  name?: string;
  host?: string;
  port?: number;
  listen?: string;
  socketMode?: string;
  logFile?: string;
  logMaxBytes: number;
  logKeep: number;
  refusalSummary: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  check: boolean;
  grace: string;
  http?: string;
  pidfile?: string;
  maxFrameBytes?: number;
  maxStringLength?: number;
  maxListLength?: number;
  maxDepth?: number;
  maxIntegerDigits?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  adminReserve?: number;
  handshakeTimeout?: string;
  maxCallsPerConnection?: number;
  maxUnsentBytes?: number;
  maxUnsentTotal?: number;
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
  loadTimeout: string;
  stateDir?: string;
  adminTokenFile?: string;
  insecure: boolean;
}

/** An optional numeric limit flag whose default is in {@linkcode DEFAULT_LIMITS}. */
function limitOption(
  name: `--${string}`,
  metavar: Uppercase<`${"B" | "C" | "D" | "I" | "L" | "N"}${string}`>,
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
    maxIntegerDigits: options.maxIntegerDigits,
    maxConnections: options.maxConnections,
    maxConnectionsPerIp: options.maxConnectionsPerIp,
    adminReserve: options.adminReserve,
    handshakeTimeoutMs: duration(options.handshakeTimeout),
    maxCallsPerConnection: options.maxCallsPerConnection,
    maxUnsentBytes: options.maxUnsentBytes,
    maxUnsentTotal: options.maxUnsentTotal,
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

/**
 * Builds the logger: readable text (or JSON lines) on stderr, plus JSON lines
 * to a file on request.
 */
export function serverLogger(
  logFile: LogFile | undefined,
  level: LogLevel,
  format: LogFormat = "text",
): Logger {
  const sinks: LogSink[] = [
    new BufferedSink(Deno.stderr, format === "json" ? formatJsonLine : formatTextLine),
  ];
  if (logFile) sinks.push(new BufferedSink(logFile, formatJsonLine));
  return new Logger(sinks, { level });
}

/** A logger that appends JSON lines to a file (the audit log). */
function jsonLinesLogger(file: LogFile): Logger {
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

/** The runners procedures load with: TypeScript in sandboxes (or inline when trusted), Python. */
export async function procedureRunners(
  options: Pick<ServerCommandOptions, "sandboxMemory" | "workers"> & { loadTimeoutMs?: number },
  logger?: Logger,
): Promise<Record<string, Runner>> {
  const [{ PythonRunner }, { SandboxRunner }, { TypeScriptRunner }] = await Promise.all([
    import("../core/runners/python.ts"),
    import("../core/runners/sandbox.ts"),
    import("../core/runners/typescript.ts"),
  ]);
  return {
    typescript: new TypeScriptRunner(
      new SandboxRunner({
        memoryMb: options.sandboxMemory,
        ...(options.workers ? { size: options.workers } : {}),
        // A sandbox stuck loading is killed when the load limit is reached.
        ...(options.loadTimeoutMs !== undefined ? { loadTimeoutMs: options.loadTimeoutMs } : {}),
        ...(logger ? { logger } : {}),
      }),
    ),
    python: new PythonRunner({ memoryMb: options.sandboxMemory }),
  };
}

/** Everything `rpc server` resolves from its flags, environment and init.yaml before serving. */
export interface ServerSettings {
  name: string;
  /** init.yaml, when one was given. */
  cluster?: Cluster;
  /** This server's entry in init.yaml. */
  entry?: ServerEntry;
  hostname: string;
  port: number;
  /** The unix socket to listen on instead of TCP (--listen unix:PATH). */
  unix?: { path: string; mode: number };
  stateDir: string;
  token?: string;
  /** Where the admin secret came from, for --check. */
  tokenSource: string;
  tls?: TlsServerOptions;
  limits: Partial<ServerLimits>;
  callTimeoutMs: number;
  loadTimeoutMs: number;
  refusalSummaryMs: number;
  graceMs: number;
  /** Where `--http` serves, when given. */
  http?: Address;
}

/**
 * Resolves and validates the settings of `rpc server`: init.yaml and this
 * server's entry in it, address, state directory, admin secret, TLS files,
 * limits and durations. Throws on the first problem.
 */
export async function serverSettings(options: ServerCommandOptions): Promise<ServerSettings> {
  const { defaultStateDir, loadCluster } = await servingModules();
  const path = configPath(options.config, false, false);
  const cluster = path ? await loadCluster(path) : undefined;
  const name = options.name ?? Deno.env.get("RPC_SERVER_NAME") ?? "rpc";
  const entry = cluster?.servers.get(name);
  if (cluster && !entry && options.name) {
    throw new UsageError(
      `No server "${name}" in ${path}: it names ${[...cluster.servers.keys()].join(", ")}`,
    );
  }
  const durationOf = (flag: string, text: string, positive: boolean) => {
    let ms: number;
    try {
      ms = parseDuration(text);
    } catch (error) {
      throw new UsageError(`${flag}: ${(error as Error).message}`);
    }
    if (positive && ms <= 0) throw new UsageError(`${flag}: duration must be positive`);
    return ms;
  };
  const callTimeoutMs = durationOf("--call-timeout", options.callTimeout, true);
  const graceMs = durationOf("--grace", options.grace, false);
  const loadTimeoutMs = durationOf("--load-timeout", options.loadTimeout, false);
  const refusalSummaryMs = durationOf("--refusal-summary", options.refusalSummary, false);
  const limits = limitsFrom(options);
  if ((limits.maxFrameBytes ?? 0) > LARGEST_FRAME_LIMIT) {
    throw new UsageError(`--max-frame-bytes: ${frameLimitError(limits.maxFrameBytes!).message}`);
  }
  const token = await adminToken(options.adminTokenFile);
  const tls = await tlsFrom(options);
  const http = options.http === undefined ? undefined : httpAddress(options.http);
  const unix = await unixFrom(options, tls !== undefined);
  return {
    name,
    ...(cluster ? { cluster } : {}),
    ...(entry ? { entry } : {}),
    hostname: options.host ?? Deno.env.get("RPC_HOST") ?? entry?.host ?? "127.0.0.1",
    port: options.port ?? envPort() ?? entry?.port ?? 8181,
    ...(unix ? { unix } : {}),
    stateDir: options.stateDir ?? Deno.env.get("RPC_STATE_DIR") ??
      defaultStateDir(name, processEnvironment),
    ...(token ? { token } : {}),
    tokenSource: options.insecure
      ? "none needed (--insecure: anyone may install and administer)"
      : options.adminTokenFile
      ? `from ${options.adminTokenFile}`
      : token
      ? "from RPC_ADMIN_TOKEN"
      : "none: installs and admin requests over the network are refused",
    ...(tls ? { tls } : {}),
    limits,
    callTimeoutMs,
    loadTimeoutMs,
    refusalSummaryMs,
    graceMs,
    ...(http ? { http } : {}),
  };
}

/** Reads `--http HOST:PORT` (port 0 picks a free one). */
function httpAddress(text: string): Address {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) {
    throw new UsageError(`--http ${text}: expected HOST:PORT, e.g. 127.0.0.1:8080`);
  }
  return { hostname: match[1], port };
}

/** The unix socket of --listen and --socket-mode, if any. */
async function unixFrom(
  options: ServerCommandOptions,
  tls: boolean,
): Promise<{ path: string; mode: number } | undefined> {
  if (options.listen === undefined) {
    if (options.socketMode !== undefined) throw new UsageError("--socket-mode needs --listen");
    return undefined;
  }
  if (!options.listen.startsWith("unix:") || options.listen.length === 5) {
    throw new UsageError(
      `--listen: expected unix:/path/to/rpc.sock, got "${options.listen}" (for TCP use --host and --port)`,
    );
  }
  if (options.host !== undefined || options.port !== undefined) {
    throw new UsageError("--listen: a unix socket takes no --host or --port");
  }
  if (tls) throw new UsageError("--listen: a unix socket does not serve TLS (--tls-cert)");
  const modeText = options.socketMode ?? "600";
  if (!/^[0-7]{3,4}$/.test(modeText)) {
    throw new UsageError(
      `--socket-mode: expected octal permission bits like 660, got "${modeText}"`,
    );
  }
  const { resolve } = await servingModules();
  return { path: resolve(options.listen.slice(5)), mode: parseInt(modeText, 8) };
}

/** Runs `rpc server` until SIGINT or SIGTERM (or `--check`); returns the exit code. */
export async function runServer(options: ServerCommandOptions): Promise<number> {
  const settings = await serverSettings(options);
  if (options.check) return await checkServer(options, settings);
  const { AdminOps, CodeStore, hashSecret, httpGateway, Installer, RpcServer } =
    await servingModules();
  const lock = await lockStateDir(settings.stateDir);
  const { name, cluster, entry, token } = settings;
  const rotation = { maxBytes: options.logMaxBytes, keep: options.logKeep };
  const logFile = options.logFile ? await LogFile.open(options.logFile, rotation) : undefined;
  const auditFile = options.auditLog ? await LogFile.open(options.auditLog, rotation) : undefined;
  const files = [logFile, auditFile].filter((file) => file !== undefined);
  const logger = serverLogger(logFile, options.logLevel, options.logFormat);
  const audit = auditFile ? jsonLinesLogger(auditFile) : undefined;
  const runners = await procedureRunners(
    { ...options, loadTimeoutMs: settings.loadTimeoutMs },
    logger,
  );
  const auth = {
    ...(token ? { adminTokenHash: hashSecret(token) } : {}),
    insecure: options.insecure,
    tokenSource: "--admin-token-file or RPC_ADMIN_TOKEN",
  };
  const server = new RpcServer({
    name,
    hostname: settings.hostname,
    port: settings.port,
    ...(settings.unix ? { unix: settings.unix } : {}),
    registry: Registry.empty(),
    limits: settings.limits,
    ...(settings.tls ? { tls: settings.tls } : {}),
    ...(audit ? { audit } : {}),
    callTimeoutMs: settings.callTimeoutMs,
    refusalSummaryMs: settings.refusalSummaryMs,
    logger,
    adminAuth: auth,
  });
  const installer = new Installer({
    store: new CodeStore(settings.stateDir),
    server,
    runners,
    logger,
    ...auth,
    ...(audit ? { audit } : {}),
    loadTimeoutMs: settings.loadTimeoutMs,
  });
  server.admin = new AdminOps({
    server,
    logger,
    ...auth,
    ...(audit ? { audit } : {}),
    next: installer.handle,
  }).handle;
  const http = settings.http
    ? httpGateway({
      server,
      address: settings.http,
      ...(settings.tls ? { tls: settings.tls } : {}),
      logger,
      generation: () => installer.manifest.generation,
      runners,
    })
    : undefined;
  // Signals are heard from the start, so that one during boot still stops the server cleanly.
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const first = Promise.withResolvers<Deno.Signal>();
  const again = new AbortController();
  let received = 0;
  const onSignal = (signal: Deno.Signal) => () => {
    if (received++ === 0) first.resolve(signal);
    else again.abort();
  };
  const listeners = signals.map((signal) => ({ signal, listener: onSignal(signal) }));
  if (Deno.build.os !== "windows") {
    // logrotate's postrotate: the files were moved away, start new ones where they were.
    listeners.push({ signal: "SIGHUP", listener: () => void reopenLogs(files, logger) });
  }
  for (const { signal, listener } of listeners) Deno.addSignalListener(signal, listener);
  if (options.pidfile) await Deno.writeTextFile(options.pidfile, `${Deno.pid}\n`);
  try {
    await installer.boot();
    if (cluster && entry) await installFromFile(installer, cluster, name, logger);
    if (!token && !options.insecure) {
      logger.warn(
        "admin",
        "no admin token: installs and admin requests over the network are refused (see --admin-token-file)",
      );
    }
    try {
      await server.start();
    } catch (error) {
      throw listenError(error, options, settings);
    }
    await http?.start();
    const signal = await first.promise;
    logger.info(
      "shutdown",
      `received ${signal}: stopping, calls in flight have ${settings.graceMs} ms to finish (send it again to stop at once)`,
      { signal, graceMs: settings.graceMs },
    );
    http?.stopAccepting();
    const abandoned = await server.drain(settings.graceMs, again.signal);
    logger.info("shutdown", `stopped${abandoned > 0 ? `, ${abandoned} calls cut short` : ""}`);
    return 0;
  } finally {
    for (const { signal, listener } of listeners) Deno.removeSignalListener(signal, listener);
    await http?.close();
    await server.close();
    await Promise.all(Object.values(runners).map((runner) => runner.close()));
    if (options.pidfile) await Deno.remove(options.pidfile).catch(() => {});
    await logger.flush();
    await audit?.flush();
    await Promise.all(files.map((file) => file.close()));
    lock.release();
  }
}

/** Reopens the log files on SIGHUP, and says so in the new ones. */
async function reopenLogs(files: LogFile[], logger: Logger): Promise<void> {
  try {
    await Promise.all(files.map((file) => file.reopen()));
    logger.info(
      "reopen",
      `received SIGHUP: reopened ${files.map((file) => file.path).join(" and ") || "no log files"}`,
    );
  } catch (error) {
    logger.error(
      "reopen",
      `received SIGHUP: cannot reopen the log files: ${(error as Error).message}`,
    );
  }
}

/**
 * Locks the state directory for this server: a second server on it fails at
 * once, naming the pid of the first.
 */
async function lockStateDir(dir: string): Promise<StateDirLock> {
  const { StateDirLock, StateDirLocked } = await import("../core/deploy/state_lock.ts");
  try {
    return await StateDirLock.acquire(dir);
  } catch (error) {
    if (!(error instanceof StateDirLocked)) throw error;
    throw new UsageError(
      `${error.message}: stop it, or give this server a state directory of its own (--state-dir or RPC_STATE_DIR)`,
    );
  }
}

/** Problems with a file a flag names for writing: its directory must exist. */
async function writableFileProblems(
  flags: [string, string | undefined][],
): Promise<string[]> {
  const { dirname, resolve } = await servingModules();
  const problems: string[] = [];
  for (const [flag, path] of flags) {
    if (path === undefined) continue;
    const directory = dirname(resolve(path));
    try {
      if (!(await Deno.stat(directory)).isDirectory) throw new Error("not a directory");
    } catch (error) {
      const reason = error instanceof Deno.errors.NotFound
        ? "does not exist"
        : (error as Error).message;
      problems.push(`${flag} ${path}: directory ${directory} ${reason}`);
    }
  }
  return problems;
}

/**
 * `rpc server --check`: validates what {@linkcode serverSettings} did not
 * already (files to write, TLS material), loads every installed procedure,
 * and those init.yaml would install at start, with the real runners, and
 * prints what the server would serve. Binds no port. Returns 0 or 1.
 */
async function checkServer(
  options: ServerCommandOptions,
  settings: ServerSettings,
): Promise<number> {
  const {
    checkCluster,
    checkLines,
    checkSources,
    checkStateDir,
    failureLines,
    planInstall,
    planIsEmpty,
  } = await servingModules();
  const { name, cluster, entry } = settings;
  const problems = await writableFileProblems([
    ["--log-file", options.logFile],
    ["--audit-log", options.auditLog],
    ["--pidfile", options.pidfile],
  ]);
  for (
    const [flag, text] of [["--tls-cert", settings.tls?.cert], ["--tls-key", settings.tls?.key]]
  ) {
    if (text !== undefined && !text.includes("-----BEGIN ")) {
      problems.push(`${flag}: not a PEM file`);
    }
  }
  const transport = settings.tls ? settings.tls.clientCa ? "mutual TLS" : "TLS" : "plain TCP";
  print(`rpc server ${name}: checking; no port is bound`);
  if (cluster) {
    print(
      `  config     ${cluster.file}${entry ? ` (server ${name})` : ` (no server ${name} in it)`}`,
    );
  }
  print(
    settings.unix
      ? `  listen     unix:${settings.unix.path}, mode ${settings.unix.mode.toString(8)}`
      : `  listen     ${settings.hostname}:${settings.port}, ${transport}`,
  );
  if (settings.http) {
    print(
      `  http       ${settings.http.hostname}:${settings.http.port}, ${
        settings.tls ? "HTTPS" : "HTTP"
      }`,
    );
  }
  print(`  admin      ${settings.tokenSource}`);
  print(`  state dir  ${settings.stateDir}`);
  const runners = await procedureRunners({
    ...options,
    workers: options.workers ?? 1,
    loadTimeoutMs: settings.loadTimeoutMs,
  });
  let failed = 0;
  let serving: { services: number; procedures: number } = { services: 0, procedures: 0 };
  try {
    let installed: StateCheck | undefined;
    try {
      installed = await checkStateDir(settings.stateDir, runners);
    } catch (error) {
      problems.push(`state dir ${settings.stateDir}: ${(error as Error).message}`);
    }
    if (installed) {
      const { manifest } = installed;
      print(
        manifest.generation === 0
          ? `installed: nothing yet`
          : `installed: generation ${manifest.generation} (${manifest.installedAt}), ${manifest.services.length} services, ${manifest.procedures.length} procedures`,
      );
      for (const line of checkLines(installed)) print(line);
      for (const line of failureLines(installed)) problems.push(`installed ${line}`);
      serving = { services: manifest.services.length, procedures: manifest.procedures.length };
    }
    if (cluster && entry) {
      const unreadable = await checkSources(cluster, [name]);
      if (unreadable.length > 0) {
        print(
          `${cluster.file}: sources for ${name} are not all readable here (${
            unreadable[0].message
          }); it gives only address, port and clients`,
        );
      } else {
        const fromFile = await checkCluster(cluster, runners, name);
        const same = installed && planIsEmpty(planInstall(installed.manifest, fromFile.manifest));
        print(
          same
            ? `${cluster.file}: the same as installed; nothing to install at start`
            : `${cluster.file}: installed at start (the sources for ${name} are readable here):`,
        );
        if (!same) {
          for (const line of checkLines(fromFile)) print(line);
          for (const line of failureLines(fromFile, cluster.file)) problems.push(line);
          serving = {
            services: fromFile.manifest.services.length,
            procedures: fromFile.manifest.procedures.length,
          };
        }
      }
    }
  } finally {
    await Promise.all(Object.values(runners).map((runner) => runner.close()));
  }
  if (!settings.token && !options.insecure) {
    print("warning: no admin token: rpc init and rpc admin will be refused");
  }
  failed = problems.length;
  for (const problem of problems) printError(`error: ${problem}`);
  print(
    failed === 0
      ? `ok: would serve ${serving.services} services, ${serving.procedures} procedures`
      : `FAILED: ${failed} problem${failed === 1 ? "" : "s"}`,
  );
  return failed === 0 ? 0 : 1;
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
  const { checkSources, desiredStateFor, planInstall, planIsEmpty } = await servingModules();
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
  await installer.install(state, missing, {
    by: cluster.file,
    generation: installer.manifest.generation,
  });
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

/** The code of a failed `listen`, from Deno's error classes or node's `code`. */
function listenErrorCode(error: unknown): string | undefined {
  if (error instanceof Deno.errors.AddrNotAvailable) return "EADDRNOTAVAIL";
  if (error instanceof Deno.errors.AddrInUse) return "EADDRINUSE";
  if (error instanceof Deno.errors.PermissionDenied) return "EACCES";
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Explains why the server could not listen, naming the address or port and
 * the setting it came from: `--host` for an address this machine does not
 * have, `--port` for a port in use or reserved. Other errors pass unchanged.
 */
export function listenError(
  error: unknown,
  options: Pick<ServerCommandOptions, "host" | "port">,
  settings: Pick<ServerSettings, "hostname" | "port" | "name" | "entry" | "cluster">,
): unknown {
  const { hostname, port, name } = settings;
  const file = settings.entry ? settings.cluster?.file : undefined;
  const hostFrom = options.host !== undefined
    ? "--host"
    : Deno.env.get("RPC_HOST")
    ? "RPC_HOST"
    : file
    ? `server ${name}'s ip in ${file}`
    : "the default";
  const portFrom = options.port !== undefined
    ? "--port"
    : Deno.env.get("RPC_PORT")
    ? "RPC_PORT"
    : file
    ? `server ${name}'s port in ${file}`
    : "the default";
  const where = `Cannot listen on ${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  switch (listenErrorCode(error)) {
    case "EADDRNOTAVAIL":
      return new RpcError(
        ErrorKind.Unavailable,
        `${where}: ${hostname} is not an address of this machine (set by ${hostFrom}); bind another with --host, e.g. --host 0.0.0.0 for all of them, or try the whole cluster on this machine with rpc up`,
      );
    case "EADDRINUSE":
      return new RpcError(
        ErrorKind.Unavailable,
        `${where}: port ${port} is in use (set by ${portFrom}); choose another with --port (0 picks a free one)`,
      );
    case "EACCES":
      return new RpcError(
        ErrorKind.Unavailable,
        `${where}: port ${port} needs privileges (set by ${portFrom}); choose one above 1023 with --port`,
      );
    default:
      return error;
  }
}
