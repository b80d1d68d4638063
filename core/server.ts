/**
 * The RPC server: accepts connections, reads framed messages, resolves each
 * call against the current {@linkcode Registry}, runs it, and answers by
 * serial. Calls on one connection run concurrently and are answered as they
 * finish. Nothing a client sends ends the server: every failure becomes an
 * `RPC-EX` for that caller, or closes that one connection.
 *
 * @module
 */

import { MessageChannel } from "./channel.ts";
import { ErrorKind, RpcError } from "./errors.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "./frame.ts";
import { type Logger, silentLogger } from "./log.ts";
import {
  type AdminRequest,
  type CallRequest,
  exceptionMessage,
  type HelloRequest,
  type Message,
  PROTOCOL_VERSIONS,
} from "./message.ts";
import { type Registry, returnValues } from "./registry.ts";
import { formatTypes } from "./types.ts";
import { VERSION } from "./version.ts";

/** A client the server knows by name, with the address it must come from. */
export interface KnownClient {
  name: string;
  /** When set, connections claiming this name must come from this IP. */
  ip?: string;
}

/** Handles an `ADMIN` message; returns the `ADMIN-RES` value. */
export type AdminHandler = (request: AdminRequest, session: SessionInfo) => Promise<unknown>;

/** Options of {@linkcode RpcServer}. */
export interface ServerOptions {
  /** Address to bind. Default `127.0.0.1`. */
  hostname?: string;
  /** Port to bind; 0 picks a free one. Default 0. */
  port?: number;
  /** This server's name, as in init.yaml. Default `rpc`. */
  name?: string;
  /** What the server serves at start. Default: nothing. */
  registry: Registry;
  /** Known clients, by name. */
  clients?: ReadonlyMap<string, KnownClient>;
  /** Largest frame accepted. Default 8 MiB. */
  maxFrameBytes?: number;
  /** Time limit of one call in ms, unless its procedure sets one. Default 60 s. */
  callTimeoutMs?: number;
  logger?: Logger;
  /** Handles `ADMIN` messages; without it they are refused. */
  admin?: AdminHandler;
}

/** What the server knows about one connection. */
export interface SessionInfo {
  id: number;
  remote: string;
  remoteIp: string;
  client: string | undefined;
  connectedAt: Date;
  calls: number;
}

interface Session extends SessionInfo {
  channel: MessageChannel;
  identified: boolean;
  inflight: Map<number, AbortController>;
  /** Resolved when the last call in flight finishes, while the session drains. */
  idle: PromiseWithResolvers<void> | undefined;
}

/** Normalizes an IP address for comparison (`::ffff:1.2.3.4` is `1.2.3.4`). */
export function normalizeIp(ip: string): string {
  const lower = ip.toLowerCase();
  return lower.startsWith("::ffff:") && lower.includes(".") ? lower.slice(7) : lower;
}

/** Counters a server keeps. */
export interface ServerStats {
  connections: number;
  callsServed: number;
  callsFailed: number;
  startedAt: Date;
}

/**
 * A running RPC server.
 *
 * @example
 * ```ts ignore
 * const server = new RpcServer({ registry, port: 8181 });
 * const address = await server.start();
 * ```
 */
export class RpcServer {
  readonly name: string;
  readonly stats: ServerStats;
  #registry: Registry;
  #clients: ReadonlyMap<string, KnownClient>;
  #options: ServerOptions;
  #logger: Logger;
  #maxFrameBytes: number;
  #callTimeoutMs: number;
  #listener: Deno.Listener | undefined;
  #sessions = new Set<Session>();
  #nextSessionId = 1;
  #acceptLoop: Promise<void> | undefined;

  constructor(options: ServerOptions) {
    this.#options = options;
    this.name = options.name ?? "rpc";
    this.#registry = options.registry;
    this.#clients = options.clients ?? new Map();
    this.#logger = options.logger ?? silentLogger();
    this.#maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.#callTimeoutMs = options.callTimeoutMs ?? 60_000;
    this.stats = { connections: 0, callsServed: 0, callsFailed: 0, startedAt: new Date() };
  }

  /** What the server serves now. */
  get registry(): Registry {
    return this.#registry;
  }

  /**
   * Replaces what the server serves. Calls already resolved keep running on
   * the old registry's procedures; calls resolved afterwards use the new one.
   */
  set registry(registry: Registry) {
    this.#registry = registry;
  }

  /** Sets the handler of `ADMIN` messages. */
  set admin(handler: AdminHandler | undefined) {
    this.#options.admin = handler;
  }

  /** Replaces the table of known clients. */
  set clients(clients: ReadonlyMap<string, KnownClient>) {
    this.#clients = clients;
  }

  /** The sessions open now. */
  get sessions(): SessionInfo[] {
    return [...this.#sessions].map(({ id, remote, remoteIp, client, connectedAt, calls }) => ({
      id,
      remote,
      remoteIp,
      client,
      connectedAt,
      calls,
    }));
  }

  /** Binds and starts accepting. Resolves to the bound address. */
  start(): Deno.NetAddr {
    const listener = Deno.listen({
      hostname: this.#options.hostname ?? "127.0.0.1",
      port: this.#options.port ?? 0,
    });
    this.#listener = listener;
    const address = listener.addr as Deno.NetAddr;
    this.#logger.info("listen", `server ${this.name} listening on ${formatAddress(address)}`, {
      address: formatAddress(address),
      version: VERSION,
    });
    this.#acceptLoop = this.#accept(listener);
    return address;
  }

  async #accept(listener: Deno.Listener): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
          return;
        }
        // Out of descriptors or a reset before accept: note it and go on.
        this.#logger.warn("accept", `accept failed: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      this.#serve(conn);
    }
  }

  #serve(conn: Deno.Conn): void {
    const remoteAddr = conn.remoteAddr as Deno.NetAddr;
    const remote = formatAddress(remoteAddr);
    this.#logger.info("connect", `connection attempt from ${remote}`, { remote });
    try {
      (conn as Deno.TcpConn).setNoDelay?.(true);
    } catch {
      // Not a TCP socket.
    }
    const session: Session = {
      id: this.#nextSessionId++,
      remote,
      remoteIp: normalizeIp(remoteAddr.hostname),
      client: undefined,
      connectedAt: new Date(),
      calls: 0,
      channel: new MessageChannel(conn, { maxFrameBytes: this.#maxFrameBytes }),
      identified: false,
      inflight: new Map(),
      idle: undefined,
    };
    this.#sessions.add(session);
    this.stats.connections++;
    this.#run(session).finally(() => {
      this.#sessions.delete(session);
      for (const controller of session.inflight.values()) controller.abort();
      session.channel.close();
      this.#logger.info(
        "disconnect",
        `${describe(session)} disconnected after ${session.calls} calls`,
        {
          remote,
          client: session.client,
          calls: session.calls,
        },
      );
    });
  }

  async #run(session: Session): Promise<void> {
    const { channel } = session;
    try {
      await channel.readAll({
        onMessage: (message) => this.#handle(session, message),
        onMalformed: (error, serial) => {
          this.#logger.warn(
            "protocol",
            `${describe(session)} sent a malformed frame: ${error.message}`,
            {
              remote: session.remote,
              client: session.client,
            },
          );
          channel.send(exceptionMessage(serial ?? 0, error));
        },
      });
      // The peer closed its side: finish the calls it is waiting for.
      if (session.inflight.size > 0 && !channel.closed) {
        session.idle = Promise.withResolvers();
        await session.idle.promise;
      }
      await channel.end();
    } catch (error) {
      const rpcError = RpcError.from(error);
      if (rpcError.kind === ErrorKind.FrameTooLarge || rpcError.kind === ErrorKind.MalformedFrame) {
        this.#logger.warn("protocol", `${describe(session)}: ${rpcError.message}; closing`, {
          remote: session.remote,
          client: session.client,
        });
        channel.send(exceptionMessage(0, rpcError));
        await channel.end();
      }
    }
  }

  #handle(session: Session, message: Message): void {
    switch (message.type) {
      case "HELLO":
        this.#hello(session, message.serial, message.value as HelloRequest);
        return;
      case "RPC-REQ":
        if (!session.identified && !this.#identify(session, message.value.client, message.serial)) {
          return;
        }
        void this.#call(session, message.serial, message.value);
        return;
      case "RPC-CANCEL":
        session.inflight.get(message.serial)?.abort(
          new RpcError(ErrorKind.Cancelled, "Call cancelled by the client"),
        );
        return;
      case "LIST":
        if (!session.identified && !this.#identify(session, undefined, message.serial)) return;
        session.channel.send({
          type: "LIST-RES",
          serial: message.serial,
          value: { services: this.#registry.describe(session.client) },
        });
        return;
      case "ADMIN":
        void this.#admin(session, message.serial, message.value);
        return;
      default:
        session.channel.send(exceptionMessage(
          message.serial,
          new RpcError(
            ErrorKind.MalformedFrame,
            `A server does not accept ${message.type} messages`,
          ),
        ));
    }
  }

  #hello(session: Session, serial: number, hello: HelloRequest): void {
    const offered = Array.isArray(hello.versions) ? hello.versions : [];
    const common = PROTOCOL_VERSIONS.filter((version) => offered.includes(version));
    if (common.length === 0) {
      const error = new RpcError(
        ErrorKind.UnsupportedVersion,
        `Server speaks protocol versions ${PROTOCOL_VERSIONS.join(", ")}; client offered ${
          offered.join(", ") || "none"
        }`,
      );
      this.#logger.warn("protocol", `${describe(session)}: ${error.message}`, {
        remote: session.remote,
      });
      session.channel.send(exceptionMessage(serial, error));
      void session.channel.end();
      return;
    }
    if (session.identified) {
      session.channel.send(exceptionMessage(
        serial,
        new RpcError(ErrorKind.MalformedFrame, "HELLO may be sent only once, first"),
      ));
      return;
    }
    const claimed = typeof hello.client === "string" ? hello.client : undefined;
    if (!this.#identify(session, claimed, serial)) return;
    session.channel.send({
      type: "HELLO",
      serial,
      value: { version: Math.max(...common), server: this.name, software: `rpc/${VERSION}` },
    });
  }

  /**
   * Decides who is on a connection: the name it claims, checked against the
   * IP init.yaml gives for it; or, with no claim, the one client whose IP is
   * the connection's. A false claim is refused, logged, and the connection
   * closed.
   */
  #identify(session: Session, claimed: string | undefined, serial: number): boolean {
    session.identified = true;
    if (claimed !== undefined) {
      const known = this.#clients.get(claimed);
      if (known?.ip !== undefined && normalizeIp(known.ip) !== session.remoteIp) {
        const error = new RpcError(
          ErrorKind.ClientNotRegistered,
          `Client ${claimed} may not connect from ${session.remoteIp}`,
        );
        this.#logger.warn(
          "unauthorized",
          `${session.remote} claimed to be ${claimed}: refused, wrong address`,
          {
            remote: session.remote,
            client: claimed,
            reason: "address",
          },
        );
        session.channel.send(exceptionMessage(serial, error));
        void session.channel.end();
        return false;
      }
      session.client = claimed;
    } else {
      const byAddress = [...this.#clients.values()].filter((client) =>
        client.ip !== undefined && normalizeIp(client.ip) === session.remoteIp
      );
      if (byAddress.length === 1) session.client = byAddress[0].name;
    }
    this.#logger.info("client", `${describe(session)} connected`, {
      remote: session.remote,
      client: session.client,
    });
    return true;
  }

  async #call(session: Session, serial: number, request: CallRequest): Promise<void> {
    const started = performance.now();
    const controller = new AbortController();
    session.inflight.set(serial, controller);
    session.calls++;
    const registry = this.#registry;
    // The argument types, once known: resolved, or declared by the request.
    let signature = request["argument-types"]?.join(", ");
    try {
      const { overload, args } = registry.resolve(session.client, request);
      signature = formatTypes(overload.signature.args);
      const spec = overload.procedure.spec;
      const timeoutMs = spec.timeoutMs ?? this.#callTimeoutMs;
      const timer = setTimeout(
        () =>
          controller.abort(
            new RpcError(ErrorKind.Timeout, `${request.rpc} did not finish within ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
      let result: unknown;
      try {
        result = await abortable(
          overload.procedure.invoke(args, controller.signal),
          controller.signal,
        );
      } finally {
        clearTimeout(timer);
      }
      const values = returnValues(spec, result);
      // A reply too large to send throws here, so the call is answered and logged as failed.
      session.channel.send({ type: "RPC-RES", serial, value: { "return-values": values } });
      this.stats.callsServed++;
      if (this.#logger.enabled("info")) {
        const ms = performance.now() - started;
        this.#logger.info(
          "call",
          `${describe(session)} ${request.service}.${request.rpc}(${signature}) ok ${
            ms.toFixed(2)
          } ms`,
          {
            remote: session.remote,
            client: session.client,
            service: request.service,
            rpc: request.rpc,
            signature,
            ms,
          },
        );
      }
    } catch (error) {
      const rpcError = RpcError.from(error);
      this.stats.callsFailed++;
      session.channel.send(exceptionMessage(serial, rpcError));
      const unauthorized = rpcError.kind === ErrorKind.ClientNotRegistered;
      this.#logger.log(
        unauthorized ? "warn" : "info",
        unauthorized ? "unauthorized" : "exception",
        `${describe(session)} ${request.service}.${request.rpc}${
          signature === undefined ? "" : `(${signature})`
        } ${rpcError.kind}: ${rpcError.message}`,
        {
          remote: session.remote,
          client: session.client,
          service: request.service,
          rpc: request.rpc,
          kind: rpcError.kind,
          error: rpcError.message,
        },
      );
    } finally {
      session.inflight.delete(serial);
      controller.abort();
      if (session.inflight.size === 0) session.idle?.resolve();
    }
  }

  async #admin(session: Session, serial: number, request: AdminRequest): Promise<void> {
    const handler = this.#options.admin;
    try {
      if (!handler) {
        throw new RpcError(ErrorKind.Unauthorized, "This server accepts no admin requests");
      }
      const value = await handler(request, session);
      session.channel.send({ type: "ADMIN-RES", serial, value });
    } catch (error) {
      const rpcError = RpcError.from(error);
      if (rpcError.kind === ErrorKind.Unauthorized) {
        this.#logger.warn(
          "unauthorized",
          `${describe(session)} admin ${request.op} refused: ${rpcError.message}`,
          {
            remote: session.remote,
            client: session.client,
            op: request.op,
          },
        );
      }
      session.channel.send(exceptionMessage(serial, rpcError));
    }
  }

  /** Stops accepting, closes every connection, and waits for the accept loop. */
  async close(): Promise<void> {
    try {
      this.#listener?.close();
    } catch {
      // Already closed.
    }
    for (const session of this.#sessions) session.channel.close();
    await this.#acceptLoop;
    await this.#logger.flush();
  }

  /** Stops accepting new connections; open ones go on. */
  stopAccepting(): void {
    try {
      this.#listener?.close();
    } catch {
      // Already closed.
    }
  }

  /** Calls in flight across all connections. */
  get inflight(): number {
    let count = 0;
    for (const session of this.#sessions) count += session.inflight.size;
    return count;
  }
}

function describe(session: SessionInfo): string {
  return session.client ? `${session.client}@${session.remote}` : session.remote;
}

/** Formats `host:port`, bracketing IPv6 hosts. */
export function formatAddress(address: Deno.NetAddr): string {
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}

/** Settles with `promise`, or rejects with the signal's reason once it aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
