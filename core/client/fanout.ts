/**
 * Fan-out: one request to every provider of a service (or every server of a
 * list) at once, gathering one answer per server. Where a
 * {@linkcode ServiceClient} wants _an_ answer, a fan-out wants _all_ of
 * them: "which version runs where", "free disk everywhere".
 *
 * **Partial answers are kept.** {@linkcode fanOut} and {@linkcode callAll}
 * never throw for a server's failure: each server gets a
 * {@linkcode ServerResult}, ok with its value or failed with its
 * {@linkcode RpcError}, in the order the servers were given (init.yaml's
 * order for a service), whatever order they answered in.
 *
 * **Bounds.** At most `parallel` servers are asked at once (default 16). An
 * overall `timeoutMs` bounds the whole fan-out: a server still working when
 * it runs out is answered `Timeout` (its connection closed), and a server not
 * yet started is not contacted at all and is answered `Timeout` too.
 *
 * Calls are sent once to each server and never retried: a fan-out is not
 * failover, and a server that fails is reported, not replaced.
 *
 * @example
 * ```ts ignore
 * import { loadCluster } from "../deploy/cluster.ts";
 * import { callAll } from "./fanout.ts";
 * const cluster = await loadCluster("init.yaml");
 * for (const result of await callAll(cluster, "service1", "rpc1", [2, "ab"], { client: "c1" })) {
 *   console.log(result.server, result.ok ? result.value : result.error.kind);
 * }
 * ```
 *
 * @module
 */

import type { CallOptions, ClientOptions, RpcClient } from "./client.ts";
import { connect } from "./connect.ts";
import type { Cluster, ServerEntry } from "../deploy/cluster.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import type { TlsClientOptions } from "../transport/mod.ts";

/** Servers asked at once unless `parallel` says otherwise. */
export const DEFAULT_FAN_OUT_PARALLEL = 16;

/** Options of {@linkcode fanOut} and {@linkcode callAll}. */
export interface FanOutOptions {
  /** The client name to claim, as in init.yaml's `network.clients`. */
  client?: string;
  /** The client's secret, when the servers know one for it. */
  secret?: string;
  /** Connect with TLS. */
  tls?: TlsClientOptions;
  /** Largest frame accepted. Default 8 MiB. */
  maxFrameBytes?: number;
  /** The source address to connect from (the address `rpc up` gives this client). */
  localAddress?: string;
  /** Opens each server's connection instead of dialing its address (a session through a broker). */
  dial?: ClientOptions["dial"];
  /** Give up connecting to one server after this many ms. Default 5 s (never past `timeoutMs`). */
  connectTimeoutMs?: number;
  /** Servers asked at once, at least 1. Default {@linkcode DEFAULT_FAN_OUT_PARALLEL}. */
  parallel?: number;
  /** Bound on the whole fan-out, in ms. Default: none. */
  timeoutMs?: number;
  /** Told each time a server's result is settled, with how many are settled so far (for progress). */
  onResult?: (result: ServerResult<unknown>, settled: number, total: number) => void;
}

/** One server's share of a fan-out. */
export type ServerResult<T> =
  & {
    /** The server's name in init.yaml (or its address when it has none). */
    server: string;
    /** `host:port`. */
    address: string;
    /** From the start of this server's turn to its answer, in ms. */
    ms: number;
  }
  & ({ ok: true; value: T } | { ok: false; error: RpcError });

/**
 * The providers of `service` in init.yaml's order, or only those named in
 * `subset` (each of which must be one).
 *
 * @throws {RpcError} `Service Not Found` for a service init.yaml lacks,
 * `Invalid Arguments` for a subset naming a server that is not a provider.
 */
export function providersOf(
  cluster: Cluster,
  service: string,
  subset?: readonly string[],
): ServerEntry[] {
  const entry = cluster.services.get(service);
  if (!entry) {
    throw new RpcError(
      ErrorKind.ServiceNotFound,
      `${cluster.file} has no service ${service}: it names ${
        [...cluster.services.keys()].join(", ") || "none"
      }`,
    );
  }
  const providers = entry.providers.map((name) => cluster.servers.get(name))
    .filter((server): server is ServerEntry => server !== undefined);
  return subset === undefined
    ? providers
    : pickServers(providers, subset, `providers of ${service}`);
}

/**
 * The servers of `candidates` named in `subset`, in the candidates' order.
 *
 * @throws {RpcError} `Invalid Arguments` for a name that is not a candidate.
 */
export function pickServers(
  candidates: readonly ServerEntry[],
  subset: readonly string[],
  what: string,
): ServerEntry[] {
  const names = new Set(candidates.map((server) => server.name));
  const unknown = subset.filter((name) => !names.has(name));
  if (unknown.length > 0) {
    throw new RpcError(
      ErrorKind.InvalidArguments,
      `${unknown.join(", ")} ${unknown.length === 1 ? "is" : "are"} not among the ${what}: ${
        [...names].join(", ") || "none"
      }`,
    );
  }
  const wanted = new Set(subset);
  return candidates.filter((server) => wanted.has(server.name));
}

/**
 * Runs `task` on a connection to each of `servers`, at most `parallel` at
 * once, and returns every server's result in the order given. `task`
 * receives the open client and the ms left before the overall time limit
 * (`Infinity` without one); the connection is closed after it.
 */
export async function fanOut<T>(
  servers: readonly ServerEntry[],
  task: (client: RpcClient, remainingMs: number) => Promise<T>,
  options: FanOutOptions = {},
): Promise<ServerResult<T>[]> {
  const parallel = Math.max(1, Math.floor(options.parallel ?? DEFAULT_FAN_OUT_PARALLEL));
  const deadline = options.timeoutMs === undefined
    ? Infinity
    : performance.now() + options.timeoutMs;
  const results = new Array<ServerResult<T>>(servers.length);
  let next = 0;
  let settled = 0;
  const settle = (index: number, result: ServerResult<T>) => {
    results[index] = result;
    settled++;
    options.onResult?.(result as ServerResult<unknown>, settled, servers.length);
  };
  const worker = async () => {
    while (next < servers.length) {
      const index = next++;
      settle(index, await askOne(servers[index], task, deadline, options));
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, servers.length) }, worker));
  return results;
}

async function askOne<T>(
  server: ServerEntry,
  task: (client: RpcClient, remainingMs: number) => Promise<T>,
  deadline: number,
  options: FanOutOptions,
): Promise<ServerResult<T>> {
  const started = performance.now();
  const address = options.dial ? `nats:${server.name}` : `${server.host}:${server.port}`;
  const failed = (error: unknown): ServerResult<T> => ({
    server: server.name,
    address,
    ms: performance.now() - started,
    ok: false,
    error: RpcError.from(error),
  });
  const left = deadline - started;
  if (left <= 0) {
    return failed(
      new RpcError(ErrorKind.Timeout, "Not contacted: the fan-out's time limit ran out first"),
    );
  }
  let client: RpcClient | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let settled = false;
  const expired = left === Infinity ? undefined : new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new RpcError(
          ErrorKind.Timeout,
          `No answer within the fan-out's time limit (${Math.round(left)} ms left for it)`,
        ),
      );
    }, left);
  });
  const work = (async () => {
    const opened = await connect(
      { hostname: server.host, port: server.port, name: server.name },
      clientOptions(options, left),
    );
    // Connected only after the time limit ran out: nobody waits for this server any more.
    if (settled) {
      opened.close();
      throw new RpcError(ErrorKind.Timeout, "Connected after the fan-out's time limit");
    }
    client = opened;
    return await task(opened, deadline - performance.now());
  })();
  // The loser of the race below still settles; its outcome is already reported.
  work.catch(() => {});
  try {
    const value = await (expired ? Promise.race([work, expired]) : work);
    return { server: server.name, address, ms: performance.now() - started, ok: true, value };
  } catch (error) {
    return failed(error);
  } finally {
    settled = true;
    clearTimeout(timer);
    client?.close();
  }
}

function clientOptions(options: FanOutOptions, left: number): ClientOptions {
  return {
    connectTimeoutMs: Math.min(options.connectTimeoutMs ?? 5_000, left),
    ...(options.client ? { client: options.client } : {}),
    ...(options.secret ? { secret: options.secret } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.maxFrameBytes ? { maxFrameBytes: options.maxFrameBytes } : {}),
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    ...(options.dial ? { dial: options.dial } : {}),
  };
}

/** Options of {@linkcode callAll}: the fan-out's and the call's. */
export interface CallAllOptions extends FanOutOptions, Omit<CallOptions, "timeoutMs"> {
  /** Only these providers (names from init.yaml), still in the file's order. Default: all. */
  servers?: readonly string[];
}

/**
 * Calls `service.rpc(args)` on every provider of the service (or the
 * `servers` among them) as {@linkcode fanOut} does, and returns each
 * provider's return values or error, in init.yaml's order. Streaming RPCs
 * answer with their final values only.
 *
 * @throws {RpcError} only for a request that cannot be made at all: an
 * unknown service or a `servers` entry that is not one of its providers.
 */
export async function callAll(
  cluster: Cluster,
  service: string,
  rpc: string,
  args: unknown[] = [],
  options: CallAllOptions = {},
): Promise<ServerResult<unknown[]>[]> {
  const servers = providersOf(cluster, service, options.servers);
  const { signal, argumentTypes, returnTypes } = options;
  return await fanOut(
    servers,
    (client, remainingMs) =>
      client.call(service, rpc, args, {
        ...(signal ? { signal } : {}),
        ...(argumentTypes ? { argumentTypes } : {}),
        ...(returnTypes ? { returnTypes } : {}),
        ...(remainingMs === Infinity ? {} : { timeoutMs: Math.max(1, remainingMs) }),
      }),
    options,
  );
}

/**
 * How a fan-out went as a whole: `ok` when every server answered ok (or
 * there were none), the kind when all failed with the same kind, otherwise
 * `partial`. The command line maps it to an exit code.
 */
export type FanOutOutcome = "ok" | "partial" | ErrorKind;

/** The {@linkcode FanOutOutcome} of a fan-out's results. */
export function fanOutOutcome(results: readonly ServerResult<unknown>[]): FanOutOutcome {
  const kinds = new Set<ErrorKind>();
  let failures = 0;
  for (const result of results) {
    if (!result.ok) {
      failures++;
      kinds.add(result.error.kind);
    }
  }
  if (failures === 0) return "ok";
  if (failures === results.length && kinds.size === 1) return [...kinds][0];
  return "partial";
}
