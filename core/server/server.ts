/**
 * The RPC server: accepts connections, reads framed messages, resolves each
 * call against the current {@linkcode Registry}, runs it, and answers by
 * serial. Calls on one connection run concurrently and are answered as they
 * finish. Nothing a client sends ends the server: every failure becomes an
 * `RPC-EX` for that caller, or closes that one connection.
 *
 * @module
 */

import type { AdminAuth } from "./admin.ts";
import {
  newNonce,
  NONCE_CHARS,
  proofKeyFromHash,
  proofMatches,
  type ProofRole,
} from "../wire/auth.ts";
import { type ConnectionReplies, ReplyBudget } from "./backpressure.ts";
import { type ChannelOptions, MessageChannel } from "../wire/channel.ts";
import { CourseAwareChannel } from "../wire/course_channel.ts";
import { deadlines } from "../deadline.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import { checkValueLimits, RateLimiter, resolveLimits, type ServerLimits } from "./limits.ts";
import { type Logger, silentLogger } from "../log.ts";
import { RefusalLog } from "./refusals.ts";
import {
  type AdminRequest,
  type AuthRequest,
  type CallRequest,
  CONNECTION_SERIAL,
  exactArguments,
  exceptionMessage,
  hasDeferredArguments,
  type HelloRequest,
  type Message,
  PROTOCOL_VERSIONS,
} from "../wire/message.ts";
import { clip } from "../wire/names.ts";
import { partValues, type Registry, returnValues } from "./registry.ts";
import {
  type Address,
  type Connection,
  formatAddress,
  type Listener,
  type ListenEvents,
  listenTcp,
  listenTls,
  listenUnix,
  type TlsServerOptions,
} from "../transport/mod.ts";
import { formatTypes } from "../types/types.ts";
import { VERSION } from "../version.ts";

/** A client the server knows by name, with the address it must come from. */
export interface KnownClient {
  name: string;
  /** When set, connections claiming this name must come from this IP. */
  ip?: string;
  /** When set, the client must present the secret whose SHA-256 (hex) this is. */
  secretHash?: string;
}

/** Handles an `ADMIN` message; returns the `ADMIN-RES` value. */
export type AdminHandler = (request: AdminRequest, session: SessionInfo) => Promise<unknown>;

/** Options of {@linkcode RpcServer}. */
export interface ServerOptions {
  /** Address to bind. Default `127.0.0.1`. */
  hostname?: string;
  /** Port to bind; 0 picks a free one. Default 0. */
  port?: number;
  /**
   * Listen on this unix domain socket instead of TCP (`hostname`, `port`
   * and `tls` are then unused), with these permission bits on the socket
   * file (default 0o600).
   */
  unix?: { path: string; mode?: number };
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
  /** The admin token a connection can prove with `AUTH` (see `core/wire/auth.ts`). */
  adminAuth?: AdminAuth;
  /**
   * How often repeated refusals of one peer are summarised instead of logged
   * one by one, in ms (see {@linkcode RefusalLog}); 0 logs every one. Default 10 s.
   */
  refusalSummaryMs?: number;
}

/**
 * Told what the server does, for metrics. Both hooks run on the hot path:
 * they must be cheap and must not throw.
 */
export interface ServerObserver {
  /** A connection is being served; may return a wrapper (e.g. one that counts bytes). */
  accepted?(conn: Connection): Connection;
  /** A call ended: `outcome` is `ok` or an exception kind, `ms` its time. */
  called?(service: string, rpc: string, outcome: string, ms: number): void;
}

/** What the server knows about one connection. */
export interface SessionInfo {
  id: number;
  remote: string;
  remoteIp: string;
  client: string | undefined;
  connectedAt: Date;
  calls: number;
  /** Whether the connection proved the admin token (`AUTH`). */
  admin: boolean;
}

interface Session extends SessionInfo {
  conn: Connection;
  channel: MessageChannel;
  /** Its replies not yet written, and the calls that may start (backpressure). */
  replies: ConnectionReplies;
  identified: boolean;
  /** When the connection was accepted (performance.now()). */
  acceptedAt: number;
  /** Whether a complete message has arrived. */
  greeted: boolean;
  /** The nonce of this server's `HELLO` reply, which `AUTH` proofs sign. */
  nonce: string | undefined;
  /** The client name claimed in `HELLO` (`""` for none), which `AUTH` proofs sign. */
  claimed: string;
  /** Whether `AUTH` was sent (it may be sent once). */
  authenticated: boolean;
  /** A claimed client that must still prove its secret with `AUTH`. */
  awaitingProof: KnownClient | undefined;
  /** Set once the connection was refused: what it sent after that is ignored. */
  refused: boolean;
  /**
   * Set when the connection was admitted past the connection limits into a
   * slot kept for admins: why it would have been refused. Until it proves
   * the admin token it may send only `HELLO` and `AUTH`.
   */
  reserved: string | undefined;
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
 * @example A server with nothing to serve yet, on a free port of 127.0.0.1
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect } from "../client/client.ts";
 * import { Registry } from "./registry.ts";
 * import { RpcServer } from "./server.ts";
 *
 * const server = new RpcServer({ registry: Registry.empty(), port: 0 });
 * const address = await server.start();
 * assert.equal(address.hostname, "127.0.0.1");
 * assert(address.port > 0);
 * const client = await connect(address);
 * await assert.rejects(client.call("service1", "rpc1", [3, "ab"]), { kind: "Service Not Found" });
 * client.close();
 * await server.close();
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
  #replies: ReplyBudget;
  #audit: Logger | undefined;
  #refusals: RefusalLog;
  #callTimeoutMs: number;
  #listener: Listener | undefined;
  #sessions = new Set<Session>();
  /** Sessions admitted into the slots kept for admins, oldest first. */
  #reserved = new Set<Session>();
  /** Refused connections still being told so (bounded by {@linkcode MAX_REFUSING}). */
  #refusing = 0;
  #perIp = new Map<string, number>();
  #nextSessionId = 1;
  #acceptLoop: Promise<void> | undefined;
  #accepting = true;
  #observer: ServerObserver | undefined;
  #sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(options: ServerOptions) {
    this.#options = options;
    this.name = options.name ?? "rpc";
    this.#registry = options.registry;
    this.#clients = options.clients ?? new Map();
    this.#logger = options.logger ?? silentLogger();
    this.#limits = resolveLimits(options.limits);
    this.#rates = new RateLimiter(this.#limits);
    this.#replies = new ReplyBudget(this.#limits);
    this.#audit = options.audit;
    this.#refusals = new RefusalLog({
      logger: this.#logger,
      ...(options.audit ? { audit: options.audit } : {}),
      ...(options.refusalSummaryMs !== undefined ? { intervalMs: options.refusalSummaryMs } : {}),
    });
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

  /** Sets who is told about connections and calls (metrics). */
  set observer(observer: ServerObserver | undefined) {
    this.#observer = observer;
  }

  /** Replaces the table of known clients. */
  set clients(clients: ReadonlyMap<string, KnownClient>) {
    this.#clients = clients;
  }

  /** The sessions open now. */
  get sessions(): SessionInfo[] {
    return [...this.#sessions].map((
      { id, remote, remoteIp, client, connectedAt, calls, admin },
    ) => ({ id, remote, remoteIp, client, connectedAt, calls, admin }));
  }

  /** The limits in force. */
  get limits(): Readonly<ServerLimits> {
    return this.#limits;
  }

  /**
   * Binds (a unix socket with `unix`, else TCP, with TLS when `tls` is set)
   * and serves what the listener accepts. Resolves to the bound address.
   */
  async start(): Promise<Address> {
    const events = this.#listenEvents();
    const unix = this.#options.unix;
    const listener = unix
      ? await listenUnix(unix.path, { mode: unix.mode }, events)
      : this.#options.tls
      ? await listenTls(this.#address(), this.#options.tls, events)
      : listenTcp(this.#address(), events);
    return this.serve(listener);
  }

  #address(): Address {
    return { hostname: this.#options.hostname ?? "127.0.0.1", port: this.#options.port ?? 0 };
  }

  /**
   * Serves every connection `listener` accepts, any transport (an
   * in-memory listener among them), until {@linkcode stopAccepting} or
   * {@linkcode close}. A server serves one listener. Returns its address.
   *
   * @throws {Error} when the server serves a listener already.
   */
  serve(listener: Listener): Address {
    if (this.#listener) throw new Error("Cannot serve a second listener: this server has one");
    this.#listener = listener;
    const bound = formatAddress(listener.address);
    const secured = listener.address.path === undefined && this.#options.tls
      ? (this.#options.tls.clientCa ? " (mutual TLS)" : " (TLS)")
      : "";
    this.#logger.info(
      "listen",
      `server ${this.name} listening on ${bound}${secured}`,
      { address: bound, version: VERSION },
    );
    this.#acceptLoop = this.#accept(listener);
    this.#startSweeper();
    return listener.address;
  }

  /**
   * Serves one connection accepted elsewhere (an embedding's in-memory
   * connection, a gateway's session) exactly like one from a listener: the
   * same limits, identity checks and log. Once the server stops accepting,
   * it is closed at once. Returns false when it was refused (it is then
   * answered and closed).
   */
  serveConnection(conn: Connection): boolean {
    if (!this.#accepting) {
      conn.close();
      return false;
    }
    this.#startSweeper();
    return this.#serve(conn);
  }

  #startSweeper(): void {
    if (this.#sweeper !== undefined) return;
    const sweeper = setInterval(() => this.#sweep(), 1000);
    Deno.unrefTimer(sweeper);
    this.#sweeper = sweeper;
  }

  #listenEvents(): ListenEvents {
    return {
      onRejected: (remote, reason) => {
        this.stats.refused++;
        const ip = peerKey(remote);
        if (!this.#refusals.refused(ip, `TLS: ${reason.slice(0, 200)}`, true)) return;
        const fields = { remote: formatAddress(remote), reason };
        const message = `TLS connection from ${formatAddress(remote)} refused: ${reason}`;
        this.#logger.warn("unauthorized", message, fields);
        this.#audit?.warn("unauthorized", message, fields);
      },
      onAcceptError: (error, failures, pauseMs) => {
        // Logged at failures 1, 2, 4, 8, ...: an exhausted process does not flood its log.
        if ((failures & (failures - 1)) !== 0) return;
        this.#logger.error(
          "accept",
          `Cannot accept connections: ${error.message} (${failures} failures in a row); retrying in ${pauseMs} ms`,
          { error: error.message, failures, pauseMs },
        );
      },
      onAcceptRecovered: (failures, ms) => {
        this.#logger.warn(
          "accept",
          `accepting connections again after ${failures} failed accepts over ${Math.round(ms)} ms`,
          { failures, ms },
        );
      },
    };
  }

  async #accept(listener: Listener): Promise<void> {
    for (;;) {
      const connection = await listener.accept();
      if (!connection) return;
      if (this.#accepting) this.#serve(connection);
      else connection.close();
    }
  }

  /**
   * Closes connections that idle too long, send a frame too slowly, or do not
   * finish their handshake (TLS, first message, proofs) in time; trims
   * rate-limit state.
   */
  #sweep(): void {
    const now = performance.now();
    const { idleTimeoutMs, frameTimeoutMs, handshakeTimeoutMs } = this.#limits;
    for (const session of this.#sessions) {
      const partialSince = session.channel.partialSince;
      let reason: string | undefined;
      if (handshakeTimeoutMs > 0 && now - session.acceptedAt > handshakeTimeoutMs) {
        reason = this.#unfinishedHandshake(session);
      }
      if (reason) {
        // Counted as a refusal: the connection never became a working one.
        this.stats.refused++;
        if (this.#refusals.refused(session.remoteIp, "unfinished handshake")) {
          this.#logger.warn("unauthorized", `${describe(session)}: closing, ${reason}`, {
            remote: session.remote,
            client: session.client,
            reason,
          });
        }
        session.channel.close();
        continue;
      }
      if (frameTimeoutMs > 0 && partialSince !== undefined && now - partialSince > frameTimeoutMs) {
        reason = `a frame took longer than ${frameTimeoutMs} ms to arrive (slow sender)`;
      } else if (idleTimeoutMs > 0 && session.replies.stalledFor(now) > idleTimeoutMs) {
        reason =
          `its client read none of ${session.replies.unsent} bytes of replies for ${idleTimeoutMs} ms`;
      } else if (
        idleTimeoutMs > 0 && session.inflight.size === 0 && session.replies.unsent === 0 &&
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

  /** Why a session that has been open longer than the handshake limit must go, if it must. */
  #unfinishedHandshake(session: Session): string | undefined {
    const limit = this.#limits.handshakeTimeoutMs;
    if (!session.greeted) {
      return session.conn.handshaking
        ? `its TLS handshake did not finish within ${limit} ms of connecting`
        : `no message arrived within ${limit} ms of connecting`;
    }
    if (session.awaitingProof) {
      return `client ${session.awaitingProof.name} did not prove its secret within ${limit} ms of connecting`;
    }
    if (session.reserved !== undefined && !session.admin) {
      return `it took a slot kept for admins and did not prove the admin token within ${limit} ms`;
    }
    return undefined;
  }

  /** Why a new connection from `remoteIp` would be over the connection limits, if it would. */
  #overLimit(remoteIp: string): string | undefined {
    const fromIp = this.#perIp.get(remoteIp) ?? 0;
    const { maxConnections, maxConnectionsPerIp } = this.#limits;
    const open = this.#sessions.size - this.#reserved.size;
    return maxConnections > 0 && open >= maxConnections
      ? `the server has ${open} connections (limit ${maxConnections})`
      : maxConnectionsPerIp > 0 && fromIp >= maxConnectionsPerIp
      ? `${remoteIp} has ${fromIp} connections (limit ${maxConnectionsPerIp})`
      : undefined;
  }

  /**
   * Whether a connection over the limits may take a slot kept for admins.
   * When every slot is taken, the oldest one whose connection has not
   * proved the admin token is freed for it.
   */
  #admitToReserve(): boolean {
    const { adminReserve } = this.#limits;
    if (adminReserve <= 0) return false;
    if (this.#reserved.size < adminReserve) return true;
    for (const session of this.#reserved) {
      if (session.admin) continue;
      this.#reserved.delete(session);
      if (this.#refusals.refused(session.remoteIp, "slot kept for admins")) {
        this.#logger.warn(
          "refused",
          `${describe(session)}: closing, its slot kept for admins goes to a newer connection`,
          { remote: session.remote, reason: "reserve" },
        );
      }
      sendException(
        session.channel,
        0,
        new RpcError(
          ErrorKind.Unavailable,
          `Connection refused: ${session.reserved}; the slots kept for admins went to newer connections`,
        ),
      );
      void session.channel.end();
      return true;
    }
    return false;
  }

  /**
   * Refuses a connection over the limits: it is told why (once its TLS
   * handshake, if any, is done) and closed. At most {@linkcode MAX_REFUSING}
   * are being told at once, each for at most the handshake limit; others are
   * closed at once.
   */
  #refuse(conn: Connection, remote: string, refusal: string): void {
    this.stats.refused++;
    if (this.#refusals.refused(peerKey(conn.remote), "connection limit")) {
      this.#logger.warn("refused", `connection from ${remote} refused: ${refusal}`, {
        remote,
        reason: refusal,
      });
    }
    if (this.#refusing >= MAX_REFUSING) {
      conn.close();
      return;
    }
    this.#refusing++;
    const channel = new MessageChannel(conn, { maxFrameBytes: this.#limits.maxFrameBytes });
    channel.send(exceptionMessage(
      CONNECTION_SERIAL,
      new RpcError(ErrorKind.Unavailable, `Connection refused: ${refusal}`),
    ));
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.#refusing--;
      channel.close();
    };
    const timer = setTimeout(finish, this.#limits.handshakeTimeoutMs || 10_000);
    channel.end().finally(finish);
  }

  #serve(accepted: Connection): boolean {
    const conn = this.#observer?.accepted?.(accepted) ?? accepted;
    const remote = formatAddress(conn.remote);
    const remoteIp = peerKey(conn.remote);
    if (!this.#refusals.quiet(remoteIp, true)) {
      this.#logger.info("connect", `connection attempt from ${remote}`, { remote });
    }
    const refusal = this.#overLimit(remoteIp);
    if (refusal !== undefined && !this.#admitToReserve()) {
      this.#refuse(conn, remote, refusal);
      return false;
    }
    this.#perIp.set(remoteIp, (this.#perIp.get(remoteIp) ?? 0) + 1);
    const now = performance.now();
    const replies = this.#replies.open(() => channel.resumeReading());
    // Framed, or the course's one-shot JSON form when the first byte is "{".
    const channel = new CourseAwareChannel(conn, this.#channelOptions(replies));
    const session: Session = {
      id: this.#nextSessionId++,
      remote,
      remoteIp,
      client: undefined,
      admin: false,
      conn,
      connectedAt: new Date(),
      acceptedAt: now,
      greeted: false,
      nonce: undefined,
      claimed: "",
      authenticated: false,
      awaitingProof: undefined,
      refused: false,
      reserved: refusal,
      lastMessageAt: now,
      calls: 0,
      channel,
      replies,
      identified: false,
      inflight: new Map(),
      idle: undefined,
    };
    this.#sessions.add(session);
    if (refusal !== undefined) {
      this.#reserved.add(session);
      if (!this.#refusals.quiet(remoteIp)) {
        this.#logger.warn(
          "refused",
          `connection from ${remote} takes a slot kept for admins (${refusal}): it must prove the admin token`,
          { remote, reason: refusal },
        );
      }
    }
    this.stats.connections++;
    this.#run(session).finally(() => {
      this.#sessions.delete(session);
      this.#reserved.delete(session);
      const left = (this.#perIp.get(remoteIp) ?? 1) - 1;
      if (left > 0) this.#perIp.set(remoteIp, left);
      else this.#perIp.delete(remoteIp);
      // Calls cut short by the connection closing are Cancelled, not Internal Errors.
      const closed = new RpcError(ErrorKind.Cancelled, "The connection closed");
      for (const controller of session.inflight.values()) controller.abort(closed);
      session.channel.close();
      session.replies.close();
      // A named client's comings and goings are always logged; a flooding peer's others are counted.
      if ((session.client === undefined || session.refused) && this.#refusals.quiet(remoteIp)) {
        return;
      }
      this.#logger.info(
        "disconnect",
        `${describe(session)} disconnected after ${session.calls} calls`,
        { remote, client: session.client, calls: session.calls },
      );
    });
    return true;
  }

  /**
   * How a session's channel reads: integers of at most `maxIntegerDigits`,
   * read exactly only once a call's target is checked, and reading held while
   * the client is not taking its replies.
   */
  #channelOptions(replies: ConnectionReplies): ChannelOptions {
    return {
      maxFrameBytes: this.#limits.maxFrameBytes,
      // maxUnsentBytes holds reading instead (and 0 turns that off).
      writeHighWaterBytes: Infinity,
      decode: { maxIntegerDigits: this.#limits.maxIntegerDigits, deferArguments: true },
      onBacklog: (delta) => replies.changed(delta),
      mayRead: () => replies.mayRead(),
    };
  }

  /**
   * The serial to answer a request with: its own, unless a call in flight
   * already has it (then the reply would be taken for that call's).
   */
  #replySerial(session: Session, serial: number | undefined): number {
    return serial === undefined || session.inflight.has(serial) ? CONNECTION_SERIAL : serial;
  }

  async #run(session: Session): Promise<void> {
    const { channel } = session;
    try {
      await channel.readAll({
        onMessage: (message) => {
          session.lastMessageAt = performance.now();
          session.greeted = true;
          try {
            this.#handle(session, message);
          } catch (error) {
            // A fault in handling one message: answer it, and keep the connection.
            const rpcError = RpcError.from(error);
            this.#logger.error(
              "internal",
              `${describe(session)} ${message.type}: ${clip(rpcError.message)}`,
              { remote: session.remote, client: session.client, error: clip(rpcError.message) },
            );
            sendException(channel, this.#replySerial(session, message.serial), rpcError);
          }
        },
        onMalformed: (error, serial) => {
          this.#logger.warn(
            "protocol",
            `${describe(session)} sent a malformed frame: ${clip(error.message)}`,
            {
              remote: session.remote,
              client: session.client,
            },
          );
          sendException(channel, this.#replySerial(session, serial), error);
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
        channel.send(exceptionMessage(CONNECTION_SERIAL, rpcError));
        await channel.end();
      }
    }
  }

  #handle(session: Session, message: Message): void {
    if (session.refused) return;
    if (
      message.type !== "HELLO" && message.type !== "AUTH" && !this.#mayProceed(session, message)
    ) {
      return;
    }
    if (message.type !== "RPC-CANCEL" && session.inflight.has(message.serial)) {
      // Answered under the connection's serial: under its own, the client would take the
      // refusal for the reply to the call in flight.
      const error = new RpcError(
        ErrorKind.MalformedFrame,
        `Serial ${message.serial} is already in use by a call in flight on this connection`,
      );
      this.#logger.warn("protocol", `${describe(session)}: ${error.message}`, {
        remote: session.remote,
        client: session.client,
      });
      sendException(session.channel, CONNECTION_SERIAL, error);
      return;
    }
    switch (message.type) {
      case "HELLO":
        this.#hello(session, message.serial, message.value as HelloRequest);
        return;
      case "AUTH":
        this.#auth(session, message.serial, message.value as AuthRequest);
        return;
      case "RPC-REQ":
        if (
          !session.identified &&
          !this.#identify(session, message.value.client, message.serial, false)
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
        if (!session.identified && !this.#identify(session, undefined, message.serial, false)) {
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

  /**
   * Whether a message other than `HELLO` and `AUTH` may be handled: not while
   * the claimed client still owes the proof of its secret, nor on a slot kept
   * for admins before the admin token is proven. Refuses and closes otherwise.
   */
  #mayProceed(session: Session, message: Message): boolean {
    if (session.awaitingProof) {
      const name = session.awaitingProof.name;
      return this.#refuseSession(
        session,
        message.serial,
        ErrorKind.Unauthorized,
        `Client ${name} must prove its secret with AUTH before ${message.type}`,
        "secret",
        name,
      );
    }
    if (session.reserved !== undefined && !session.admin) {
      return this.#refuseReserved(session, message.serial, message.type);
    }
    return true;
  }

  /** Refuses a connection in a slot kept for admins that did not come to prove the admin token. */
  #refuseReserved(session: Session, serial: number, what: string): false {
    this.#reserved.delete(session);
    this.stats.refused++;
    session.refused = true;
    if (this.#refusals.refused(session.remoteIp, "slot kept for admins")) {
      this.#logger.warn(
        "refused",
        `connection from ${session.remote} refused: ${session.reserved} (${what} in a slot kept for admins)`,
        { remote: session.remote, reason: session.reserved },
      );
    }
    sendException(
      session.channel,
      serial,
      new RpcError(
        ErrorKind.Unavailable,
        `Connection refused: ${session.reserved}; the slots kept for admins need the admin token proven with AUTH first`,
      ),
    );
    void session.channel.end();
    return false;
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
    if (session.identified || session.nonce !== undefined) {
      session.channel.send(exceptionMessage(
        serial,
        new RpcError(ErrorKind.MalformedFrame, "HELLO may be sent only once, first"),
      ));
      return;
    }
    if (session.reserved !== undefined && hello.admin !== true) {
      this.#refuseReserved(session, serial, "a HELLO without admin");
      return;
    }
    const claimed = typeof hello.client === "string" ? hello.client : undefined;
    session.claimed = claimed ?? "";
    session.nonce = newNonce();
    if (!this.#identify(session, claimed, serial, true)) return;
    session.channel.send({
      type: "HELLO",
      serial,
      value: {
        version: Math.max(...common),
        server: this.name,
        software: `rpc/${VERSION}`,
        nonce: session.nonce,
        ...(session.awaitingProof ? { "auth-required": true } : {}),
      },
    });
  }

  /**
   * `AUTH`: the client proves its secret and/or the admin token over the
   * nonce of this server's `HELLO` (see `core/wire/auth.ts`). A wrong or missing
   * proof is refused, logged as unauthorized, and the connection closed.
   */
  #auth(session: Session, serial: number, request: AuthRequest): void {
    if (session.nonce === undefined) {
      sendException(
        session.channel,
        serial,
        new RpcError(ErrorKind.MalformedFrame, "AUTH must follow the server's HELLO reply"),
      );
      return;
    }
    if (session.authenticated) {
      sendException(
        session.channel,
        serial,
        new RpcError(ErrorKind.MalformedFrame, "AUTH may be sent only once"),
      );
      return;
    }
    session.authenticated = true;
    const clientNonce = request.nonce;
    if (
      typeof clientNonce !== "string" || clientNonce.length < NONCE_CHARS.min ||
      clientNonce.length > NONCE_CHARS.max
    ) {
      return void this.#refuseSession(
        session,
        serial,
        ErrorKind.Unauthorized,
        `AUTH needs a nonce of ${NONCE_CHARS.min} to ${NONCE_CHARS.max} characters`,
        "nonce",
      );
    }
    const proves = (role: ProofRole, proof: unknown, hashHex: string) =>
      proofMatches(proof, proofKeyFromHash(hashHex), {
        role,
        client: session.claimed,
        server: this.name,
        serverNonce: session.nonce!,
        clientNonce,
      });
    const owed = session.awaitingProof;
    if (owed) {
      if (!proves("client", request.proof, owed.secretHash!)) {
        return void this.#refuseSession(
          session,
          serial,
          ErrorKind.Unauthorized,
          request.proof === undefined
            ? `Client ${owed.name} must present its secret`
            : `Wrong secret for client ${owed.name}`,
          "secret",
          owed.name,
        );
      }
      session.awaitingProof = undefined;
      session.client = owed.name;
      this.#logConnected(session);
    }
    if (request["admin-proof"] !== undefined) {
      const auth = this.#options.adminAuth ?? {};
      if (!auth.insecure) {
        if (!auth.adminTokenHash) {
          return void this.#refuseSession(
            session,
            serial,
            ErrorKind.Unauthorized,
            `This server accepts no admin requests: it was started without an admin token${
              auth.tokenSource ? ` (${auth.tokenSource})` : ""
            }`,
            "admin",
          );
        }
        if (!proves("admin", request["admin-proof"], auth.adminTokenHash)) {
          return void this.#refuseSession(
            session,
            serial,
            ErrorKind.Unauthorized,
            "Wrong or missing admin token",
            "admin",
          );
        }
      }
      session.admin = true;
      this.#logger.info(
        "admin",
        `${describe(session)} proved the admin token${
          session.reserved === undefined ? "" : " in a slot kept for admins"
        }`,
        { remote: session.remote, client: session.client },
      );
    }
    session.channel.send({
      type: "AUTH",
      serial,
      value: { client: session.client ?? null, admin: session.admin },
    });
  }

  /** Refuses a connection's claim: logged and audited as unauthorized, answered, closed. Returns false. */
  #refuseSession(
    session: Session,
    serial: number,
    kind: ErrorKind,
    message: string,
    reason: string,
    client?: string,
  ): false {
    this.stats.refused++;
    session.refused = true;
    const fields = { remote: session.remote, client: client ?? session.client, reason };
    // Grouped by a name from the client table, never one the client made up.
    const who = client ?? session.client;
    const group = who !== undefined && this.#clients.has(who) ? `${reason} ${who}` : reason;
    if (this.#refusals.refused(session.remoteIp, group, true)) {
      this.#logger.warn("unauthorized", `${session.remote}: ${message}`, fields);
      this.#audit?.warn("unauthorized", message, fields);
    }
    sendException(session.channel, serial, new RpcError(kind, message));
    void session.channel.end();
    return false;
  }

  #logConnected(session: Session): void {
    if (session.client === undefined && this.#refusals.quiet(session.remoteIp)) return;
    this.#logger.info("client", `${describe(session)} connected`, {
      remote: session.remote,
      client: session.client,
    });
  }

  /**
   * Decides who is on a connection. A verified client certificate names the
   * client outright. Otherwise the connection's claim is checked: it must
   * come from the IP init.yaml gives that client, and a client with a secret
   * must prove it with `AUTH` (`viaHello`), which a connection without
   * `HELLO` cannot. With no claim, the connection is the one client (without
   * a secret) whose IP it comes from, or anonymous. A refused claim is logged
   * as unauthorized and the connection closed.
   */
  #identify(
    session: Session,
    claimed: string | undefined,
    serial: number,
    viaHello: boolean,
  ): boolean {
    session.identified = true;
    const certified = session.conn.peerName;
    const refuse = (kind: ErrorKind, message: string, reason: string) =>
      this.#refuseSession(session, serial, kind, message, reason, claimed ?? certified);
    let name = claimed;
    if (certified !== undefined) {
      if (claimed !== undefined && claimed !== certified) {
        return refuse(
          ErrorKind.Unauthorized,
          `Client certificate names ${certified}, not ${claimed}`,
          "certificate",
        );
      }
      name = certified;
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
      if (known?.secretHash && certified === undefined) {
        if (!viaHello) {
          return refuse(
            ErrorKind.Unauthorized,
            `Client ${name} must prove its secret: send HELLO, then AUTH`,
            "secret",
          );
        }
        session.awaitingProof = known;
        return true;
      }
      session.client = name;
    } else {
      const byAddress = [...this.#clients.values()].filter((client) =>
        client.ip !== undefined && !client.secretHash && normalizeIp(client.ip) === session.remoteIp
      );
      if (byAddress.length === 1) session.client = byAddress[0].name;
    }
    this.#logConnected(session);
    return true;
  }

  async #call(session: Session, serial: number, request: CallRequest): Promise<void> {
    const started = performance.now();
    const controller = new CallController();
    // #handle refuses a serial already in flight, so this entry is the call's own.
    session.inflight.set(serial, controller);
    session.calls++;
    /** Whether the call holds a place among the connection's running calls. */
    let running = false;
    const registry = this.#registry;
    // The argument types, once known: resolved, or declared by the request.
    let signature = request["argument-types"]?.join(", ");
    let outcome = "ok";
    // A refusal repeated by the same peer is counted rather than logged and audited each time.
    let recorded = true;
    try {
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
      if (hasDeferredArguments(request)) {
        // Integers beyond 2^53 are read exactly only for a call that may go ahead.
        registry.checkTarget(session.client, request);
        exactArguments(request);
      }
      const { overload, args } = registry.resolve(session.client, request);
      signature = formatTypes(overload.signature.args);
      const spec = overload.procedure.spec;
      // Backpressure: while the client is not reading its replies, the call waits its turn.
      const turn = session.replies.acquire(controller.signal);
      if (turn) await turn;
      running = true;
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
      // The service exists (it is checked first), so its name is not one the client made up.
      recorded = !unauthorized ||
        this.#refusals.refused(session.remoteIp, `not a tenant of ${request.service}`, true);
      if (recorded) {
        this.#logger.log(
          unauthorized ? "warn" : "info",
          unauthorized ? "unauthorized" : "exception",
          `${describe(session)} ${request.service}.${request.rpc}${
            signature === undefined ? "" : `(${clip(signature, 200)})`
          } ${rpcError.kind}: ${clip(rpcError.message)}`,
          {
            remote: session.remote,
            client: session.client,
            service: request.service,
            rpc: request.rpc,
            kind: rpcError.kind,
            error: clip(rpcError.message),
          },
        );
      }
    } finally {
      if (running) session.replies.release();
      session.inflight.delete(serial);
      // The signal is aborted only when the call was cut short (time limit, RPC-CANCEL, the
      // connection closing): a finished procedure has settled, and runners drop their
      // listeners when it does, so aborting here would only build an event nobody hears.
      if (session.inflight.size === 0) session.idle?.resolve();
      this.#observer?.called?.(request.service, request.rpc, outcome, performance.now() - started);
      if (recorded) {
        this.#audit?.info("call", outcome, {
          client: session.client,
          remote: session.remote,
          service: request.service,
          rpc: request.rpc,
          signature: signature === undefined ? null : clip(signature, 200),
          outcome,
          ms: performance.now() - started,
        });
      }
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
      // Grouped by op when it is a plain name: any other op text is the client's own making.
      const op = /^[a-z-]{1,20}$/.test(request.op) ? request.op : "(other op)";
      if (
        rpcError.kind === ErrorKind.Unauthorized &&
        this.#refusals.refused(session.remoteIp, `admin ${op} without the token`, true)
      ) {
        this.#audit?.warn("admin-refused", rpcError.message, {
          op: request.op,
          by: session.remote,
          client: session.client ?? null,
        });
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
    this.#refusals.close();
    await this.#logger.flush();
    await this.#audit?.flush();
  }

  /** Stops accepting new connections; open ones go on. */
  stopAccepting(): void {
    this.#accepting = false;
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

/** Refused connections that may be told why at once; more are closed without a word. */
const MAX_REFUSING = 64;

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

export { formatAddress };

/**
 * What limits per address, refusal logs and IP checks key a peer by: its
 * normalized IP over TCP and TLS; `unix:/path` (or `memory:name`) over a
 * unix socket (or in memory), which no IP in init.yaml can equal, so a
 * client whose entry requires an IP is refused there.
 */
export function peerKey(address: Address): string {
  return address.path === undefined ? normalizeIp(address.hostname) : formatAddress(address);
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
