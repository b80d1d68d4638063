/**
 * Calls addressed to a service rather than a server. init.yaml lists each
 * service's `providers`; a {@linkcode ServiceClient} connects to one of them
 * and, when it is down, fails over to the next.
 *
 * **Order.** Providers are tried in the order init.yaml lists them, first to
 * last, wrapping around. A client stays with the provider that answered
 * until that one fails, then moves on to the next, so every client of an
 * unchanged cluster uses the same provider (the first one up), and load moves
 * only when a server goes away. That is the `balance: "first"` default; with
 * `"round-robin"` or `"p2c"` each call picks its provider through a
 * {@linkcode Balancer} (see `balance.ts`), a connection is kept to each
 * provider used, and a provider that fails is ejected and probed before it
 * gets calls again. The rule below for what is retried is the same for all.
 *
 * **When it fails over.** A provider that refuses the connection, does not
 * answer within the connect time limit, or refuses it for its own connection
 * limits is skipped. A call whose connection is lost after the request was
 * sent may already have run on that provider: it is retried on the next one
 * only when the overload the server will run (chosen by the server's rule in
 * `core/types/overload.ts`, from `argumentTypes` or the values; every
 * overload when the call names no one) is marked `idempotent: true` in
 * init.yaml.
 * Otherwise it fails with `Unavailable`, saying that it may have run. Each
 * provider is tried at most once per call. Every other failure (the
 * procedure's exception, `Timeout`, `Invalid Arguments`, …) is the call's
 * answer and is not retried.
 *
 * @example Two providers started in this process for the example; the first one stops
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileURLToPath } from "node:url";
 * import { parseCluster } from "../deploy/cluster.ts";
 * import { connectService } from "./failover.ts";
 * import { sha256Hex } from "../hash.ts";
 * import { Registry } from "../server/registry.ts";
 * import { InlineTypeScriptRunner } from "../runners/typescript.ts";
 * import { RpcServer } from "../server/server.ts";
 * import { parseSignature } from "../types/types.ts";
 *
 * const path = fileURLToPath(new URL("../../services/service1/rpc1.ts", import.meta.url));
 * const rpc1 = {
 *   service: "service1", rpc: "rpc1", signature: parseSignature(["int", "str"], ["str"]),
 *   language: "typescript" as const, path, hash: sha256Hex(await Deno.readTextFile(path)),
 *   trusted: true,
 * };
 * const runners = { typescript: new InlineTypeScriptRunner() };
 * const registry = await Registry.load([{ name: "service1", procedures: [rpc1] }], runners);
 * const s1 = new RpcServer({ name: "s1", registry });
 * const s2 = new RpcServer({ name: "s2", registry });
 * const [port1, port2] = [(await s1.start()).port, (await s2.start()).port];
 * const cluster = parseCluster(
 *   `network:
 *   servers:
 *     - s1: { ip: 127.0.0.1, port: ${port1} }
 *     - s2: { ip: 127.0.0.1, port: ${port2} }
 * service:
 *   - service1: { providers: [s1, s2], rpcs: [rpc1] }
 * rpc:
 *   - rpc1: { args: [int, str], returns: [str], src: ${path}, idempotent: true }
 * `,
 *   "example.yaml",
 * );
 *
 * const service1 = await connectService(cluster, "service1");
 * assert.deepEqual(await service1.call("rpc1", [3, "ab"]), ["ababab"]);
 * assert.equal(service1.provider, "s1");
 * await s1.close();
 * // s1 is down; rpc1 is idempotent, so even a call already sent to s1 is repeated on s2
 * assert.deepEqual(await service1.call("rpc1", [3, "ab"]), ["ababab"]);
 * assert.equal(service1.provider, "s2");
 * service1.close();
 * await s2.close();
 * ```
 *
 * @module
 */

import { type BalancePolicy, Balancer } from "./balance.ts";
import type {
  CallOptions,
  ClientOptions,
  RequestOptions,
  RpcClient,
  ServiceProxy,
} from "./client.ts";
import { connect } from "./connect.ts";
import type { Cluster, ServerEntry, ServiceEntry } from "../deploy/cluster.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import type { ServiceDescription } from "../wire/message.ts";
import type { TlsClientOptions } from "../transport/mod.ts";
import { chooseOverload, VALUES } from "../types/overload.ts";
import { providersOf } from "./fanout.ts";

/** Options of {@linkcode connectService}. */
export interface ServiceClientOptions {
  /** The client name to claim, as in init.yaml's `network.clients`. */
  client?: string;
  /** The client's secret, when the servers know one for it. */
  secret?: string;
  /** Connect with TLS. */
  tls?: TlsClientOptions;
  /** Give up connecting to one provider after this many ms. Default 5 s. */
  connectTimeoutMs?: number;
  /** Largest frame accepted. Default 8 MiB. */
  maxFrameBytes?: number;
  /** The source address to connect from (the address `rpc up` gives this client). */
  localAddress?: string;
  /** Opens each provider's connection instead of dialing its address (a session through a broker). */
  dial?: ClientOptions["dial"];
  /** Told each time a provider is skipped, and why (for logs). */
  onFailover?: (provider: string, error: RpcError) => void;
  /**
   * How calls are spread over the providers (see `balance.ts`): `first`
   * (default) is the ordered failover above; `round-robin` and `p2c` keep a
   * connection to each provider used, eject one that fails and probe it
   * before it gets calls again.
   */
  balance?: BalancePolicy;
  /** With `round-robin`/`p2c`: first ejection of a failed provider, ms. Default 1 000. */
  ejectMs?: number;
  /** With `round-robin`/`p2c`: longest ejection, ms. Default 30 000. */
  maxEjectMs?: number;
  /** With `round-robin`/`p2c`: randomness in [0, 1), as `Math.random` (for tests). */
  random?: () => number;
  /** With `round-robin`/`p2c`: told when a provider is ejected, probed back in, or fails its probe. */
  onBalance?: (provider: string, event: "ejected" | "readmitted" | "probe failed") => void;
}

/** Options of {@linkcode ServiceClient.call}. */
export interface ServiceCallOptions extends CallOptions {
  /**
   * Receives each partial result of a streaming RPC as it arrives. A call
   * that has streamed a part is never retried on another provider.
   */
  onPart?: (values: unknown[]) => void;
}

interface Connection {
  index: number;
  client: RpcClient;
  /** False once the connection has closed. */
  open: boolean;
}

/** A connection to whichever provider of one service is up. */
export class ServiceClient {
  /** The service's name. */
  readonly service: string;
  /** The providers, in init.yaml's order. */
  readonly providers: readonly ServerEntry[];
  #entry: ServiceEntry;
  #options: ServiceClientOptions;
  #current: Connection | undefined;
  /** The provider to try first. */
  #next = 0;
  #closed = false;
  /** With `round-robin`/`p2c`: the picker, and a connection per provider used. */
  #balancer: Balancer | undefined;
  #pool = new Map<number, Connection>();

  /** Use {@linkcode connectService}. */
  constructor(cluster: Cluster, service: string, options: ServiceClientOptions = {}) {
    const providers = providersOf(cluster, service);
    const entry = cluster.services.get(service)!;
    if (providers.length === 0) {
      throw new RpcError(
        ErrorKind.Unavailable,
        `Service ${service} has no providers in ${cluster.file}`,
      );
    }
    this.service = service;
    this.providers = providers;
    this.#entry = entry;
    this.#options = options;
    if (options.balance !== undefined && options.balance !== "first") {
      this.#balancer = new Balancer(providers.length, {
        policy: options.balance,
        ...(options.random ? { random: options.random } : {}),
        ...(options.ejectMs !== undefined ? { ejectMs: options.ejectMs } : {}),
        ...(options.maxEjectMs !== undefined ? { maxEjectMs: options.maxEjectMs } : {}),
      });
    }
  }

  /** The name of the provider connected now, if any. */
  get provider(): string | undefined {
    return this.#current?.open ? this.providers[this.#current.index].name : undefined;
  }

  /**
   * Whether a call of `rpc` with `args` may be repeated: the overload the
   * server will run (chosen by the same rule, `core/types/overload.ts`, from
   * `argumentTypes` or the values) is marked `idempotent: true` in
   * init.yaml. When the call names no one overload, every overload it may
   * be must be marked.
   */
  idempotent(rpc: string, args: readonly unknown[], argumentTypes?: readonly string[]): boolean {
    const entries = this.#entry.rpcs.filter((entry) => entry.name === rpc);
    if (entries.length === 0) return false;
    try {
      const index = chooseOverload(entries.map((entry) => entry.signature), args, VALUES, {
        service: this.service,
        rpc,
        ...(argumentTypes ? { argumentTypes } : {}),
      });
      return entries[index].idempotent;
    } catch {
      return entries.every((entry) => entry.idempotent);
    }
  }

  /**
   * Calls `rpc` of the service on a provider that is up, failing over as
   * the module describes. `timeoutMs` bounds the whole call, failovers
   * included.
   *
   * @throws {RpcError} the call's own failure; `Unavailable` when no
   * provider can be reached, or when the connection was lost after sending
   * a call that is not idempotent.
   */
  async call(
    rpc: string,
    args: unknown[] = [],
    options: ServiceCallOptions = {},
  ): Promise<unknown[]> {
    const deadline = options.timeoutMs === undefined
      ? undefined
      : performance.now() + options.timeoutMs;
    const tried = new Set<number>();
    const failures: string[] = [];
    const { onPart, ...callOptions } = options;
    let streamed = false;
    for (;;) {
      const connection = await this.#acquire(tried, failures, deadline);
      tried.add(connection.index);
      const provider = this.providers[connection.index];
      const release = this.#balancer?.start(connection.index);
      const sent = performance.now();
      const remaining = deadline === undefined
        ? undefined
        : Math.max(1, deadline - performance.now());
      const perCall = {
        ...callOptions,
        ...(remaining === undefined ? {} : { timeoutMs: remaining }),
      };
      try {
        let values: unknown[];
        if (!onPart) values = await connection.client.call(this.service, rpc, args, perCall);
        else {
          const stream = connection.client.stream(this.service, rpc, args, perCall);
          for await (const part of stream) {
            streamed = true;
            onPart(part);
          }
          values = await stream.result;
        }
        this.#balancer?.answered(connection.index, performance.now() - sent);
        return values;
      } catch (error) {
        const rpcError = RpcError.from(error);
        if (rpcError.kind !== ErrorKind.Unavailable || options.signal?.aborted) {
          // The provider answered (with the call's own failure): it is up.
          this.#balancer?.answered(connection.index, performance.now() - sent);
          throw rpcError;
        }
        this.#eject(connection.index, rpcError);
        this.#drop(connection);
        const reason = `${describeProvider(provider)}: ${rpcError.message}`;
        // Asked only now: choosing the overload reads every argument, which a call that
        // succeeds need not pay for.
        if (streamed || !this.idempotent(rpc, args, options.argumentTypes)) {
          throw new RpcError(
            ErrorKind.Unavailable,
            `Lost the connection to ${
              describeProvider(provider)
            } after sending ${this.service}.${rpc}: it may have run there, so it is not retried on another provider (${
              streamed
                ? "it had already streamed results"
                : "it is not marked idempotent in init.yaml"
            }): ${rpcError.message}`,
            { cause: rpcError },
          );
        }
        failures.push(reason);
        this.#options.onFailover?.(provider.name, rpcError);
      } finally {
        release?.();
      }
    }
  }

  /**
   * A proxy whose properties are the service's RPCs, resolving like a local
   * function: nothing for no return values, the value for one, the list for
   * several.
   */
  proxy(): ServiceProxy {
    return new Proxy({} as ServiceProxy, {
      get: (_target, property) => {
        if (typeof property !== "string" || property === "then") return undefined;
        return async (...args: unknown[]) => {
          const values = await this.call(property, args);
          return values.length === 0 ? undefined : values.length === 1 ? values[0] : values;
        };
      },
    });
  }

  /**
   * The services the connected provider offers this client (`LIST`),
   * failing over like a call that may be repeated. Takes the options of
   * every request: `timeoutMs` bounds the whole, failovers included.
   */
  async list(options: RequestOptions = {}): Promise<ServiceDescription[]> {
    const deadline = options.timeoutMs === undefined
      ? undefined
      : performance.now() + options.timeoutMs;
    const tried = new Set<number>();
    const failures: string[] = [];
    for (;;) {
      const connection = await this.#acquire(tried, failures, deadline);
      tried.add(connection.index);
      try {
        return await connection.client.list({
          ...(options.signal ? { signal: options.signal } : {}),
          ...(deadline === undefined
            ? {}
            : { timeoutMs: Math.max(1, Math.ceil(deadline - performance.now())) }),
        });
      } catch (error) {
        const rpcError = RpcError.from(error);
        if (rpcError.kind !== ErrorKind.Unavailable || options.signal?.aborted) throw rpcError;
        this.#eject(connection.index, rpcError);
        this.#drop(connection);
        failures.push(`${describeProvider(this.providers[connection.index])}: ${rpcError.message}`);
      }
    }
  }

  /** Connects to a provider now (the first one up), rather than at the first call. */
  async connect(): Promise<this> {
    await this.#acquire(new Set(), [], undefined);
    return this;
  }

  /** Closes the connection; calls in flight fail with `Unavailable`. */
  close(): void {
    this.#closed = true;
    if (this.#current) this.#drop(this.#current);
    for (const connection of [...this.#pool.values()]) this.#drop(connection);
  }

  #drop(connection: Connection): void {
    connection.open = false;
    connection.client.close();
    if (this.#pool.get(connection.index) === connection) this.#pool.delete(connection.index);
    if (this.#current === connection) {
      this.#current = undefined;
      // The next call starts with the provider after the one that failed.
      this.#next = (connection.index + 1) % this.providers.length;
    }
  }

  /** With a balancer, the provider it picks; otherwise {@linkcode #connection}. */
  async #acquire(
    tried: Set<number>,
    failures: string[],
    deadline: number | undefined,
  ): Promise<Connection> {
    const balancer = this.#balancer;
    if (!balancer) return await this.#connection(tried, failures, deadline);
    if (this.#closed) throw new RpcError(ErrorKind.Unavailable, "The service client is closed");
    for (const index of balancer.due()) this.#probe(index);
    for (;;) {
      const index = balancer.pick(tried);
      if (index === undefined) {
        throw new RpcError(
          ErrorKind.Unavailable,
          `No provider of ${this.service} could be reached: ${failures.join("; ")}`,
        );
      }
      try {
        return await this.#connectTo(index, deadline, failures);
      } catch (error) {
        const rpcError = RpcError.from(error);
        if (rpcError.kind !== ErrorKind.Unavailable) throw rpcError;
        tried.add(index);
        this.#eject(index, rpcError);
        failures.push(`${describeProvider(this.providers[index])}: ${rpcError.message}`);
        this.#options.onFailover?.(this.providers[index].name, rpcError);
      }
    }
  }

  /** The pooled connection to provider `index`, or a new one. */
  /** Opens a client to `provider` with this service client's options, within `left` ms. */
  #open(provider: ServerEntry, left: number): Promise<RpcClient> {
    return connect({ hostname: provider.host, port: provider.port, name: provider.name }, {
      connectTimeoutMs: Math.min(this.#options.connectTimeoutMs ?? 5_000, left),
      ...(this.#options.client ? { client: this.#options.client } : {}),
      ...(this.#options.secret ? { secret: this.#options.secret } : {}),
      ...(this.#options.tls ? { tls: this.#options.tls } : {}),
      ...(this.#options.maxFrameBytes ? { maxFrameBytes: this.#options.maxFrameBytes } : {}),
      ...(this.#options.localAddress ? { localAddress: this.#options.localAddress } : {}),
      ...(this.#options.dial ? { dial: this.#options.dial } : {}),
    });
  }

  async #connectTo(
    index: number,
    deadline: number | undefined,
    failures: string[],
  ): Promise<Connection> {
    const pooled = this.#pool.get(index);
    if (pooled?.open) return pooled;
    const provider = this.providers[index];
    const left = deadline === undefined ? Infinity : deadline - performance.now();
    if (left <= 0) {
      throw new RpcError(
        ErrorKind.Timeout,
        `No provider of ${this.service} answered in time (${failures.join("; ") || "none tried"})`,
      );
    }
    let client: RpcClient;
    try {
      client = await this.#open(provider, left);
    } catch (error) {
      const rpcError = RpcError.from(error);
      // Not answering in time counts as down, as in the ordered failover.
      throw rpcError.kind === ErrorKind.Timeout
        ? new RpcError(ErrorKind.Unavailable, rpcError.message, { cause: rpcError })
        : rpcError;
    }
    if (this.#closed) {
      client.close();
      throw new RpcError(ErrorKind.Unavailable, "The service client is closed");
    }
    const connection: Connection = { index, client, open: true };
    client.done.then(() => connection.open = false, () => connection.open = false);
    this.#pool.set(index, connection);
    return connection;
  }

  #eject(index: number, _error: RpcError): void {
    if (!this.#balancer) return;
    this.#balancer.failed(index);
    this.#options.onBalance?.(this.providers[index].name, "ejected");
  }

  /**
   * Asks an ejected provider whose time is up for its `health`; an answer
   * readmits it, anything else ejects it again for longer. Calls do not
   * wait for the probe.
   */
  #probe(index: number): void {
    const balancer = this.#balancer!;
    const name = this.providers[index].name;
    const probe = async () => {
      let connection: Connection | undefined;
      try {
        connection = await this.#connectTo(index, performance.now() + PROBE_TIMEOUT_MS, []);
        await connection.client.admin({ op: "health" }, { timeoutMs: PROBE_TIMEOUT_MS });
        balancer.readmit(index);
        this.#options.onBalance?.(name, "readmitted");
      } catch {
        if (connection) this.#drop(connection);
        balancer.failed(index);
        this.#options.onBalance?.(name, "probe failed");
      }
    };
    probe();
  }

  /**
   * The open connection, unless its provider was already tried in this
   * call; otherwise connects to the first provider not yet tried, starting
   * at {@linkcode #next} and going round once.
   */
  async #connection(
    tried: Set<number>,
    failures: string[],
    deadline: number | undefined,
  ): Promise<Connection> {
    if (this.#closed) throw new RpcError(ErrorKind.Unavailable, "The service client is closed");
    const current = this.#current;
    if (current && current.open && !tried.has(current.index)) return current;
    if (current && !current.open) {
      // Closed while idle (the server restarted, or drained): its provider may be back.
      this.#current = undefined;
      this.#next = current.index;
    }
    for (let step = 0; step < this.providers.length; step++) {
      const index = (this.#next + step) % this.providers.length;
      if (tried.has(index)) continue;
      const provider = this.providers[index];
      const left = deadline === undefined ? Infinity : deadline - performance.now();
      if (left <= 0) {
        throw new RpcError(
          ErrorKind.Timeout,
          `No provider of ${this.service} answered in time (${
            failures.join("; ") || "none tried"
          })`,
        );
      }
      let client: RpcClient;
      try {
        client = await this.#open(provider, left);
      } catch (error) {
        const rpcError = RpcError.from(error);
        if (rpcError.kind !== ErrorKind.Unavailable && rpcError.kind !== ErrorKind.Timeout) {
          throw rpcError;
        }
        tried.add(index);
        failures.push(`${describeProvider(provider)}: ${rpcError.message}`);
        this.#options.onFailover?.(provider.name, rpcError);
        continue;
      }
      const connection: Connection = { index, client, open: true };
      client.done.then(() => connection.open = false, () => connection.open = false);
      this.#current = connection;
      this.#next = index;
      return connection;
    }
    throw new RpcError(
      ErrorKind.Unavailable,
      `No provider of ${this.service} could be reached: ${failures.join("; ")}`,
    );
  }
}

/** How long a probe of an ejected provider may take. */
const PROBE_TIMEOUT_MS = 5_000;

function describeProvider(provider: ServerEntry): string {
  return `${provider.name} (${provider.host}:${provider.port})`;
}

/**
 * A client of one service of the cluster, connected to the first of its
 * providers (in init.yaml's order) that answers.
 *
 * @throws {RpcError} `Service Not Found` when init.yaml has no such
 * service, `Unavailable` when no provider can be reached.
 */
export async function connectService(
  cluster: Cluster,
  service: string,
  options: ServiceClientOptions = {},
): Promise<ServiceClient> {
  return await new ServiceClient(cluster, service, options).connect();
}

/**
 * One call to a service, on whichever provider is up; the connection is
 * closed afterwards.
 */
export async function callService(
  cluster: Cluster,
  service: string,
  rpc: string,
  args: unknown[] = [],
  options: ServiceClientOptions & ServiceCallOptions = {},
): Promise<unknown[]> {
  const client = new ServiceClient(cluster, service, options);
  try {
    return await client.call(rpc, args, options);
  } finally {
    client.close();
  }
}
