/**
 * The server's housekeeping, once a second: closes connections that idle
 * too long, send a frame too slowly, stop reading their replies, or do not
 * finish their handshake (TLS, first message, the proof of a secret or of
 * the admin token) in time, and trims the rate limiter's state. A
 * connection closed for an unfinished handshake counts as refused.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { RateLimiter, ServerLimits } from "./limits.ts";
import type { RefusalLog } from "./refusals.ts";
import { describe, type ServerStats, type Session } from "./session.ts";

/** Options of {@linkcode SessionSweeper}. */
export interface SessionSweeperOptions {
  limits: ServerLimits;
  logger: Logger;
  refusals: RefusalLog;
  /** Its `refused` counter counts connections closed for an unfinished handshake. */
  stats: ServerStats;
  rates: RateLimiter;
  /** The server's open sessions. */
  sessions: ReadonlySet<Session>;
}

/** Sweeps sessions; see the module documentation. */
export class SessionSweeper {
  #limits: ServerLimits;
  #logger: Logger;
  #refusals: RefusalLog;
  #stats: ServerStats;
  #rates: RateLimiter;
  #sessions: ReadonlySet<Session>;

  constructor(options: SessionSweeperOptions) {
    this.#limits = options.limits;
    this.#logger = options.logger;
    this.#refusals = options.refusals;
    this.#stats = options.stats;
    this.#rates = options.rates;
    this.#sessions = options.sessions;
  }

  /**
   * Closes connections that idle too long, send a frame too slowly, or do not
   * finish their handshake (TLS, first message, proofs) in time; trims
   * rate-limit state.
   */
  sweep(now: number = performance.now()): void {
    const { idleTimeoutMs, frameTimeoutMs, handshakeTimeoutMs } = this.#limits;
    for (const session of this.#sessions) {
      const partialSince = session.channel.partialSince;
      let reason: string | undefined;
      if (handshakeTimeoutMs > 0 && now - session.acceptedAt > handshakeTimeoutMs) {
        reason = this.#unfinishedHandshake(session);
      }
      if (reason) {
        // Counted as a refusal: the connection never became a working one.
        this.#stats.refused++;
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
}
