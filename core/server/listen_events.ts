/**
 * What the server logs of its listener: TLS connections the listener
 * rejected (a failed handshake or client certificate), logged and audited
 * as unauthorized and counted refused; accept failures (an exhausted
 * process out of file descriptors), logged at the 1st, 2nd, 4th, 8th...
 * failure in a row so they cannot flood the log; and accepting again.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { formatAddress, type ListenEvents } from "../transport/mod.ts";
import type { RefusalLog } from "./refusals.ts";
import { peerKey, type ServerStats } from "./session.ts";

/** Where {@linkcode listenEvents} reports. */
export interface ListenLog {
  logger: Logger;
  /** Receives a record per TLS connection rejected. */
  audit?: Logger;
  refusals: RefusalLog;
  /** Its `refused` counter counts TLS connections rejected. */
  stats: ServerStats;
}

/** The events a server passes to its listener; see the module documentation. */
export function listenEvents(log: ListenLog): ListenEvents {
  const { logger, audit, refusals, stats } = log;
  return {
    onRejected: (remote, reason) => {
      stats.refused++;
      const ip = peerKey(remote);
      if (!refusals.refused(ip, `TLS: ${reason.slice(0, 200)}`, true)) return;
      const fields = { remote: formatAddress(remote), reason };
      const message = `TLS connection from ${formatAddress(remote)} refused: ${reason}`;
      logger.warn("unauthorized", message, fields);
      audit?.warn("unauthorized", message, fields);
    },
    onAcceptError: (error, failures, pauseMs) => {
      // Logged at failures 1, 2, 4, 8, ...: an exhausted process does not flood its log.
      if ((failures & (failures - 1)) !== 0) return;
      logger.error(
        "accept",
        `Cannot accept connections: ${error.message} (${failures} failures in a row); retrying in ${pauseMs} ms`,
        { error: error.message, failures, pauseMs },
      );
    },
    onAcceptRecovered: (failures, ms) => {
      logger.warn(
        "accept",
        `accepting connections again after ${failures} failed accepts over ${Math.round(ms)} ms`,
        { failures, ms },
      );
    },
  };
}
