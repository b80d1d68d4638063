/**
 * Graceful shutdown: the server stops accepting at once, closes the
 * connections with no call in flight, lets the calls in flight finish for
 * a grace period (closing each connection once its last call is answered),
 * then closes whatever is left, logging what it abandoned.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { callsInFlight } from "./health.ts";
import type { Session } from "./session.ts";

/** What draining needs of a server. */
export interface Drainable {
  /** Its open sessions. */
  readonly sessions: ReadonlySet<Session>;
  readonly logger: Logger;
  /** Stops accepting new connections. */
  stopAccepting(): void;
  /** Closes every connection and stops. */
  close(): Promise<void>;
}

/**
 * Drains `server` within `graceMs`; aborting `signal` ends the grace period
 * early. Resolves to the number of calls still running when it ended (0
 * when all finished).
 */
export async function drain(
  server: Drainable,
  graceMs: number,
  signal?: AbortSignal,
): Promise<number> {
  const { sessions, logger } = server;
  server.stopAccepting();
  const inflight = callsInFlight(sessions);
  logger.info(
    "shutdown",
    `draining: refusing new connections, ${inflight} calls in flight on ${sessions.size} connections, grace ${graceMs} ms`,
    { inflight, connections: sessions.size, graceMs },
  );
  const deadline = performance.now() + graceMs;
  const ended = new WeakSet<Session>();
  for (;;) {
    for (const session of sessions) {
      if (session.inflight.size > 0 || ended.has(session)) continue;
      // Its replies are all queued: write them, then close.
      ended.add(session);
      void session.channel.end();
    }
    const left = deadline - performance.now();
    if (callsInFlight(sessions) === 0 || left <= 0 || signal?.aborted) break;
    await new Promise((resolve) => setTimeout(resolve, Math.min(20, left)));
  }
  const abandoned = callsInFlight(sessions);
  if (abandoned > 0) {
    logger.warn(
      "shutdown",
      `grace period over: closing ${sessions.size} connections with ${abandoned} calls still running`,
      { abandoned },
    );
  } else {
    logger.info("shutdown", "every call in flight finished", { abandoned });
  }
  await server.close();
  return abandoned;
}
