/**
 * The record stage of the call pipeline: what is kept of each call once it
 * is answered. The server's counters (`callsServed`, `callsFailed`), one log
 * line (`call ... ok 1.23 ms`, or the exception with its kind), one audit
 * record, and the metrics hook ({@linkcode ServerObserver.called}). A caller
 * refused as no tenant of a service, again and again, is summarised by the
 * {@linkcode RefusalLog} instead of logged and audited each time.
 *
 * @module
 */

import { ErrorKind, type RpcError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { CallRequest } from "../wire/message.ts";
import { clip } from "../wire/names.ts";
import type { Connection } from "../transport/mod.ts";
import type { RefusalLog } from "./refusals.ts";
import { describe, type ServerStats, type Session } from "./session.ts";

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

/** Options of {@linkcode CallRecorder}. */
export interface CallRecorderOptions {
  logger: Logger;
  /** Receives one record per call. */
  audit?: Logger;
  refusals: RefusalLog;
  /** Counts calls served and failed. */
  stats: ServerStats;
}

/** Records calls; see the module documentation. */
export class CallRecorder {
  /** Told about every call that ends (metrics). */
  observer: ServerObserver | undefined;
  #logger: Logger;
  #audit: Logger | undefined;
  #refusals: RefusalLog;
  #stats: ServerStats;

  constructor(options: CallRecorderOptions) {
    this.#logger = options.logger;
    this.#audit = options.audit;
    this.#refusals = options.refusals;
    this.#stats = options.stats;
  }

  /** Records a call answered with its result; `started` is its performance.now() at arrival. */
  served(session: Session, request: CallRequest, signature: string, started: number): void {
    this.#stats.callsServed++;
    if (!this.#logger.enabled("info")) return;
    const ms = performance.now() - started;
    this.#logger.info(
      "call",
      `${describe(session)} ${request.service}.${request.rpc}(${signature}) ok ${ms.toFixed(2)} ms`,
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

  /**
   * Records a call answered with `error`. Returns whether it was written
   * out, which {@linkcode ended} needs: false when it is one more refusal
   * of a peer that is no tenant, counted for the next summary instead.
   */
  failed(
    session: Session,
    request: CallRequest,
    signature: string | undefined,
    error: RpcError,
  ): boolean {
    this.#stats.callsFailed++;
    const unauthorized = error.kind === ErrorKind.ClientNotRegistered;
    // The service exists (it is checked first), so its name is not one the client made up.
    if (
      unauthorized &&
      !this.#refusals.refused(session.remoteIp, `not a tenant of ${request.service}`, true)
    ) {
      return false;
    }
    this.#logger.log(
      unauthorized ? "warn" : "info",
      unauthorized ? "unauthorized" : "exception",
      `${describe(session)} ${request.service}.${request.rpc}${
        signature === undefined ? "" : `(${clip(signature, 200)})`
      } ${error.kind}: ${clip(error.message)}`,
      {
        remote: session.remote,
        client: session.client,
        service: request.service,
        rpc: request.rpc,
        kind: error.kind,
        error: clip(error.message),
      },
    );
    return true;
  }

  /**
   * Records the end of a call, whatever its outcome (`ok` or an exception
   * kind): the metrics hook always, the audit record when `recorded`.
   */
  ended(
    session: Session,
    request: CallRequest,
    signature: string | undefined,
    outcome: string,
    started: number,
    recorded: boolean,
  ): void {
    this.observer?.called?.(request.service, request.rpc, outcome, performance.now() - started);
    if (!recorded) return;
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
