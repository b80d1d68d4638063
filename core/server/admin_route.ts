/**
 * Where an `ADMIN` message goes: the public `health` op is answered here
 * for anyone; every other op goes to the server's admin handler (see
 * {@linkcode AdminOps} in `admin.ts`), and without one is refused. A
 * refusal for want of the admin token is logged and audited as
 * unauthorized, repeated ones summarised by the {@linkcode RefusalLog}.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { AdminRequest } from "../wire/message.ts";
import type { Health } from "./health.ts";
import type { RefusalLog } from "./refusals.ts";
import { describe, sendException, type Session, type SessionInfo } from "./session.ts";

/** Handles an `ADMIN` message; returns the `ADMIN-RES` value. */
export type AdminHandler = (request: AdminRequest, session: SessionInfo) => Promise<unknown>;

/** Options of {@linkcode AdminRoute}. */
export interface AdminRouteOptions {
  /** The server's health now, for the `health` op. */
  health: () => Health;
  /** Handles every other op; without it they are refused. */
  handler?: AdminHandler;
  logger: Logger;
  /** Receives a record per refusal. */
  audit?: Logger;
  refusals: RefusalLog;
}

/** Routes `ADMIN` messages; see the module documentation. */
export class AdminRoute {
  /** Handles every op but `health`; without it they are refused. */
  handler: AdminHandler | undefined;
  #health: () => Health;
  #logger: Logger;
  #audit: Logger | undefined;
  #refusals: RefusalLog;

  constructor(options: AdminRouteOptions) {
    this.handler = options.handler;
    this.#health = options.health;
    this.#logger = options.logger;
    this.#audit = options.audit;
    this.#refusals = options.refusals;
  }

  /** Answers `request` (serial `serial`) on `session` with `ADMIN-RES` or `RPC-EX`. Never rejects. */
  async handle(session: Session, serial: number, request: AdminRequest): Promise<void> {
    const handler = this.handler;
    try {
      if (request.op === "health") {
        session.channel.send({ type: "ADMIN-RES", serial, value: this.#health() });
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
}
