/**
 * The RPC server: accepts connections, reads framed messages, resolves each
 * call against the current {@linkcode Registry}, runs it, and answers by
 * serial. Calls on one connection run concurrently and are answered as they
 * finish. Nothing a client sends ends the server: every failure becomes an
 * `RPC-EX` for that caller, or closes that one connection.
 *
 * @module
 */

import { timingSafeEqual } from "node:crypto";
import { MessageChannel } from "./channel.ts";
import { deadlines } from "./deadline.ts";
import { ErrorKind, RpcError } from "./errors.ts";
import { hashSecret } from "./hash.ts";
import { checkValueLimits, RateLimiter, resolveLimits, type ServerLimits } from "./limits.ts";
import { type Logger, silentLogger } from "./log.ts";
import {
  type AdminRequest,
  type CallRequest,
  exceptionMessage,
  type HelloRequest,
  type Message,
  PROTOCOL_VERSIONS,
} from "./message.ts";
import { partValues, type Registry, returnValues } from "./registry.ts";
import {
  type Address,
  type Connection,
  type Listener,
  listenTcp,
  listenTls,
  type TlsServerOptions,
} from "./transport.ts";
import { formatTypes } from "./types.ts";
import { VERSION } from "./version.ts";

/** A client the server knows by name, with the address it must come from. */
export interface KnownClient {
  name: string;
  /** When set, connections claiming this name must come from this IP. */
  ip?: string;
  /** When set, the client must present the secret whose SHA-256 (hex) this is. */
  secretHash?: string;
}

/** Whether `secret` hashes to `expected` (SHA-256 hex), compared in constant time. */
export function secretMatches(secret: unknown, expected: string): boolean {
  if (typeof secret !== "string" || secret === "") return false;
  const presented = new TextEncoder().encode(hashSecret(secret));
  const wanted = new TextEncoder().encode(expected.toLowerCase());
  return presented.length === wanted.length && timingSafeEqual(presented, wanted);
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
  /** Sizes, counts, timeouts and rates; see {@linkcode DEFAULT_LIMITS}. */
  limits?: Partial<ServerLimits>;
  /** Serve over TLS (mutual TLS when `clientCa` is set). */
  tls?: TlsServerOptions;
  /** Receives one record per call and per refusal, for the audit log. */
  audit?: Logger;
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
  /** The client named by a verified client certificate (mutual TLS). */
  certified: string | undefined;
  /** When the last complete message arrived (performance.now()). */
  lastMessageAt: number;
  inflight: Map<number, AbortController>;
  /** Resolved when the last call in flight finishes, while the session drains. */
  idle: PromiseWithResolvers<void> | undefined;
}

/** Normalizes an IP address for comparison (`::ffff:1.2.3.4` is `1.2.3.4`). */
export function normalizeIp(ip: string): string {
  const lower = ip.toLowerCase();
  return lower.startsWith("::ffff:") && lower.includes(".") ? lower.slice(7) : lower;
}

/** The reply to the `health` admin op. */
export interface Health {
  server: string;
  version: string;
  uptimeMs: number;
  /** Connections open now, this one included. */
  connections: number;
  connectionsAccepted: number;
  connectionsRefused: number;
  callsServed: number;
  callsFailed: number;
  callsInFlight: number;
}

/** Counters a server keeps. */
export interface ServerStats {
  /** Connections accepted since start. */
  connections: number;
  /** Connections refused (limits, failed TLS client checks) since start. */
  refused: number;
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
  #limits: ServerLimits;
  #rates: RateLimiter;
  #audit: Logger | undefined;
  #callTimeoutMs: number;
  #listener: Listener | undefined;
  #sessions = new Set<Session>();
  #perIp = new Map<string, number>();
  #nextSessionId = 1;
  #acceptLoop: Promise<void> | undefined;
  #sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(options: ServerOptions) {
    this.#options = options;
    this.name = options.name ?? "rpc";
    this.#registry = options.registry;
    this.#clients = options.clients ?? new Map();
    this.#logger = options.logger ?? silentLogger();
    this.#limits = resolveLimits(options.limits);
    this.#rates = new RateLimiter(this.#limits);
    this.#audit = options.audit;
    this.#callTimeoutMs = options.callTimeoutMs ?? 60_000;
    this.stats = {
      connections: 0,
      refused: 0,
      callsServed: 0,
      callsFailed: 0,
      startedAt: new Date(),
    };
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

  /** The limits in force. */
  get limits(): Readonly<ServerLimits> {
    return this.#limits;
  }

  /** Binds and starts accepting. Resolves to the bound address. */
  async start(): Promise<Address> {
    const address = {
      hostname: this.#options.hostname ?? "127.0.0.1",
      port: this.#options.port ?? 0,
    };
    const listener = this.#options.tls
      ? await listenTls(address, this.#options.tls, (remote, reason) => {
        this.stats.refused++;
        this.#logger.warn(
          "unauthorized",
          `TLS connection from ${formatAddress(remote)} refused: ${reason}`,
          {
            remote: formatAddress(remote),
            reason,
          },
        );
      })
      : listenTcp(address);
    this.#listener = listener;
    const bound = formatAddress(listener.address);
    this.#logger.info(
      "listen",
      `server ${this.name} listening on ${bound}${
        this.#options.tls ? (this.#options.tls.clientCa ? " (mutual TLS)" : " (TLS)") : ""
      }`,
      { address: bound, version: VERSION },
    );
    this.#acceptLoop = this.#accept(listener);
    const sweeper = setInterval(() => this.#sweep(), 1000);
    Deno.unrefTimer(sweeper);
    this.#sweeper = sweeper;
    return listener.address;
  }

  async #accept(listener: Listener): Promise<void> {
    for (;;) {
      const connection = await listener.accept();
      if (!connection) return;
      this.#serve(connection);
    }
  }

  /** Closes connections that idle too long or send a frame too slowly; trims rate-limit state. */
  #sweep(): void {
    const now = performance.now();
    const { idleTimeoutMs, frameTimeoutMs } = this.#limits;
    for (const session of this.#sessions) {
      const partialSince = session.channel.partialSince;
      let reason: string | undefined;
      if (frameTimeoutMs > 0 && partialSince !== undefined && now - partialSince > frameTimeoutMs) {
        reason = `a frame took longer than ${frameTimeoutMs} ms to arrive (slow sender)`;
      } else if (
        idleTimeoutMs > 0 && session.inflight.size === 0 &&
        now - session.lastMessageAt > idleTimeoutMs
      ) {
        reason = `idle for ${idleTimeoutMs} ms`;
      }
      if (reason) {
        this.#logger.info("disconnect", `${describe(session)}: closing, ${reason}`, {
          remote: session.remote,
          client: session.client,
          reason,
        });
        session.channel.close();
      }
    }
    this.#rates.sweep(now);
  }

  #serve(conn: Connection): void {
    const remote = formatAddress(conn.remote);
    const remoteIp = normalizeIp(conn.remote.hostname);
    this.#logger.info("connect", `connection attempt from ${remote}`, { remote });
    const fromIp = this.#perIp.get(remoteIp) ?? 0;
    const { maxConnections, maxConnectionsPerIp } = this.#limits;
    const refusal = maxConnections > 0 && this.#sessions.size >= maxConnections
      ? `the server has ${this.#sessions.size} connections (limit ${maxConnections})`
      : maxConnectionsPerIp > 0 && fromIp >= maxConnectionsPerIp
      ? `${remoteIp} has ${fromIp} connections (limit ${maxConnectionsPerIp})`
      : undefined;
    if (refusal) {
      this.stats.refused++;
      this.#logger.warn("refused", `connection from ${remote} refused: ${refusal}`, {
        remote,
        reason: refusal,
      });
      const channel = new MessageChannel(conn, { maxFrameBytes: this.#limits.maxFrameBytes });
      channel.send(
        exceptionMessage(0, new RpcError(ErrorKind.Unavailable, `Connection refused: ${refusal}`)),
      );
      void channel.end();
      return;
    }
    this.#perIp.set(remoteIp, fromIp + 1);
    const session: Session = {
      id: this.#nextSessionId++,
      remote,
      remoteIp,
      client: undefined,
      certified: conn.peerName,
      connectedAt: new Date(),
      lastMessageAt: performance.now(),
      calls: 0,
      channel: new MessageChannel(conn, { maxFrameBytes: this.#limits.maxFrameBytes }),
      identified: false,
      inflight: new Map(),
      idle: undefined,
    };
    this.#sessions.add(session);
    this.stats.connections++;
    this.#run(session).finally(() => {
      this.#sessions.delete(session);
      const left = (this.#perIp.get(remoteIp) ?? 1) - 1;
      if (left > 0) this.#perIp.set(remoteIp, left);
      else this.#perIp.delete(remoteIp);
      // Calls cut short by the connection closing are Cancelled, not Internal Errors.
      const closed = new RpcError(ErrorKind.Cancelled, "The connection closed");
      for (const controller of session.inflight.values()) controller.abort(closed);
      session.channel.close();
      this.#logger.info(
        "disconnect",
        `${describe(session)} disconnected after ${session.calls} calls`,
        { remote, client: session.client, calls: session.calls },
      );
    });
  }

  async #run(session: Session): Promise<void> {
    const { channel } = session;
    try {
      await channel.readAll({
        onMessage: (message) => {
          session.lastMessageAt = performance.now();
          this.#handle(session, message);
        },
        onMalformed: (error, serial) => {
          this.#logger.warn(
            "protocol",
            `${describe(session)} sent a malformed frame: ${error.message}`,
            {
              remote: session.remote,
              client: session.client,
            },
          );
          sendException(channel, serial ?? 0, error);
        },
      });
      // The peer closed its side: finish the calls it is waiting for. If it
      // closed both sides, a write fails and closes the channel: stop waiting,
      // and the calls in flight are aborted below (stopping their generators).
      if (session.inflight.size > 0 && !channel.closed) {
        session.idle = Promise.withResolvers();
        await Promise.race([session.idle.promise, channel.whenClosed]);
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
        if (
          !session.identified &&
          !this.#identify(session, message.value.client, message.value.secret, message.serial)
        ) {
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
        if (!session.identified && !this.#identify(session, undefined, undefined, message.serial)) {
          return;
        }
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
      sendException(session.channel, serial, error);
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
    if (!this.#identify(session, claimed, hello.secret, serial)) return;
    session.channel.send({
      type: "HELLO",
      serial,
      value: { version: Math.max(...common), server: this.name, software: `rpc/${VERSION}` },
    });
  }

  /**
   * Decides who is on a connection. A verified client certificate names the
   * client outright. Otherwise the connection's claim is checked: it must
   * come from the IP init.yaml gives that client, and present the client's
   * secret if it has one. With no claim, the connection is the one client
   * (without a secret) whose IP it comes from, or anonymous. A refused claim
   * is logged as unauthorized and the connection closed.
   */
  #identify(
    session: Session,
    claimed: string | undefined,
    secret: unknown,
    serial: number,
  ): boolean {
    session.identified = true;
    const refuse = (kind: ErrorKind, message: string, reason: string) => {
      this.stats.refused++;
      const fields = { remote: session.remote, client: claimed ?? session.certified, reason };
      this.#logger.warn("unauthorized", `${session.remote}: ${message}`, fields);
      this.#audit?.warn("unauthorized", message, fields);
      sendException(session.channel, serial, new RpcError(kind, message));
      void session.channel.end();
      return false;
    };
    let name = claimed;
    if (session.certified !== undefined) {
      if (claimed !== undefined && claimed !== session.certified) {
        return refuse(
          ErrorKind.Unauthorized,
          `Client certificate names ${session.certified}, not ${claimed}`,
          "certificate",
        );
      }
      name = session.certified;
    }
    if (name !== undefined) {
      const known = this.#clients.get(name);
      if (known?.ip !== undefined && normalizeIp(known.ip) !== session.remoteIp) {
        return refuse(
          ErrorKind.ClientNotRegistered,
          `Client ${name} may not connect from ${session.remoteIp}`,
          "address",
        );
      }
      if (
        known?.secretHash && session.certified === undefined &&
        !secretMatches(secret, known.secretHash)
      ) {
        return refuse(
          ErrorKind.Unauthorized,
          secret === undefined || secret === ""
            ? `Client ${name} must present its secret`
            : `Wrong secret for client ${name}`,
          "secret",
        );
      }
      session.client = name;
    } else {
      const byAddress = [...this.#clients.values()].filter((client) =>
        client.ip !== undefined && !client.secretHash && normalizeIp(client.ip) === session.remoteIp
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
    const controller = new CallController();
    // A second call under a serial in flight would take the first's place in `inflight`:
    // it would slip past maxCallsPerConnection, and the first's end would drop its entry.
    const duplicate = session.inflight.has(serial);
    if (!duplicate) session.inflight.set(serial, controller);
    session.calls++;
    const registry = this.#registry;
    // The argument types, once known: resolved, or declared by the request.
    let signature = request["argument-types"]?.join(", ");
    let outcome = "ok";
    try {
      if (duplicate) {
        throw new RpcError(
          ErrorKind.MalformedFrame,
          `Serial ${serial} is already in use by a call in flight on this connection`,
        );
      }
      if (
        this.#limits.maxCallsPerConnection > 0 &&
        session.inflight.size > this.#limits.maxCallsPerConnection
      ) {
        throw new RpcError(
          ErrorKind.RateLimited,
          `Too many calls in flight on this connection (limit ${this.#limits.maxCallsPerConnection})`,
        );
      }
      this.#rates.admit(session.client ?? session.remoteIp);
      checkValueLimits(request.arguments, this.#limits);
      const { overload, args } = registry.resolve(session.client, request);
      signature = formatTypes(overload.signature.args);
      const spec = overload.procedure.spec;
      const timeoutMs = spec.timeoutMs ?? this.#callTimeoutMs;
      // One shared timer for every call's limit: a timer per call costs more than most calls.
      const deadline = deadlines.after(
        timeoutMs,
        () =>
          controller.abort(
            new RpcError(ErrorKind.Timeout, `${request.rpc} did not finish within ${timeoutMs} ms`),
          ),
      );
      let result: unknown;
      try {
        // A streaming procedure's partial results go out as they come, checked like return values.
        const onPart = spec.signature.yields
          ? (value: unknown) =>
            session.channel.send({
              type: "RPC-PART",
              serial,
              value: { values: partValues(spec, value) },
            })
          : undefined;
        result = await controller.race(overload.procedure.invoke(args, controller.signal, onPart));
      } finally {
        deadline.cancel();
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
      outcome = rpcError.kind;
      this.stats.callsFailed++;
      sendException(session.channel, serial, rpcError);
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
      if (!duplicate) session.inflight.delete(serial);
      // The signal is aborted only when the call was cut short (time limit, RPC-CANCEL, the
      // connection closing): a finished procedure has settled, and runners drop their
      // listeners when it does, so aborting here would only build an event nobody hears.
      if (session.inflight.size === 0) session.idle?.resolve();
      this.#audit?.info("call", outcome, {
        client: session.client,
        remote: session.remote,
        service: request.service,
        rpc: request.rpc,
        signature: signature ?? null,
        outcome,
        ms: performance.now() - started,
      });
    }
  }

  async #admin(session: Session, serial: number, request: AdminRequest): Promise<void> {
    const handler = this.#options.admin;
    try {
      if (request.op === "health") {
        session.channel.send({ type: "ADMIN-RES", serial, value: this.health() });
        return;
      }
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
      sendException(session.channel, serial, rpcError);
    }
  }

  /** Stops accepting, closes every connection, and waits for the accept loop. */
  async close(): Promise<void> {
    this.stopAccepting();
    for (const session of this.#sessions) session.channel.close();
    await this.#acceptLoop;
    await this.#logger.flush();
    await this.#audit?.flush();
  }

  /** Stops accepting new connections; open ones go on. */
  stopAccepting(): void {
    this.#listener?.close();
    clearInterval(this.#sweeper);
  }

  /**
   * Shuts down gracefully: stops accepting at once (new connections are
   * refused), closes connections that have no call in flight, lets the calls
   * in flight finish for up to `graceMs` (closing each connection once its
   * last call is answered), then closes whatever is left. Aborting `signal`
   * ends the grace period early. Resolves to the number of calls that were
   * still running when the grace period ended (0 when all finished).
   */
  async drain(graceMs: number, signal?: AbortSignal): Promise<number> {
    this.stopAccepting();
    const inflight = this.inflight;
    this.#logger.info(
      "shutdown",
      `draining: refusing new connections, ${inflight} calls in flight on ${this.#sessions.size} connections, grace ${graceMs} ms`,
      { inflight, connections: this.#sessions.size, graceMs },
    );
    const deadline = performance.now() + graceMs;
    const ended = new WeakSet<Session>();
    for (;;) {
      for (const session of this.#sessions) {
        if (session.inflight.size > 0 || ended.has(session)) continue;
        // Its replies are all queued: write them, then close.
        ended.add(session);
        void session.channel.end();
      }
      const left = deadline - performance.now();
      if (this.inflight === 0 || left <= 0 || signal?.aborted) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(20, left)));
    }
    const abandoned = this.inflight;
    if (abandoned > 0) {
      this.#logger.warn(
        "shutdown",
        `grace period over: closing ${this.#sessions.size} connections with ${abandoned} calls still running`,
        { abandoned },
      );
    } else {
      this.#logger.info("shutdown", "every call in flight finished", { abandoned });
    }
    await this.close();
    return abandoned;
  }

  /**
   * Closes connection `id` (see {@linkcode sessions}) at once; its calls in
   * flight are aborted. Returns false when no such connection is open.
   */
  disconnect(id: number, reason: string): boolean {
    for (const session of this.#sessions) {
      if (session.id !== id) continue;
      this.#logger.info("disconnect", `${describe(session)}: closing, ${reason}`, {
        remote: session.remote,
        client: session.client,
        reason,
      });
      session.channel.close();
      return true;
    }
    return false;
  }

  /** What `rpc ping` shows: version, uptime, connections and call counts. Anyone may ask. */
  health(): Health {
    return {
      server: this.name,
      version: VERSION,
      uptimeMs: Date.now() - this.stats.startedAt.getTime(),
      connections: this.#sessions.size,
      connectionsAccepted: this.stats.connections,
      connectionsRefused: this.stats.refused,
      callsServed: this.stats.callsServed,
      callsFailed: this.stats.callsFailed,
      callsInFlight: this.inflight,
    };
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

/**
 * Sends an `RPC-EX`. Its message may quote what the client sent (a name, a
 * type, the versions it offered), so it can be too large for a frame: then it
 * goes out cut short instead of throwing out of the handler, which, in a call
 * or an admin request, would be an unhandled rejection that ends the server.
 */
function sendException(channel: MessageChannel, serial: number, error: RpcError): void {
  try {
    channel.send(exceptionMessage(serial, error));
  } catch {
    const short = `${error.message.slice(0, 200)}… (cut short: too large for a frame)`;
    try {
      channel.send(exceptionMessage(serial, new RpcError(error.kind, short)));
    } catch {
      // Frames too small for even that: the caller cannot be answered, so do not keep it waiting.
      channel.close();
    }
  }
}

/** Formats `host:port`, bracketing IPv6 hosts. */
export function formatAddress(address: Address): string {
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}

/**
 * The controller of one call: aborting it (time limit, `RPC-CANCEL`, the
 * connection closing) aborts the signal the procedure's runner holds and
 * rejects the call's {@linkcode CallController.race} at once, without an
 * event listener per call.
 */
class CallController extends AbortController {
  #reject: ((reason: unknown) => void) | undefined;

  override abort(reason?: unknown): void {
    if (this.signal.aborted) return;
    super.abort(reason);
    this.#reject?.(this.signal.reason);
  }

  /** Settles like `promise`, or rejects with the abort reason once aborted. */
  race<T>(promise: Promise<T>): Promise<T> {
    if (this.signal.aborted) return Promise.reject(this.signal.reason);
    return new Promise<T>((resolve, reject) => {
      this.#reject = reject;
      promise.then(resolve, reject);
    });
  }
}
