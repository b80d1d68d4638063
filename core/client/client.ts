/**
 * The client library: connect once, then call procedures as if they were
 * local functions. Calls overlap on one connection and are matched to their
 * replies by serial.
 *
 * @example Calls to a server started in this process for the example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileURLToPath } from "node:url";
 * import { connect } from "./connect.ts";
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
 * const registry = await Registry.load(
 *   [{ name: "service1", procedures: [rpc1] }],
 *   { typescript: new InlineTypeScriptRunner() },
 * );
 * const server = new RpcServer({ registry });
 * const { port } = await server.start();
 *
 * const client = await connect(`127.0.0.1:${port}`);
 * const [greeting] = await client.call("service1", "rpc1", [2, "hi"]);
 * assert.equal(greeting, "hihi");
 * const same = await client.service("service1").rpc1(2, "hi"); // the one return value itself
 * assert.equal(same, "hihi");
 * const twice = client.prepare("service1", "rpc1", [2, "hi"], { timeoutMs: 5000 }); // encoded once
 * assert.deepEqual([await twice.call(), await twice.call()], [["hihi"], ["hihi"]]);
 * await assert.rejects(client.call("service1", "rpc9", []), { kind: "RPC Not Found" });
 * client.close();
 * await server.close();
 * ```
 *
 * @module
 */

import type { MessageChannel } from "../wire/channel.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import type {
  AdminRequest,
  AuthReply,
  CallRequest,
  HelloReply,
  Message,
  ServiceDescription,
} from "../wire/message.ts";
import type { Connection, TlsClientOptions } from "../transport/mod.ts";
import { parseServiceList } from "./replies.ts";
import { encodeCall, type Pending, replyError, Requests } from "./requests.ts";

export { type Pending, replyError } from "./requests.ts";

/** Where a server listens. */
export interface Endpoint {
  hostname: string;
  port: number;
  /** A unix domain socket to connect to instead (`hostname` is then `unix`, `port` 0). */
  path?: string;
}

/** Parses `host:port`, `[v6]:port`, or `unix:/path/to/rpc.sock`. */
export function parseEndpoint(text: string): Endpoint {
  if (text.startsWith("unix:")) {
    const path = text.slice(5);
    if (path === "") {
      throw new SyntaxError(`Cannot read address "${text}": expected unix:/path/to/socket`);
    }
    return { hostname: "unix", port: 0, path };
  }
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  const port = match ? Number(match[2]) : NaN;
  if (!match || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SyntaxError(`Cannot read address "${text}": expected host:port`);
  }
  return { hostname: match[1], port };
}

/** Options of {@linkcode connect}. */
export interface ClientOptions {
  /** The client name to claim, as in init.yaml's `network.clients`. */
  client?: string;
  /** Give up connecting after this many ms. Default 10 s. */
  connectTimeoutMs?: number;
  /** Largest frame accepted. Default 8 MiB. */
  maxFrameBytes?: number;
  /**
   * The client's secret, when the servers know one for it. It never leaves
   * this process: the handshake proves it with an HMAC over the server's
   * nonce (`AUTH`).
   */
  secret?: string;
  /**
   * The server's admin token, proven the same way in the handshake; the
   * connection may then use privileged admin ops, and may get in through a
   * slot kept for admins when the server is full.
   */
  adminToken?: string;
  /** Connect with TLS: verify the server by CA or pinned fingerprint; a certificate for mutual TLS. */
  tls?: TlsClientOptions;
  /** Speak over this open connection (e.g. an in-memory one) instead of dialing the target. */
  connection?: Connection;
  /** The source address to connect from (the address `rpc up` gives this client). */
  localAddress?: string;
  /**
   * Opens the connection to the target instead of dialing it over TCP, TLS
   * or a unix socket: a session through a broker, by the server's `name`
   * (see `transport/nats/`).
   */
  dial?: (target: Endpoint & { name?: string }, signal: AbortSignal) => Promise<Connection>;
}

/**
 * Options every request of a client takes: {@linkcode RpcClient.call},
 * {@linkcode RpcClient.stream}, {@linkcode RpcClient.list} and
 * {@linkcode RpcClient.admin}.
 */
export interface RequestOptions {
  /** Fail with `Timeout` after this many ms (the server is told to cancel). */
  timeoutMs?: number;
  /** Cancels the request (the server is told to cancel). */
  signal?: AbortSignal;
}

/** Options of one call. */
export interface CallOptions extends RequestOptions {
  /** Declared argument types; without them the server infers the overload. */
  argumentTypes?: string[];
  /** Declared return types; checked by the server when given. */
  returnTypes?: string[];
}

/**
 * A streaming call: iterate it for the partial results as they arrive;
 * `result` settles with the final return values. Leaving the iteration early
 * (or `cancel()`) cancels the call, which stops the procedure's generator.
 */
export interface CallStream extends AsyncIterable<unknown[]> {
  readonly result: Promise<unknown[]>;
  cancel(): void;
}

/** A call encoded once and made again and again: see {@linkcode RpcClient.prepare}. */
export interface PreparedCall {
  /** Makes the call once more; resolves to its return values, as `RpcClient.call` does. */
  call(): Promise<unknown[]>;
}

/** A proxy whose properties are the RPCs of one service. */
export type ServiceProxy = Record<string, (...args: unknown[]) => Promise<unknown>>;

/** A connection to one server. */
export class RpcClient {
  /** What the server said in the handshake. */
  readonly server: HelloReply;
  /** Who the server takes this connection to be, when the handshake proved a secret. */
  authenticated: AuthReply | undefined;
  #channel: MessageChannel;
  #pending: Map<number, Pending>;
  #requests: Requests;
  #closedError: RpcError | undefined;
  #reading: Promise<void>;

  /** Use {@linkcode connect}. */
  constructor(
    channel: MessageChannel,
    server: HelloReply,
    reading: Promise<void>,
    pending: Map<number, Pending>,
  ) {
    this.#channel = channel;
    this.server = server;
    this.#pending = pending;
    this.#requests = new Requests(channel, pending);
    this.#reading = reading.then(
      () => this.#failAll(new RpcError(ErrorKind.Unavailable, "Connection closed by the server")),
      (error) => this.#failAll(RpcError.from(error)),
    );
  }

  #failAll(error: RpcError): void {
    this.#closedError ??= error;
    for (const pending of this.#pending.values()) {
      pending.settle?.();
      pending.reject(this.#closedError);
    }
    this.#pending.clear();
    this.#channel.close();
  }

  /**
   * Sends a message and waits for the reply with the same serial (see
   * `requests.ts`). With a signal or a time limit, the request is given up
   * when either fires and the server is sent `RPC-CANCEL`.
   */
  #request(
    type: Message["type"],
    value: Message["value"],
    signal?: AbortSignal,
    timeoutMs?: number,
    onPart?: (values: unknown[]) => void,
    /** How the `Timeout` error begins ("No reply with the service list"); "No reply" if not given. */
    late?: string,
  ): Promise<Message> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    return this.#requests.send(type, value, "reply", signal, timeoutMs, onPart, late) as Promise<
      Message
    >;
  }

  /**
   * Calls `service.rpc` with `args` and resolves to its return values (always
   * a list). Rejects with an {@linkcode RpcError} whose `kind` is the
   * server's exception type.
   */
  call(
    service: string,
    rpc: string,
    args: unknown[] = [],
    options: CallOptions = {},
  ): Promise<unknown[]> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    try {
      const value: CallRequest = { service, rpc, arguments: args };
      if (options.argumentTypes) value["argument-types"] = options.argumentTypes;
      if (options.returnTypes) value["return-types"] = options.returnTypes;
      // The request's own promise settles with the return values: no second promise per call.
      return this.#requests.send(
        "RPC-REQ",
        value,
        "values",
        options.signal,
        options.timeoutMs,
        undefined,
        undefined,
      ) as Promise<unknown[]>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Prepares a call made again and again with the same arguments and
   * options: its request is encoded once, and each `call()` sends it with a
   * serial of its own and settles as {@linkcode call} would (time limit,
   * signal and `RPC-CANCEL` included). The arguments are encoded now: later
   * changes to `args` are not seen. `rpc bench` calls this way.
   * (The module's example makes one.)
   *
   * @throws {RpcError} when the arguments cannot be encoded as JSON.
   */
  prepare(
    service: string,
    rpc: string,
    args: unknown[] = [],
    options: CallOptions = {},
  ): PreparedCall {
    const value: CallRequest = { service, rpc, arguments: args };
    if (options.argumentTypes) value["argument-types"] = options.argumentTypes;
    if (options.returnTypes) value["return-types"] = options.returnTypes;
    const encoded = encodeCall(value);
    const { signal, timeoutMs } = options;
    return {
      call: () => {
        if (this.#closedError) return Promise.reject(this.#closedError);
        return this.#requests.sendEncoded(encoded, signal, timeoutMs);
      },
    };
  }

  /**
   * Calls a streaming RPC: partial results arrive as the procedure yields
   * them.
   *
   * @example The demo's `countdown`, served in this process for the example
   * ```ts
   * import assert from "node:assert/strict";
   * import { fileURLToPath } from "node:url";
   * import { connect } from "./connect.ts";
   * import { sha256Hex } from "../hash.ts";
   * import { Registry } from "../server/registry.ts";
   * import { InlineTypeScriptRunner } from "../runners/typescript.ts";
   * import { RpcServer } from "../server/server.ts";
   * import { parseSignature } from "../types/types.ts";
   *
   * const path = fileURLToPath(new URL("../../services/service1/countdown.ts", import.meta.url));
   * const countdown = {
   *   service: "service1", rpc: "countdown", signature: parseSignature(["int"], ["str"], ["int"]),
   *   language: "typescript" as const, path, hash: sha256Hex(await Deno.readTextFile(path)),
   *   trusted: true,
   * };
   * const registry = await Registry.load(
   *   [{ name: "service1", procedures: [countdown] }],
   *   { typescript: new InlineTypeScriptRunner() },
   * );
   * const server = new RpcServer({ registry });
   * const { port } = await server.start();
   * const client = await connect(`127.0.0.1:${port}`);
   *
   * const stream = client.stream("service1", "countdown", [3]);
   * const parts: number[] = [];
   * for await (const [n] of stream) parts.push(n as number); // 3, 2, 1 as they come
   * assert.deepEqual(parts, [3, 2, 1]);
   * assert.deepEqual(await stream.result, ["liftoff"]); // the final return values
   * client.close();
   * await server.close();
   * ```
   */
  stream(
    service: string,
    rpc: string,
    args: unknown[] = [],
    options: CallOptions = {},
  ): CallStream {
    const value: CallRequest = { service, rpc, arguments: args };
    if (options.argumentTypes) value["argument-types"] = options.argumentTypes;
    if (options.returnTypes) value["return-types"] = options.returnTypes;
    const controller = new AbortController();
    const signal = options.signal
      ? AbortSignal.any([options.signal, controller.signal])
      : controller.signal;
    const cancel = () => controller.abort(new RpcError(ErrorKind.Cancelled, "Stream cancelled"));
    const parts: unknown[][] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    const result = this.#request("RPC-REQ", value, signal, options.timeoutMs, (values) => {
      parts.push(values);
      wake?.();
    }).then((reply) => {
      if (reply.type === "RPC-RES") return reply.value["return-values"];
      throw replyError(reply);
    });
    result.then(undefined, () => {}).finally(() => {
      finished = true;
      wake?.();
    });
    return {
      result,
      cancel,
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            if (parts.length > 0) {
              yield parts.shift()!;
              continue;
            }
            if (finished) {
              await result; // rethrows the call's failure
              return;
            }
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
          }
        } finally {
          if (!finished) cancel();
        }
      },
    };
  }

  /**
   * A proxy for one service: `client.service("s").rpc1(1, "a")` calls `rpc1`
   * and resolves like a local function would return: nothing for no return
   * values, the value for one, the list for several.
   */
  service(name: string): ServiceProxy {
    return new Proxy({} as ServiceProxy, {
      get: (_target, property) => {
        if (typeof property !== "string" || property === "then") return undefined;
        // One promise per call, settled with the value itself.
        return (...args: unknown[]) => {
          if (this.#closedError) return Promise.reject(this.#closedError);
          const value: CallRequest = { service: name, rpc: property, arguments: args };
          return this.#requests.send(
            "RPC-REQ",
            value,
            "value",
            undefined,
            undefined,
            undefined,
            undefined,
          );
        };
      },
    });
  }

  /**
   * The services this client may call, with their RPCs and signatures. With
   * `timeoutMs`, fails with `Timeout` naming "the service list".
   */
  async list(options: RequestOptions = {}): Promise<ServiceDescription[]> {
    const reply = await this.#request(
      "LIST",
      {},
      options.signal,
      options.timeoutMs,
      undefined,
      "No reply with the service list",
    );
    if (reply.type === "LIST-RES") return parseServiceList(reply.value);
    throw replyError(reply);
  }

  /**
   * Sends an admin request. Privileged ops need a connection opened with
   * `adminToken` (the token is proven in the handshake and never sent). With
   * `timeoutMs`, fails with `Timeout` naming the op.
   */
  async admin(request: AdminRequest, options: RequestOptions = {}): Promise<unknown> {
    const reply = await this.#request(
      "ADMIN",
      request,
      options.signal,
      options.timeoutMs,
      undefined,
      `No reply to admin op ${request.op}`,
    );
    if (reply.type === "ADMIN-RES") return reply.value;
    throw replyError(reply);
  }

  /** Calls waiting for replies. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Closes the connection; pending calls fail with `Unavailable`. */
  close(): void {
    this.#failAll(new RpcError(ErrorKind.Unavailable, "Connection closed by the client"));
  }

  /** Resolves when the connection has closed. */
  get done(): Promise<void> {
    return this.#reading;
  }
}
