/**
 * The limits-and-rates stage of the call pipeline: before anything is
 * looked up for a call, it must fit the connection's share of calls in
 * flight, the caller's and the server's rate limits, and the size limits on
 * argument values. A call that does not is answered `Rate Limited` or
 * `Invalid Arguments` with the measured value and the limit.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import type { CallRequest } from "../wire/message.ts";
import { checkValueLimits, type RateLimiter, type ServerLimits } from "./limits.ts";
import type { Session } from "./session.ts";

/** What admission reads of a session: its calls in flight (this one counted) and who it is. */
export type AdmittedSession = Pick<Session, "inflight" | "client" | "remoteIp">;

/** Admits calls; see the module documentation. */
export class CallAdmission {
  #limits: ServerLimits;
  #rates: RateLimiter;

  constructor(limits: ServerLimits, rates: RateLimiter) {
    this.#limits = limits;
    this.#rates = rates;
  }

  /**
   * Admits one call that is not yet among `session.inflight` (a call enters
   * it only once it has to wait, see `pipeline.ts`). A named client is rate
   * limited by its name, an anonymous one by its peer address.
   *
   * @throws {RpcError} `Rate Limited` or `Invalid Arguments`.
   */
  admit(session: AdmittedSession, request: CallRequest): void {
    const { maxCallsPerConnection } = this.#limits;
    if (maxCallsPerConnection > 0 && session.inflight.size >= maxCallsPerConnection) {
      throw new RpcError(
        ErrorKind.RateLimited,
        `Too many calls in flight on this connection (limit ${maxCallsPerConnection})`,
      );
    }
    this.#rates.admit(session.client ?? session.remoteIp);
    checkValueLimits(request.arguments, this.#limits);
  }
}
