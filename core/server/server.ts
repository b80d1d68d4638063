/**
 * The RPC server: takes connections from a listener (TCP, TLS, unix, in
 * memory) or one at a time, and composes the stages that serve them, one
 * module each in `core/server/`:
 *
 * ```text
 * accept → gate.ts (connection limits) → dispatch.ts (messages)
 *   → identify.ts (HELLO, AUTH, certificate, address)
 *   → pipeline.ts: admit.ts → authorize.ts → resolve.ts → run.ts → record.ts
 * ```
 *
 * beside them admin_route.ts (`ADMIN`), sweep.ts (timeouts), drain.ts
 * (graceful shutdown), health.ts and listen_events.ts. Calls on one
 * connection run concurrently and are answered by serial as they finish.
 * Nothing a client sends ends the server: every failure becomes an `RPC-EX`
 * for that caller, or closes that one connection. See docs/design.md, "The
 * server's call pipeline".
 *
 * @module
 */

import type { AdminAuth } from "./admin.ts";
import { ReplyBudget } from "./backpressure.ts";
import { CourseAwareChannel } from "../wire/course_channel.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import { CallAdmission } from "./admit.ts";
import { type AdminHandler, AdminRoute } from "./admin_route.ts";
import { Dispatcher } from "./dispatch.ts";
import { drain } from "./drain.ts";
import { SessionSweeper } from "./sweep.ts";
import { callsInFlight, type Health, health } from "./health.ts";
import { ConnectionGate } from "./gate.ts";
import { Identification } from "./identify.ts";
import { RateLimiter, resolveLimits, type ServerLimits } from "./limits.ts";
import { type Logger, silentLogger } from "../log.ts";
import { RefusalLog } from "./refusals.ts";
import { CallRecorder, type ServerObserver } from "./record.ts";
import { CallRunner } from "./run.ts";
import { CallPipeline } from "./pipeline.ts";
import type { Registry } from "./registry.ts";
import {
  type Address,
  type Connection,
  formatAddress,
  type Listener,
  listenTcp,
  listenTls,
  listenUnix,
  type TlsServerOptions,
} from "../transport/mod.ts";
import { VERSION } from "../version.ts";
import { listenEvents } from "./listen_events.ts";
import {
  describe,
  type KnownClient,
  openSession,
  peerKey,
  type ServerStats,
  type Session,
  sessionChannelOptions,
  type SessionInfo,
} from "./session.ts";

export { normalizeIp, peerKey } from "./session.ts";
export type { KnownClient, ServerStats, SessionInfo } from "./session.ts";
export type { ServerObserver } from "./record.ts";
export type { Health } from "./health.ts";
export type { AdminHandler } from "./admin_route.ts";

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
 * A running RPC server.
 *
 * @example A server with nothing to serve yet, on a free port of 127.0.0.1
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect } from "../client/connect.ts";
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
  #options: ServerOptions;
  #logger: Logger;
  #limits: ServerLimits;
  #rates: RateLimiter;
  #replies: ReplyBudget;
  #audit: Logger | undefined;
  #refusals: RefusalLog;
  #pipeline: CallPipeline;
  #recorder: CallRecorder;
  #listener: Listener | undefined;
  #sessions = new Set<Session>();
  #gate: ConnectionGate;
  #identification: Identification;
  #nextSessionId = 1;
  #acceptLoop: Promise<void> | undefined;
  #accepting = true;
  #observer: ServerObserver | undefined;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #sweeper: SessionSweeper;
  #dispatcher: Dispatcher;
  #admin: AdminRoute;

  constructor(options: ServerOptions) {
    this.#options = options;
    this.name = options.name ?? "rpc";
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
    this.stats = {
      connections: 0,
      refused: 0,
      callsServed: 0,
      callsFailed: 0,
      startedAt: new Date(),
    };
    this.#gate = new ConnectionGate({
      limits: this.#limits,
      logger: this.#logger,
      refusals: this.#refusals,
      stats: this.stats,
      sessions: this.#sessions,
    });
    this.#recorder = new CallRecorder({
      logger: this.#logger,
      ...(options.audit ? { audit: options.audit } : {}),
      refusals: this.#refusals,
      stats: this.stats,
    });
    this.#pipeline = new CallPipeline({
      registry: options.registry,
      admission: new CallAdmission(this.#limits, this.#rates),
      runner: new CallRunner(options.callTimeoutMs ?? 60_000),
      recorder: this.#recorder,
    });
    this.#admin = new AdminRoute({
      health: () => this.health(),
      ...(options.admin ? { handler: options.admin } : {}),
      logger: this.#logger,
      ...(options.audit ? { audit: options.audit } : {}),
      refusals: this.#refusals,
    });
    this.#identification = new Identification({
      name: this.name,
      clients: options.clients ?? new Map(),
      ...(options.adminAuth ? { adminAuth: options.adminAuth } : {}),
      logger: this.#logger,
      ...(options.audit ? { audit: options.audit } : {}),
      refusals: this.#refusals,
      stats: this.stats,
      gate: this.#gate,
    });
    this.#dispatcher = new Dispatcher({
      logger: this.#logger,
      identification: this.#identification,
      pipeline: this.#pipeline,
      admin: this.#admin,
    });
    this.#sweeper = new SessionSweeper({
      limits: this.#limits,
      logger: this.#logger,
      refusals: this.#refusals,
      stats: this.stats,
      rates: this.#rates,
      sessions: this.#sessions,
    });
  }

  /** What the server serves now. */
  get registry(): Registry {
    return this.#pipeline.registry;
  }

  /**
   * Replaces what the server serves. Calls already resolved keep running on
   * the old registry's procedures; calls resolved afterwards use the new one.
   */
  set registry(registry: Registry) {
    this.#pipeline.registry = registry;
  }

  /** Sets the handler of `ADMIN` messages. */
  set admin(handler: AdminHandler | undefined) {
    this.#admin.handler = handler;
  }

  /** Sets who is told about connections and calls (metrics). */
  set observer(observer: ServerObserver | undefined) {
    this.#observer = observer;
    this.#recorder.observer = observer;
  }

  /** Replaces the table of known clients. */
  set clients(clients: ReadonlyMap<string, KnownClient>) {
    this.#identification.clients = clients;
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
    const events = listenEvents({
      logger: this.#logger,
      ...(this.#audit ? { audit: this.#audit } : {}),
      refusals: this.#refusals,
      stats: this.stats,
    });
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
    if (this.#sweepTimer !== undefined) return;
    const timer = setInterval(() => this.#sweeper.sweep(), 1000);
    Deno.unrefTimer(timer);
    this.#sweepTimer = timer;
  }

  async #accept(listener: Listener): Promise<void> {
    for (;;) {
      const connection = await listener.accept();
      if (!connection) return;
      if (this.#accepting) this.#serve(connection);
      else connection.close();
    }
  }

  #serve(accepted: Connection): boolean {
    const conn = this.#observer?.accepted?.(accepted) ?? accepted;
    const remote = formatAddress(conn.remote);
    const remoteIp = peerKey(conn.remote);
    if (!this.#refusals.quiet(remoteIp, true)) {
      this.#logger.info("connect", `connection attempt from ${remote}`, { remote });
    }
    const { over: refusal, admitted } = this.#gate.check(remoteIp);
    if (!admitted) {
      this.#gate.refuse(conn, remote, refusal!);
      return false;
    }
    const replies = this.#replies.open(() => channel.resumeReading());
    // Framed, or the course's one-shot JSON form when the first byte is "{".
    const channel = new CourseAwareChannel(
      conn,
      sessionChannelOptions(this.#limits, replies, conn),
    );
    const session = openSession({
      id: this.#nextSessionId++,
      conn,
      channel,
      replies,
      reserved: refusal,
    });
    this.#sessions.add(session);
    this.#gate.opened(session);
    this.stats.connections++;
    this.#dispatcher.read(session).finally(() => {
      this.#sessions.delete(session);
      this.#gate.closed(session);
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
    clearInterval(this.#sweepTimer);
  }

  /**
   * Shuts down gracefully: stops accepting at once (new connections are
   * refused), closes connections that have no call in flight, lets the calls
   * in flight finish for up to `graceMs` (closing each connection once its
   * last call is answered), then closes whatever is left. Aborting `signal`
   * ends the grace period early. Resolves to the number of calls that were
   * still running when the grace period ended (0 when all finished).
   */
  drain(graceMs: number, signal?: AbortSignal): Promise<number> {
    return drain(
      {
        sessions: this.#sessions,
        logger: this.#logger,
        stopAccepting: () => this.stopAccepting(),
        close: () => this.close(),
      },
      graceMs,
      signal,
    );
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
    return health(this.name, this.stats, this.#sessions);
  }

  /** Calls in flight across all connections. */
  get inflight(): number {
    return callsInFlight(this.#sessions);
  }
}

export { formatAddress };
