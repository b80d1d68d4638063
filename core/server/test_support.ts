/**
 * Real parts for the unit tests of the server's stages: a {@linkcode Session}
 * over one end of an in-memory connection, whose other end the test reads
 * as the client would, and a logger that keeps its records.
 *
 * @module
 */

import { Logger, type LogRecord, MemorySink } from "../log.ts";
import { MessageChannel } from "../wire/channel.ts";
import type { Message } from "../wire/message.ts";
import { memoryPair } from "../transport/memory.ts";
import type { Address, Connection } from "../transport/mod.ts";
import { ReplyBudget } from "./backpressure.ts";
import { DEFAULT_LIMITS, type ServerLimits } from "./limits.ts";
import { openSession, type ServerStats, type Session } from "./session.ts";

/** A logger whose records a test reads. */
export function recordingLogger(): { logger: Logger; records: LogRecord[] } {
  const sink = new MemorySink();
  return { logger: new Logger([sink], { level: "debug" }), records: sink.records };
}

/** Fresh server counters. */
export function newStats(): ServerStats {
  return { connections: 0, refused: 0, callsServed: 0, callsFailed: 0, startedAt: new Date() };
}

/** The client's side of a test session: what the server sent it, in order. */
export class Peer {
  readonly received: Message[] = [];
  readonly done: Promise<void>;
  #waiters: (() => void)[] = [];
  readonly channel: MessageChannel;

  constructor(readonly conn: Connection) {
    this.channel = new MessageChannel(conn);
    this.done = this.channel.readAll({
      onMessage: (message) => {
        this.received.push(message);
        for (const waiter of this.#waiters.splice(0)) waiter();
      },
      onMalformed: () => {},
    }).catch(() => {});
  }

  /** Waits until `count` messages have arrived (or the connection ended), and returns them all. */
  async next(count = 1): Promise<Message[]> {
    let ended = false;
    void this.done.then(() => {
      ended = true;
      for (const waiter of this.#waiters.splice(0)) waiter();
    });
    while (this.received.length < count && !ended) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    return this.received;
  }
}

/**
 * A session over one end of an in-memory pair named `name` (its peer key
 * is `memory:name` unless `remote` gives another address), and the peer
 * that reads what the server sends it.
 */
export function sessionOverMemory(
  options: {
    id?: number;
    name?: string;
    reserved?: string;
    limits?: ServerLimits;
    /** The peer's address as the server sees it, e.g. a TCP client's IP. Default `memory:name`. */
    remote?: Address;
    /** The client name a verified certificate gives (as over mutual TLS). */
    peerName?: string;
  } = {},
): { session: Session; peer: Peer } {
  const [clientEnd, serverEnd] = memoryPair({
    name: options.name ?? "test",
    ...(options.remote ? { remote: options.remote } : {}),
    ...(options.peerName ? { via: { peerName: options.peerName } } : {}),
  });
  const replies = new ReplyBudget(options.limits ?? DEFAULT_LIMITS).open(() => {});
  const channel = new MessageChannel(serverEnd);
  const session = openSession({
    id: options.id ?? 1,
    conn: serverEnd,
    channel,
    replies,
    ...(options.reserved === undefined ? {} : { reserved: options.reserved }),
  });
  return { session, peer: new Peer(clientEnd) };
}
