/**
 * Settings of `rpc server`, resolved in one place with the precedence of
 * `settings.ts`: flags > `RPC_*` environment variables > this server's entry
 * in init.yaml > built-in defaults. Every function takes the environment as
 * an argument (the process's by default), so the layering is unit-tested
 * without touching `Deno.env`; `cmd/server.ts` only wires what comes out.
 *
 * Variables read here: `RPC_CONFIG`, `RPC_SERVER_NAME`, `RPC_HOST`,
 * `RPC_PORT`, `RPC_STATE_DIR` (default `$XDG_STATE_HOME/rpc/NAME`, else
 * `$HOME/.local/state/rpc/NAME`) and `RPC_ADMIN_TOKEN`.
 *
 * @module
 */

import type { Cluster, ServerEntry } from "../core/deploy/cluster.ts";
import { frameLimitError, type ServerLimits } from "../core/server/limits.ts";
import type { Address, TlsServerOptions } from "../core/transport/mod.ts";
import { LARGEST_FRAME_LIMIT } from "../core/wire/course.ts";
import type { ServerCommandOptions } from "./server_flags.ts";
import {
  adminToken,
  configPath,
  type Environment,
  parseDuration,
  processEnvironment,
  UsageError,
} from "./settings.ts";

/** The server's name without `--name` or `RPC_SERVER_NAME`. */
export const DEFAULT_SERVER_NAME = "rpc";
/** The address bound without `--host`, `RPC_HOST` or an init.yaml entry. */
export const DEFAULT_HOST = "127.0.0.1";
/** The port bound without `--port`, `RPC_PORT` or an init.yaml entry. */
export const DEFAULT_PORT = 8181;

/** Everything `rpc server` resolves from its flags, environment and init.yaml before serving. */
export interface ServerSettings {
  name: string;
  /** init.yaml, when one was given. */
  cluster?: Cluster;
  /** This server's entry in init.yaml. */
  entry?: ServerEntry;
  hostname: string;
  /** Which setting chose `hostname` (`--host`, `RPC_HOST`, init.yaml, the default), for errors. */
  hostSource: string;
  port: number;
  /** Which setting chose `port`, for errors. */
  portSource: string;
  /** The unix socket to listen on instead of TCP (--listen unix:PATH). */
  unix?: { path: string; mode: number };
  /** The NATS broker to serve through (--broker), and its credentials file. */
  broker?: { url: string; creds?: string };
  /** False with a broker and no address given: the server listens on no port. */
  listens: boolean;
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

/** The server's name: `--name`, else `RPC_SERVER_NAME`, else `rpc`. */
export function serverName(
  flagValue: string | undefined,
  env: Environment = processEnvironment,
): string {
  return flagValue ?? env("RPC_SERVER_NAME") ?? DEFAULT_SERVER_NAME;
}

/**
 * Where to listen on TCP: `--host`/`--port`, else `RPC_HOST`/`RPC_PORT`,
 * else the server's `ip` and `port` in init.yaml, else 127.0.0.1:8181. Says
 * which setting chose each, so that a failure to listen can name it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listenAddress } from "./server_settings.ts";
 * const env = (name: string) => ({ RPC_HOST: "0.0.0.0", RPC_PORT: "9000" })[name];
 * const address = listenAddress({ port: 9100 }, undefined, env);
 * assert.equal(address.hostname, "0.0.0.0");
 * assert.equal(address.hostSource, "RPC_HOST");
 * assert.equal(address.port, 9100);
 * assert.equal(address.portSource, "--port");
 * ```
 */
export function listenAddress(
  flags: Pick<ServerCommandOptions, "host" | "port">,
  file: { entry: ServerEntry; name: string; path: string } | undefined,
  env: Environment = processEnvironment,
): Pick<ServerSettings, "hostname" | "hostSource" | "port" | "portSource"> {
  const inFile = (what: string) => `server ${file!.name}'s ${what} in ${file!.path}`;
  const host: [string, string] = flags.host !== undefined
    ? [flags.host, "--host"]
    : env("RPC_HOST") !== undefined
    ? [env("RPC_HOST")!, "RPC_HOST"]
    : file && file.entry.host !== ""
    ? [file.entry.host, inFile("ip")]
    : [DEFAULT_HOST, "the default"];
  const envPort = env("RPC_PORT");
  const port: [number, string] = flags.port !== undefined
    ? [flags.port, "--port"]
    : envPort !== undefined
    ? [portNumber(envPort), "RPC_PORT"]
    : file && file.entry.port > 0
    ? [file.entry.port, inFile("port")]
    : [DEFAULT_PORT, "the default"];
  return { hostname: host[0], hostSource: host[1], port: port[0], portSource: port[1] };
}

function portNumber(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) {
    throw new UsageError(`RPC_PORT=${text} is not a port (0 to 65535)`);
  }
  return port;
}

/**
 * Where the server keeps installed code: `--state-dir`, else
 * `RPC_STATE_DIR`, else `$XDG_STATE_HOME/rpc/NAME`, else
 * `$HOME/.local/state/rpc/NAME`.
 */
export function stateDirFor(
  flagValue: string | undefined,
  name: string,
  env: Environment = processEnvironment,
): string {
  const chosen = flagValue ?? env("RPC_STATE_DIR");
  if (chosen) return chosen;
  const xdg = env("XDG_STATE_HOME");
  // "/" is a separator on Windows too; node:path is not loaded for this alone.
  const base = xdg ?? `${env("HOME") ?? env("USERPROFILE") ?? "."}/.local/state`;
  return `${base.replace(/[\\/]+$/, "")}/rpc/${name}`;
}

/** A duration flag in ms; `positive` refuses 0. */
function durationOf(flag: string, text: string, positive: boolean): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (error) {
    throw new UsageError(`${flag}: ${(error as Error).message}`);
  }
  if (positive && ms <= 0) throw new UsageError(`${flag}: duration must be positive`);
  return ms;
}

/** The limits given on the command line; the rest keep their defaults. */
export function limitsFrom(options: ServerCommandOptions): Partial<ServerLimits> {
  const duration = (flag: string, text: string | undefined) =>
    text === undefined ? undefined : durationOf(flag, text, false);
  const limits: Partial<ServerLimits> = {
    maxFrameBytes: options.maxFrameBytes,
    maxStringLength: options.maxStringLength,
    maxListLength: options.maxListLength,
    maxDepth: options.maxDepth,
    maxIntegerDigits: options.maxIntegerDigits,
    maxConnections: options.maxConnections,
    maxConnectionsPerIp: options.maxConnectionsPerIp,
    adminReserve: options.adminReserve,
    handshakeTimeoutMs: duration("--handshake-timeout", options.handshakeTimeout),
    maxCallsPerConnection: options.maxCallsPerConnection,
    maxUnsentBytes: options.maxUnsentBytes,
    maxUnsentTotal: options.maxUnsentTotal,
    idleTimeoutMs: duration("--idle-timeout", options.idleTimeout),
    frameTimeoutMs: duration("--frame-timeout", options.frameTimeout),
    clientRate: options.clientRate,
    clientBurst: options.clientBurst,
    globalRate: options.globalRate,
    globalBurst: options.globalBurst,
  };
  if ((limits.maxFrameBytes ?? 0) > LARGEST_FRAME_LIMIT) {
    throw new UsageError(`--max-frame-bytes: ${frameLimitError(limits.maxFrameBytes!).message}`);
  }
  return limits;
}

async function readFlagFile(flag: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new UsageError(`${flag} ${path}: ${(error as Error).message}`);
  }
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
    cert: await readFlagFile("--tls-cert", options.tlsCert),
    key: await readFlagFile("--tls-key", options.tlsKey),
    ...(options.tlsClientCa
      ? { clientCa: await readFlagFile("--tls-client-ca", options.tlsClientCa) }
      : {}),
  };
}

/** Reads `--http HOST:PORT` (port 0 picks a free one). */
export function httpAddress(text: string): Address {
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
  // Loaded only for a unix socket: the help and Tab completion of rpc server do without it.
  const { resolve } = await import("node:path");
  return { path: resolve(options.listen.slice(5)), mode: parseInt(modeText, 8) };
}

/**
 * Resolves and validates the settings of `rpc server`: init.yaml and this
 * server's entry in it, address, state directory, admin secret, TLS files,
 * limits and durations. Throws on the first problem.
 */
export async function serverSettings(
  options: ServerCommandOptions,
  env: Environment = processEnvironment,
): Promise<ServerSettings> {
  const path = configPath(options.config, false, false, env);
  const cluster = path
    ? await (await import("../core/deploy/cluster.ts")).loadCluster(path)
    : undefined;
  const name = serverName(options.name, env);
  const entry = cluster?.servers.get(name);
  if (cluster && !entry && options.name) {
    throw new UsageError(
      `No server "${name}" in ${path}: it names ${[...cluster.servers.keys()].join(", ")}`,
    );
  }
  const callTimeoutMs = durationOf("--call-timeout", options.callTimeout, true);
  const graceMs = durationOf("--grace", options.grace, false);
  const loadTimeoutMs = durationOf("--load-timeout", options.loadTimeout, false);
  const refusalSummaryMs = durationOf("--refusal-summary", options.refusalSummary, false);
  const limits = limitsFrom(options);
  const token = await adminToken(options.adminTokenFile, env);
  const tls = await tlsFrom(options);
  const http = options.http === undefined ? undefined : httpAddress(options.http);
  const unix = await unixFrom(options, tls !== undefined);
  const address = listenAddress(
    options,
    cluster && entry ? { entry, name, path: cluster.file } : undefined,
    env,
  );
  // With a broker, the server binds a port only when one is asked for.
  const brokerUrl = options.broker ?? env("RPC_BROKER") ?? cluster?.broker;
  const brokerCreds = options.brokerCreds ?? env("RPC_BROKER_CREDS");
  const listens = brokerUrl === undefined || unix !== undefined || options.port !== undefined ||
    options.host !== undefined || env("RPC_PORT") !== undefined || (entry?.port ?? 0) > 0;
  return {
    name,
    ...(cluster ? { cluster } : {}),
    ...(entry ? { entry } : {}),
    ...address,
    ...(brokerUrl
      ? { broker: { url: brokerUrl, ...(brokerCreds ? { creds: brokerCreds } : {}) } }
      : {}),
    listens,
    ...(unix ? { unix } : {}),
    stateDir: stateDirFor(options.stateDir, name, env),
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
