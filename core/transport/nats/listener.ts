/**
 * A server's side of the broker ({@linkcode BrokerListener}): takes the
 * sessions opened with it by name or by service, publishes its heartbeat
 * and answers discovery.
 *
 * @module
 */

import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Address, Connection, Listener } from "../mod.ts";
import type { Broker } from "./broker.ts";
import type { NatsSession } from "./session.ts";
import {
  type Announcement,
  DISCOVER_SUBJECT,
  HEARTBEAT_MS,
  heartbeatSubject,
  serverSubject,
  serviceQueue,
  serviceSubject,
} from "./subjects.ts";

/** Options of {@linkcode Broker.listen}. */
export interface BrokerListenOptions {
  /** The server's name: it takes sessions on `rpc.open.server.NAME`. */
  name: string;
  /** The services it serves now (asked again every second, so installs are seen). */
  services: () => string[];
  /** Its version, for announcements. */
  version: string;
  /** How often to publish the heartbeat, ms. Default {@linkcode HEARTBEAT_MS}. */
  heartbeatMs?: number;
}

/**
 * A server's sessions through the broker, as a {@linkcode Listener}: opens
 * on `rpc.open.server.NAME` and on the subject of each service it serves
 * (in the service's queue group) become connections. Publishes the
 * server's heartbeat and answers discovery.
 */
export class BrokerListener implements Listener {
  readonly address: Address;
  #broker: Broker;
  #nc: NatsConnection;
  #options: BrokerListenOptions;
  #subs: Subscription[] = [];
  #serviceSubs = new Map<string, Subscription>();
  #queue: NatsSession[] = [];
  #waiter: ((conn: Connection | null) => void) | undefined;
  #closed = false;
  #timers: ReturnType<typeof setInterval>[] = [];
  #open = new Set<NatsSession>();
  #startedAt = new Date().toISOString();

  constructor(broker: Broker, nc: NatsConnection, options: BrokerListenOptions) {
    this.#broker = broker;
    this.#nc = nc;
    this.#options = options;
    this.address = { hostname: "nats", port: 0, path: broker.url };
    this.#subs.push(
      nc.subscribe(serverSubject(options.name), { callback: (_e, msg) => this.#take(msg) }),
      nc.subscribe(DISCOVER_SUBJECT, {
        callback: (_e, msg) => {
          if (msg.reply) broker.publishJson(msg.reply, this.announcement());
        },
      }),
    );
    this.#syncServices();
    const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
    this.#beat();
    this.#timers.push(setInterval(() => this.#syncServices(), 1_000));
    this.#timers.push(setInterval(() => this.#beat(), heartbeatMs));
    for (const timer of this.#timers) Deno.unrefTimer(timer);
  }

  /** What the server says of itself. */
  announcement(): Announcement {
    return {
      server: this.#options.name,
      services: [...this.#serviceSubs.keys()].sort(),
      version: this.#options.version,
      sessions: this.#open.size,
      startedAt: this.#startedAt,
    };
  }

  #beat(): void {
    if (!this.#closed) {
      this.#broker.publishJson(heartbeatSubject(this.#options.name), this.announcement());
    }
  }

  /** Subscribes to the subjects of services served now, and leaves those no longer served. */
  #syncServices(): void {
    if (this.#closed) return;
    const wanted = new Set(this.#options.services());
    for (const [service, sub] of this.#serviceSubs) {
      if (wanted.has(service)) continue;
      sub.unsubscribe();
      this.#serviceSubs.delete(service);
    }
    for (const service of wanted) {
      if (this.#serviceSubs.has(service)) continue;
      this.#serviceSubs.set(
        service,
        this.#nc.subscribe(serviceSubject(service), {
          queue: serviceQueue(service),
          callback: (_e, msg) => this.#take(msg),
        }),
      );
    }
  }

  /** Sees the services again now (after an install), rather than within a second. */
  refresh(): void {
    this.#syncServices();
  }

  #take(msg: Msg): void {
    if (this.#closed) return;
    const session = this.#broker.accept(msg, this.#options.name);
    if (!session) return;
    this.#open.add(session);
    session.onClosed = () => this.#open.delete(session);
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) waiter(session);
    else this.#queue.push(session);
  }

  accept(): Promise<Connection | null> {
    const next = this.#queue.shift();
    if (next) return Promise.resolve(next);
    if (this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => (this.#waiter = resolve));
  }

  /** Stops taking sessions (sessions open go on); the heartbeat stops. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    for (const sub of [...this.#subs, ...this.#serviceSubs.values()]) {
      try {
        sub.unsubscribe();
      } catch {
        // The connection is closed already.
      }
    }
    this.#serviceSubs.clear();
    for (const session of this.#queue) session.close();
    this.#queue = [];
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.(null);
  }
}
