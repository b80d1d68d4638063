/**
 * Keeps a flood of refusals from flooding the logs. A client refused at full
 * speed (a wrong claim, a missing secret, a service it is no tenant of) used
 * to write a log line, an audit record, and a connection and disconnection
 * line per attempt: hundreds of megabytes a minute.
 *
 * Refusals are grouped by peer (its IP address) and reason. The first of a
 * group is written as it happens; the ones that follow are counted, and
 * every interval one summary per group is written instead ("127.0.0.1:
 * refused 12,345 more times in the last 10 s (address c3)"), to the log and,
 * for refusals that are audited, to the audit log. While a peer's refusals
 * are being counted, its connection attempts are counted too, and the server
 * leaves out the identification and disconnection lines of its anonymous or
 * refused connections; named clients and calls are still logged. A group that sees no
 * refusal for a whole interval is forgotten, so the next one is written out
 * again.
 *
 * At most `maxGroups` groups are tracked; refusals beyond them are counted
 * together, so an attacker with many addresses gets a bounded log too.
 *
 * @module
 */

import type { Logger } from "../log.ts";

/** Options of {@linkcode RefusalLog}. */
export interface RefusalLogOptions {
  logger: Logger;
  /** Receives the summaries of audited refusals. */
  audit?: Logger;
  /** How often counted refusals are summarised, in ms; 0 writes every refusal. Default 10 000. */
  intervalMs?: number;
  /** Groups (peer and reason) tracked at once. Default 1000. */
  maxGroups?: number;
  /** The clock, in ms (`performance.now()`); for tests. */
  now?: () => number;
}

/** The default of {@linkcode RefusalLogOptions.intervalMs}. */
export const DEFAULT_REFUSAL_SUMMARY_MS = 10_000;

interface Group {
  peer: string;
  reason: string;
  /** Whether the refusals of this group are audited, so their summary is too. */
  audited: boolean;
  /** Refusals counted since the last summary. */
  count: number;
  lastAt: number;
}

interface QuietPeer {
  /** Its connection lines are counted, not written, until then. */
  until: number;
  /** Connection attempts counted since the last summary. */
  connections: number;
}

/** The group of refusals beyond `maxGroups`. */
const OVERFLOW = "\u0000overflow";

/** Counts repeated refusals and writes them as periodic summaries; see the module documentation. */
export class RefusalLog {
  readonly intervalMs: number;
  #logger: Logger;
  #audit: Logger | undefined;
  #maxGroups: number;
  #now: () => number;
  #groups = new Map<string, Group>();
  #quiet = new Map<string, QuietPeer>();
  #since: number;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(options: RefusalLogOptions) {
    this.#logger = options.logger;
    this.#audit = options.audit;
    this.intervalMs = options.intervalMs ?? DEFAULT_REFUSAL_SUMMARY_MS;
    this.#maxGroups = options.maxGroups ?? 1000;
    this.#now = options.now ?? (() => performance.now());
    this.#since = this.#now();
  }

  /**
   * Reports a refusal of `peer` for `reason` (a short label that names no
   * text a client chose freely, such as `address c3`). Returns true when the
   * caller should write its records (the log line, and the audit record when
   * `audited`): for the first refusal of a group; false when it was counted.
   */
  refused(peer: string, reason: string, audited = false): boolean {
    if (this.intervalMs <= 0) return true;
    const now = this.#now();
    let key = `${peer}\u0000${reason}`;
    let group = this.#groups.get(key);
    if (!group && this.#groups.size >= this.#maxGroups) {
      key = OVERFLOW;
      group = this.#groups.get(key);
      if (!group) {
        group = { peer: "other peers", reason: "various", audited, count: 0, lastAt: now };
        this.#groups.set(key, group);
      }
    }
    if (!group) {
      this.#groups.set(key, { peer, reason, audited, count: 0, lastAt: now });
      this.#start();
      return true;
    }
    group.count++;
    group.lastAt = now;
    group.audited ||= audited;
    if (key !== OVERFLOW) {
      const quiet = this.#quiet.get(peer);
      if (quiet) quiet.until = now + this.intervalMs;
      else this.#quiet.set(peer, { until: now + this.intervalMs, connections: 0 });
    }
    this.#start();
    return false;
  }

  /**
   * Whether `peer` is being refused repeatedly, so that the lines of its
   * connections are not written one by one. With `count`, the caller is about
   * to write a connection attempt, which is counted for the summary instead.
   */
  quiet(peer: string, count = false): boolean {
    const quiet = this.#quiet.get(peer);
    if (!quiet || quiet.until <= this.#now()) return false;
    if (count) quiet.connections++;
    return true;
  }

  /** Writes a summary of every group counted since the last one, and forgets idle groups. */
  flush(): void {
    const now = this.#now();
    const elapsed = formatSeconds(now - this.#since);
    this.#since = now;
    for (const [key, group] of this.#groups) {
      if (group.count > 0) {
        const msg = `${group.peer}: refused ${
          group.count.toLocaleString("en-US")
        } more times in the last ${elapsed} (${group.reason})`;
        const fields = {
          remote: group.peer,
          reason: group.reason,
          count: group.count,
          intervalMs: this.intervalMs,
        };
        this.#logger.warn("refused-repeatedly", msg, fields);
        if (group.audited) this.#audit?.warn("refused-repeatedly", msg, fields);
        group.count = 0;
      }
      if (now - group.lastAt >= this.intervalMs) this.#groups.delete(key);
    }
    for (const [peer, quiet] of this.#quiet) {
      if (quiet.connections > 0) {
        this.#logger.info(
          "connect",
          `${peer}: ${
            quiet.connections.toLocaleString("en-US")
          } more connection attempts in the last ${elapsed}, not logged one by one while it is refused repeatedly`,
          { remote: peer, count: quiet.connections, intervalMs: this.intervalMs },
        );
        quiet.connections = 0;
      }
      if (quiet.until <= now) this.#quiet.delete(peer);
    }
    if (this.#groups.size === 0 && this.#quiet.size === 0) this.#stop();
  }

  /** Writes what is counted and stops the timer. */
  close(): void {
    this.flush();
    this.#stop();
  }

  #start(): void {
    if (this.#timer !== undefined) return;
    this.#since = this.#now();
    const timer = setInterval(() => this.flush(), this.intervalMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/** `10 s`, `2.5 s`: whole seconds from ten up, tenths below. */
function formatSeconds(ms: number): string {
  const seconds = ms / 1000;
  return `${seconds >= 10 ? Math.round(seconds) : seconds.toFixed(1)} s`;
}
