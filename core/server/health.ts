/**
 * The server's health: what `rpc ping` and the public `health` admin op
 * show (version, uptime, connections and call counts), computed from the
 * counters and the open sessions. Anyone may ask.
 *
 * @module
 */

import { VERSION } from "../version.ts";
import type { ServerStats, Session } from "./session.ts";

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

/** Calls in flight across `sessions`. */
export function callsInFlight(sessions: Iterable<Pick<Session, "inflight">>): number {
  let count = 0;
  for (const session of sessions) count += session.inflight.size;
  return count;
}

/** The health of server `name`, from its counters and its open sessions. */
export function health(
  name: string,
  stats: ServerStats,
  sessions: ReadonlySet<Pick<Session, "inflight">>,
): Health {
  return {
    server: name,
    version: VERSION,
    uptimeMs: Date.now() - stats.startedAt.getTime(),
    connections: sessions.size,
    connectionsAccepted: stats.connections,
    connectionsRefused: stats.refused,
    callsServed: stats.callsServed,
    callsFailed: stats.callsFailed,
    callsInFlight: callsInFlight(sessions),
  };
}
