/**
 * The connection limits, the first thing a new connection meets: at most
 * `maxConnections` open and `maxConnectionsPerIp` from one peer, with
 * `adminReserve` slots beyond them for connections that prove the admin
 * token. A connection over the limits is told why and closed, or, while a
 * slot kept for admins is free, admitted on condition that it proves the
 * admin token before anything else.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { MessageChannel } from "../wire/channel.ts";
import { CONNECTION_SERIAL, exceptionMessage } from "../wire/message.ts";
import type { Connection } from "../transport/mod.ts";
import type { ServerLimits } from "./limits.ts";
import type { RefusalLog } from "./refusals.ts";
import { describe, peerKey, sendException, type ServerStats, type Session } from "./session.ts";

/** Refused connections that may be told why at once; more are closed without a word. */
export const MAX_REFUSING = 64;

/** Options of {@linkcode ConnectionGate}. */
export interface ConnectionGateOptions {
  limits: ServerLimits;
  logger: Logger;
  refusals: RefusalLog;
  /** Its `refused` counter counts the connections the gate refuses. */
  stats: ServerStats;
  /** The server's open sessions, which the gate counts. */
  sessions: ReadonlySet<Session>;
}

/** Counts connections per peer and decides who may connect; see the module documentation. */
export class ConnectionGate {
  #limits: ServerLimits;
  #logger: Logger;
  #refusals: RefusalLog;
  #stats: ServerStats;
  #sessions: ReadonlySet<Session>;
  /** Sessions admitted into the slots kept for admins, oldest first. */
  #reserved = new Set<Session>();
  /** Refused connections still being told so (bounded by {@linkcode MAX_REFUSING}). */
  #refusing = 0;
  #perIp = new Map<string, number>();

  constructor(options: ConnectionGateOptions) {
    this.#limits = options.limits;
    this.#logger = options.logger;
    this.#refusals = options.refusals;
    this.#stats = options.stats;
    this.#sessions = options.sessions;
  }

  /**
   * Decides on a new connection from `remoteIp`: `undefined` when it is
   * within the limits, else why it is over them (a string) and whether it
   * may take a slot kept for admins (`admitted`). A connection neither
   * within the limits nor admitted must be {@linkcode refuse}d.
   */
  check(remoteIp: string): { over: string | undefined; admitted: boolean } {
    const over = this.#overLimit(remoteIp);
    return { over, admitted: over === undefined || this.#admitToReserve() };
  }

  /** Counts an admitted session; `session.reserved` says whether it took a slot kept for admins. */
  opened(session: Session): void {
    const { remoteIp, remote, reserved } = session;
    this.#perIp.set(remoteIp, (this.#perIp.get(remoteIp) ?? 0) + 1);
    if (reserved === undefined) return;
    this.#reserved.add(session);
    if (!this.#refusals.quiet(remoteIp)) {
      this.#logger.warn(
        "refused",
        `connection from ${remote} takes a slot kept for admins (${reserved}): it must prove the admin token`,
        { remote, reason: reserved },
      );
    }
  }

  /** Stops counting a session that ended. */
  closed(session: Session): void {
    this.#reserved.delete(session);
    const left = (this.#perIp.get(session.remoteIp) ?? 1) - 1;
    if (left > 0) this.#perIp.set(session.remoteIp, left);
    else this.#perIp.delete(session.remoteIp);
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
  refuse(conn: Connection, remote: string, refusal: string): void {
    this.#stats.refused++;
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

  /**
   * Refuses a connection in a slot kept for admins that did not come to
   * prove the admin token (`what` is what it sent instead). Returns false.
   */
  refuseReserved(session: Session, serial: number, what: string): false {
    this.#reserved.delete(session);
    this.#stats.refused++;
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
}
