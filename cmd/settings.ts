/**
 * Settings of the client-side commands, resolved in one place with one
 * precedence: built-in defaults < init.yaml < `RPC_*` environment variables <
 * flags. Each function takes the environment as an argument (the process's by
 * default), so the layering is unit-tested without touching `Deno.env`.
 *
 * Variables read here: `RPC_CONFIG`, `RPC_CLIENT`, `RPC_SERVER`, `RPC_TIMEOUT`,
 * `RPC_HISTORY`, `RPC_ADMIN_TOKEN`, and `NO_COLOR`; `server_settings.ts` reads
 * the server's with the same precedence. README's "Configuration" table lists
 * them all.
 *
 * @module
 */

import type { ClientOptions } from "../core/client/client.ts";
import type { Cluster } from "../core/deploy/cluster.ts";
import type { TlsClientOptions } from "../core/transport/mod.ts";
import { brokerDial, brokerFrom, type BrokerSettings } from "./broker.ts";

/** A mistake in how a command was invoked (flags, arguments, settings): exit 2 with a short hint. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * Parses a duration in milliseconds from text such as `500`, `250ms`, `2s`,
 * `1.5s` or `1m` (a bare number is milliseconds).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDuration } from "./settings.ts";
 * assert.equal(parseDuration("1.5s"), 1500);
 * assert.throws(() => parseDuration("soon"));
 * ```
 * @throws {UsageError} when the text is not a duration.
 */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!match) throw new UsageError(`Cannot read duration "${text}": use e.g. 500ms, 2s, 1m`);
  const value = Number(match[1]);
  const unit = match[2] ?? "ms";
  return Math.round(unit === "ms" ? value : unit === "s" ? value * 1000 : value * 60_000);
}

/** Reads one environment variable; empty values count as unset. */
export type Environment = (name: string) => string | undefined;

/** The process's environment. */
export const processEnvironment: Environment = (name) => Deno.env.get(name) || undefined;

/** Default time limit of one call (and of connecting) for `call`, `list`, `describe`, `repl`. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** Name of the REPL's history file in the home directory. */
export const HISTORY_FILE_NAME = ".rpc_history";

/**
 * The init.yaml path to use: the flag, else `RPC_CONFIG`, else `./init.yaml`
 * when it exists (unless `lookHere` is false, as for `rpc server`). With
 * `required`, no file at all is a usage error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { configPath } from "./settings.ts";
 * const env = (name: string) => name === "RPC_CONFIG" ? "/etc/rpc/init.yaml" : undefined;
 * assert.equal(configPath("mine.yaml", false, true, env), "mine.yaml");
 * assert.equal(configPath(undefined, false, true, env), "/etc/rpc/init.yaml");
 * ```
 */
export function configPath(
  flagValue: string | undefined,
  required = false,
  lookHere = true,
  env: Environment = processEnvironment,
): string | undefined {
  const chosen = flagValue || env("RPC_CONFIG");
  if (chosen) return chosen;
  if (!lookHere && !required) return undefined;
  try {
    if (Deno.statSync("init.yaml").isFile) return "init.yaml";
  } catch {
    // No init.yaml here.
  }
  if (required) throw new UsageError("No init.yaml: pass --config FILE or set RPC_CONFIG");
  return undefined;
}

/**
 * Loads the cluster file if one is configured (flag, `RPC_CONFIG`,
 * `./init.yaml`). The YAML parser is loaded only then: a command given
 * `host:port` and no init.yaml starts without it.
 */
export async function maybeCluster(
  flagValue: string | undefined,
  env: Environment = processEnvironment,
): Promise<Cluster | undefined> {
  const path = configPath(flagValue, false, true, env);
  if (!path) return undefined;
  const { loadCluster } = await import("../core/deploy/cluster.ts");
  return await loadCluster(path);
}

/** The client name to claim: the flag, else `RPC_CLIENT`, else none (anonymous). */
export function clientName(
  flagValue: string | undefined,
  env: Environment = processEnvironment,
): string | undefined {
  return flagValue || env("RPC_CLIENT");
}

/**
 * The time limit in ms: `--timeout`, else `RPC_TIMEOUT`, else 30 s. Both
 * take durations such as `500ms`, `5s`, `1m` (a bare number is ms).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { timeoutMs } from "./settings.ts";
 * assert.equal(timeoutMs(undefined, () => "5s"), 5000);
 * assert.equal(timeoutMs("250ms", () => "5s"), 250);
 * ```
 */
export function timeoutMs(
  flagValue: string | undefined,
  env: Environment = processEnvironment,
): number {
  if (flagValue !== undefined) return checkedDuration(flagValue, "--timeout");
  const fromEnv = env("RPC_TIMEOUT");
  if (fromEnv !== undefined) return checkedDuration(fromEnv, "RPC_TIMEOUT");
  return DEFAULT_TIMEOUT_MS;
}

function checkedDuration(text: string, source: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (error) {
    throw new UsageError(`${source}: ${(error as Error).message}`);
  }
  if (ms <= 0) throw new UsageError(`${source}: duration must be positive, got "${text}"`);
  return ms;
}

/**
 * Where the REPL keeps its history: `RPC_HISTORY`, else `~/.rpc_history`.
 * `RPC_HISTORY=off` (or a home directory that cannot be found) keeps none:
 * the result is then `undefined`.
 */
export function historyPath(env: Environment = processEnvironment): string | undefined {
  const chosen = env("RPC_HISTORY");
  if (chosen === "off") return undefined;
  if (chosen) return chosen;
  const home = env("HOME") ?? env("USERPROFILE");
  // "/" is a separator on Windows too; node:path is not loaded for this alone.
  return home ? `${home.replace(/[\\/]+$/, "")}/${HISTORY_FILE_NAME}` : undefined;
}

/**
 * The server the REPL opens: the argument, else `RPC_SERVER`, else the first
 * server of init.yaml.
 */
export function replServer(
  argument: string | undefined,
  cluster: Cluster | undefined,
  env: Environment = processEnvironment,
): string {
  const chosen = argument || env("RPC_SERVER");
  if (chosen) return chosen;
  const first = cluster?.servers.keys().next();
  if (first && !first.done) return first.value;
  throw new UsageError(
    "No server to connect to: give SERVER (a name from init.yaml or host:port) or set RPC_SERVER",
  );
}

/**
 * Whether to color output written to `stream`: never when `NO_COLOR` is set
 * (to anything but the empty string) or the stream is not a terminal.
 */
export function colorEnabled(
  stream: { isTerminal(): boolean } = Deno.stdout,
  env: Environment = processEnvironment,
): boolean {
  return env("NO_COLOR") === undefined && stream.isTerminal();
}

/** What every client-side command needs, with all layers applied. */
export interface ClientSettings {
  /** The cluster file, when one was found. */
  cluster?: Cluster;
  /** The client name to claim; `undefined` is anonymous. */
  client?: string;
  /** Time limit of connecting and of each call. */
  timeoutMs: number;
  /** The client's secret, when it has one. */
  secret?: string;
  /** How to speak TLS to servers, when they serve it. */
  tls?: TlsClientOptions;
  /** The NATS broker to reach servers through, when one is given. */
  broker?: BrokerSettings;
}

/** Flags a client-side command may take. */
export interface ClientFlags {
  config?: string;
  as?: string;
  timeout?: string;
  secretFile?: string;
  tlsCa?: string;
  tlsPin?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Talk to the cluster `rpc up` runs on this machine (also `RPC_LOCAL=1`). */
  local?: boolean;
  /** The NATS broker to reach servers through (also `RPC_BROKER`, init.yaml's `network.broker`). */
  broker?: string;
  /** The broker's credentials file (also `RPC_BROKER_CREDS`). */
  brokerCreds?: string;
}

async function readSecretFile(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new UsageError(`Cannot read ${what} ${path}: ${(error as Error).message}`);
  }
  const secret = text.trim();
  if (!secret) throw new UsageError(`${what[0].toUpperCase()}${what.slice(1)} ${path} is empty`);
  return secret;
}

/**
 * The client's secret: `--secret-file`, else `RPC_CLIENT_SECRET_FILE`, else
 * `RPC_CLIENT_SECRET`, else the `secret` or `secret-file` init.yaml gives the
 * client (when that file is readable here).
 */
export async function clientSecretFrom(
  flags: ClientFlags,
  client: string | undefined,
  cluster: Cluster | undefined,
  env: Environment = processEnvironment,
): Promise<string | undefined> {
  const file = flags.secretFile ?? env("RPC_CLIENT_SECRET_FILE");
  if (file) return await readSecretFile(file, "secret file");
  const inline = env("RPC_CLIENT_SECRET")?.trim();
  if (inline) return inline;
  const entry = client ? cluster?.clients.get(client) : undefined;
  if (!entry) return undefined;
  try {
    const { clientSecret } = await import("../core/deploy/cluster.ts");
    return await clientSecret(entry);
  } catch {
    // The file's secret-file is for the servers' operator; this machine may not have it.
    return undefined;
  }
}

/**
 * The servers' admin secret: `--admin-token-file`, else `RPC_ADMIN_TOKEN`;
 * never from argv. Used by `rpc server` to check it, and by `rpc init` and
 * `rpc admin` to prove it.
 */
export async function adminToken(
  file: string | undefined,
  env: Environment = processEnvironment,
): Promise<string | undefined> {
  if (file) return await readSecretFile(file, "admin token file");
  return env("RPC_ADMIN_TOKEN")?.trim() || undefined;
}

/**
 * TLS settings: `--tls-ca`, `--tls-pin`, `--tls-cert`/`--tls-key`, else
 * `RPC_TLS_CA`, `RPC_TLS_PIN`, `RPC_TLS_CERT`/`RPC_TLS_KEY`. `undefined` when
 * none is set: plain TCP.
 */
export async function tlsFrom(
  flags: ClientFlags,
  env: Environment = processEnvironment,
): Promise<TlsClientOptions | undefined> {
  const ca = flags.tlsCa ?? env("RPC_TLS_CA");
  const pin = flags.tlsPin ?? env("RPC_TLS_PIN");
  const cert = flags.tlsCert ?? env("RPC_TLS_CERT");
  const key = flags.tlsKey ?? env("RPC_TLS_KEY");
  if (!ca && !pin && !cert && !key) return undefined;
  if (Boolean(cert) !== Boolean(key)) throw new UsageError("--tls-cert and --tls-key go together");
  const read = async (path: string, what: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      throw new UsageError(`Cannot read ${what} ${path}: ${(error as Error).message}`);
    }
  };
  return {
    ...(ca ? { ca: await read(ca, "TLS CA file") } : {}),
    ...(pin ? { pin } : {}),
    ...(cert && key
      ? { cert: await read(cert, "TLS certificate"), key: await read(key, "TLS key") }
      : {}),
  };
}

/** The options of `connect()` for these settings. */
export function connectOptions(settings: ClientSettings): ClientOptions {
  const localAddress = localSource(settings.cluster, settings.client);
  return {
    connectTimeoutMs: settings.timeoutMs,
    ...(localAddress ? { localAddress } : {}),
    ...(settings.client ? { client: settings.client } : {}),
    ...(settings.secret ? { secret: settings.secret } : {}),
    ...(settings.tls ? { tls: settings.tls } : {}),
    ...(settings.broker ? { dial: brokerDial(settings.broker) } : {}),
  };
}

/** Resolves {@linkcode ClientSettings} from flags and the environment, loading init.yaml. */
export async function clientSettings(
  flags: ClientFlags,
  env: Environment = processEnvironment,
): Promise<ClientSettings> {
  const timeout = timeoutMs(flags.timeout, env);
  let cluster = await maybeCluster(flags.config, env);
  if (localWanted(flags, env)) cluster = await localCluster(cluster);
  const client = clientName(flags.as, env);
  const secret = await clientSecretFrom(flags, client, cluster, env);
  const tls = await tlsFrom(flags, env);
  const broker = brokerFrom(flags, cluster, env);
  if (broker && tls) {
    throw new UsageError(
      "--broker carries sessions through NATS, which has no TLS of ours: drop --tls-* (secure the broker's own connections instead)",
    );
  }
  return {
    timeoutMs: timeout,
    ...(broker ? { broker } : {}),
    ...(cluster ? { cluster } : {}),
    ...(client ? { client } : {}),
    ...(secret ? { secret } : {}),
    ...(tls ? { tls } : {}),
  };
}

/** Whether to use the local cluster of `rpc up`: `--local`, else `RPC_LOCAL=1`. */
export function localWanted(
  flags: Pick<ClientFlags, "local">,
  env: Environment = processEnvironment,
): boolean {
  return flags.local === true || env("RPC_LOCAL") === "1";
}

/**
 * The cluster `rpc up` runs on this machine from init.yaml: server names
 * resolve to their loopback addresses, and clients connect from theirs.
 */
export async function localCluster(cluster: Cluster | undefined): Promise<Cluster> {
  if (!cluster) {
    throw new UsageError(
      "--local needs the init.yaml that rpc up runs: pass --config FILE or set RPC_CONFIG",
    );
  }
  localModule ??= await import("../core/client/local.ts");
  return await localModule.loadLocalCluster(
    cluster,
    localModule.localBaseDir(processEnvironment),
  );
}

/**
 * core/client/local.ts, once {@linkcode localCluster} has loaded it: until then no
 * cluster is a local one, and a command without `--local` never loads it
 * (nor `node:process`, `node:path` and `node:crypto` with it).
 */
let localModule: typeof import("../core/client/local.ts") | undefined;

/**
 * The source address a client connects from in a local cluster (see
 * core/client/local.ts); `undefined` for any other cluster.
 */
export function localSource(
  cluster: Cluster | undefined,
  client: string | undefined,
): string | undefined {
  return localModule?.localSource(cluster, client);
}

/**
 * In a local cluster, the server an address written in the file stands for
 * (see core/client/local.ts); any other endpoint as it is.
 */
export function localEndpoint<T extends { hostname: string; port: number }>(
  cluster: Cluster | undefined,
  endpoint: T,
): T {
  return localModule ? localModule.localEndpoint(cluster, endpoint) : endpoint;
}
