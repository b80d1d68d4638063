/**
 * The admin channel: privileged `ADMIN` ops for holders of the server's admin
 * secret, in the spirit of libvirt's virt-admin. `clients` lists who is
 * connected, `disconnect` closes one connection, `log-level` changes what the
 * log keeps, and `stats` reports the server's counters. Every one of them
 * needs the admin token, checked by {@linkcode authorizeAdmin} exactly as
 * installs are; the public ops (`health`, `state`) and installs are handled
 * elsewhere and reached through `next`.
 *
 * @module
 */

import { timingSafeEqual } from "node:crypto";
import { ErrorKind, ErrorReason, RpcError } from "../errors.ts";
import { hashSecret } from "../hash.ts";
import { LOG_LEVELS, type Logger, type LogLevel } from "../log.ts";
import type { AdminRequest } from "../wire/message.ts";
import type { AdminHandler, Health, RpcServer, SessionInfo } from "./server.ts";
import type { ServerLimits } from "./limits.ts";

/** Who may use privileged admin ops. */
export interface AdminAuth {
  /** SHA-256 (hex) of the admin secret; privileged ops are refused without one unless `insecure`. */
  adminTokenHash?: string;
  /** Accept privileged ops from anyone. */
  insecure?: boolean;
  /**
   * How the process that runs the server is given a token, for the message
   * refusing admin requests without one (the command line passes
   * `--admin-token-file or RPC_ADMIN_TOKEN`; core names no flags).
   */
  tokenSource?: string;
}

/** The refusal of admin requests by a server that has no admin token, naming how to give it one. */
export function noAdminTokenMessage(what: string, auth: AdminAuth): string {
  return `This server accepts no ${what}: it was started without an admin token${
    auth.tokenSource ? ` (${auth.tokenSource})` : ""
  }`;
}

/**
 * Authorizes a privileged admin request: the connection proved the admin
 * token with `AUTH` (the way rpc's own tools do it, so the token never
 * travels), or the request carries `token`, the admin secret itself, checked
 * against the server's by hash in constant time. The second way sends the
 * secret as it is and is kept for older clients only.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { authorizeAdmin } from "./admin.ts";
 * import { hashSecret } from "../hash.ts";
 * const server = { adminTokenHash: hashSecret("s3cret") };
 * authorizeAdmin({ op: "stats", token: "s3cret" }, server); // returns: authorized
 * assert.throws(
 *   () => authorizeAdmin({ op: "stats", token: "guess" }, server),
 *   { kind: "Unauthorized" },
 * );
 * ```
 * @throws {RpcError} `Unauthorized` when the token is missing or wrong, or
 * the server has no admin secret at all.
 */
export function authorizeAdmin(
  request: AdminRequest,
  auth: AdminAuth,
  session?: Pick<SessionInfo, "admin">,
): void {
  if (auth.insecure || session?.admin) return;
  const expected = auth.adminTokenHash;
  if (!expected) {
    throw new RpcError(
      ErrorKind.Unauthorized,
      noAdminTokenMessage(`admin ${request.op} requests`, auth),
      { reason: ErrorReason.NoAdminToken },
    );
  }
  const presented = typeof request.token === "string" ? hashSecret(request.token) : "";
  const a = new TextEncoder().encode(presented.padEnd(64, "0"));
  const b = new TextEncoder().encode(expected);
  if (presented === "" || a.length !== b.length || !timingSafeEqual(a, b)) {
    throw new RpcError(ErrorKind.Unauthorized, "Wrong or missing admin token");
  }
}

/** The privileged ops {@linkcode AdminOps} serves. */
export const ADMIN_OPS = ["clients", "disconnect", "log-level", "stats"] as const;

/** One connection, as the `clients` op reports it. */
export interface ClientReport {
  /** The connection's id, for `disconnect`. */
  id: number;
  /** The client's name, or `null` when it is anonymous. */
  client: string | null;
  /** `host:port` the connection comes from. */
  address: string;
  /** ISO 8601. */
  connectedAt: string;
  /** Calls made on this connection so far. */
  calls: number;
}

/** Reply to the `stats` op. */
export interface StatsReport extends Health {
  pid: number;
  startedAt: string;
  logLevel: LogLevel;
  /** Calls made by the clients connected now, by client name (`(anonymous)` for none). */
  callsByClient: Record<string, number>;
  memory: { rssBytes: number; heapUsedBytes: number; heapTotalBytes: number };
  limits: ServerLimits;
}

/** Options of {@linkcode AdminOps}. */
export interface AdminOpsOptions extends AdminAuth {
  server: RpcServer;
  /** The server's log, whose level `log-level` sets. */
  logger: Logger;
  /** Receives one record per privileged op (the server audits refusals). */
  audit?: Logger;
  /** Handles every other op (`state`, `install`). */
  next?: AdminHandler;
}

/** Serves the privileged admin ops; hands every other op to `next`. */
export class AdminOps {
  #options: AdminOpsOptions;

  constructor(options: AdminOpsOptions) {
    this.#options = options;
  }

  /** Handles an `ADMIN` message. */
  handle: AdminHandler = async (request, session) => {
    if (!(ADMIN_OPS as readonly string[]).includes(request.op)) {
      if (this.#options.next) return await this.#options.next(request, session);
      throw new RpcError(ErrorKind.InvalidArguments, `Unknown admin op "${request.op}"`);
    }
    // A refusal is logged and audited by the server, which summarises repeated ones.
    authorizeAdmin(request, this.#options, session);
    return this.#privileged(request, session);
  };

  #privileged(request: AdminRequest, session: SessionInfo): unknown {
    switch (request.op) {
      case "clients":
        return { clients: this.clients() };
      case "disconnect":
        return this.#disconnect(request, session);
      case "log-level":
        return this.#setLogLevel(request, session);
      default:
        return this.stats();
    }
  }

  /** Every connection open now, oldest first. */
  clients(): ClientReport[] {
    return this.#options.server.sessions
      .sort((a, b) => a.id - b.id)
      .map((session) => ({
        id: session.id,
        client: session.client ?? null,
        address: session.remote,
        connectedAt: session.connectedAt.toISOString(),
        calls: session.calls,
      }));
  }

  #disconnect(request: AdminRequest, session: SessionInfo): { disconnected: ClientReport } {
    const id = typeof request.id === "string" ? Number(request.id) : request.id;
    if (typeof id !== "number" || !Number.isInteger(id) || id <= 0) {
      throw new RpcError(
        ErrorKind.InvalidArguments,
        `disconnect needs the id of a connection (see clients), got ${JSON.stringify(request.id)}`,
      );
    }
    if (id === session.id) {
      throw new RpcError(
        ErrorKind.InvalidArguments,
        `Connection ${id} is the one asking; close it from the client instead`,
      );
    }
    const target = this.clients().find((client) => client.id === id);
    if (
      !target || !this.#options.server.disconnect(id, `disconnected by admin ${describe(session)}`)
    ) {
      throw new RpcError(ErrorKind.InvalidArguments, `No connection ${id} is open`);
    }
    this.#options.audit?.info("admin", `disconnect ${id}`, {
      op: "disconnect",
      by: session.remote,
      target,
    });
    return { disconnected: target };
  }

  #setLogLevel(request: AdminRequest, session: SessionInfo): { level: LogLevel; was: LogLevel } {
    const level = request.level;
    if (typeof level !== "string" || !(LOG_LEVELS as readonly string[]).includes(level)) {
      throw new RpcError(
        ErrorKind.InvalidArguments,
        `log-level needs one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(level)}`,
      );
    }
    const { logger } = this.#options;
    const was = logger.level;
    // Recorded at the less severe of the two levels, so that the change itself is always kept.
    logger.level = LOG_LEVELS.indexOf(level as LogLevel) < LOG_LEVELS.indexOf(was)
      ? level as LogLevel
      : was;
    logger.log(logger.level, "admin", `log level ${was} -> ${level}, by ${describe(session)}`, {
      op: "log-level",
      by: session.remote,
      level,
      was,
    });
    logger.level = level as LogLevel;
    this.#options.audit?.info("admin", `log-level ${level}`, {
      op: "log-level",
      by: session.remote,
      level,
      was,
    });
    return { level: level as LogLevel, was };
  }

  /** The server's counters, limits and memory. */
  stats(): StatsReport {
    const { server, logger } = this.#options;
    const callsByClient: Record<string, number> = {};
    for (const session of server.sessions) {
      const name = session.client ?? "(anonymous)";
      callsByClient[name] = (callsByClient[name] ?? 0) + session.calls;
    }
    const memory = Deno.memoryUsage();
    return {
      ...server.health(),
      pid: Deno.pid,
      startedAt: server.stats.startedAt.toISOString(),
      logLevel: logger.level,
      callsByClient,
      memory: {
        rssBytes: memory.rss,
        heapUsedBytes: memory.heapUsed,
        heapTotalBytes: memory.heapTotal,
      },
      limits: { ...server.limits },
    };
  }
}

function describe(session: SessionInfo): string {
  return session.client ? `${session.client}@${session.remote}` : session.remote;
}
