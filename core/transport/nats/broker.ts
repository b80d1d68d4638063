/**
 * A connection to a NATS broker ({@linkcode Broker}), shared by every
 * session opened or taken through it: opens sessions with a server or a
 * service's provider, accepts them for a server (through
 * `BrokerListener`), routes each message to its session, probes them, and
 * fails them all when the broker drops.
 *
 * @module
 */

import {
  createInbox,
  type Msg,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";
import { ErrorKind, RpcError } from "../../errors.ts";
import type { Address } from "../mod.ts";
import { redactBrokerUrl } from "./broker_url.ts";
import { type BrokerOptions, dial } from "./connect.ts";
import { BrokerListener, type BrokerListenOptions } from "./listener.ts";
import { HEADER_BYTES, Kind, packet, readJson } from "./packet.ts";
import { NatsSession } from "./session.ts";
import {
  type Announcement,
  DISCOVER_SUBJECT,
  readAnnouncement,
  serverSubject,
  serviceSubject,
} from "./subjects.ts";

const encoder = new TextEncoder();

/** Whether a message is the broker's "no responders" status (nobody subscribes to the subject). */
function noResponders(msg: Msg): boolean {
  return msg.data.length === 0 && msg.headers?.code === 503;
}

/** Options of {@linkcode Broker.open}. */
export interface OpenOptions {
  /** Give up after this many ms (`Timeout`). Default 10 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * For a service: the servers that may answer (its providers in init.yaml).
   * An answer from any other server is refused (`Unauthorized`).
   */
  providers?: readonly string[];
}

/** What {@linkcode Broker.open} opens: a server by name, or any provider of a service. */
export type BrokerTarget = { server: string } | { service: string };

/**
 * A connection to a NATS broker, shared by every session opened or taken
 * through it.
 */
export class Broker {
  /** The broker's URL, password hidden. */
  readonly url: string;
  #nc: NatsConnection;
  #prefix: string;
  #nextSession = 1;
  #sessions = new Map<string, NatsSession>();
  /** Opens waiting for their answer, by reply subject. */
  #opening = new Map<string, (msg: Msg) => void>();
  #mux: Subscription;
  #connected = true;
  #prober: ReturnType<typeof setInterval>;
  #onStatus: BrokerOptions["onStatus"];
  /** This connection's id, as servers see it in a session's address. */
  readonly id: string;

  private constructor(nc: NatsConnection, url: string, onStatus: BrokerOptions["onStatus"]) {
    this.#nc = nc;
    this.url = url;
    this.#onStatus = onStatus;
    this.#prefix = createInbox();
    this.id = this.#prefix.slice(this.#prefix.lastIndexOf(".") + 1);
    this.#mux = nc.subscribe(`${this.#prefix}.*`, {
      callback: (_error, msg) => {
        const session = this.#sessions.get(msg.subject);
        if (session) session.deliver(msg.data, msg.reply);
        else this.#opening.get(msg.subject)?.(msg);
      },
    });
    this.#watch();
    this.#prober = setInterval(() => {
      const now = performance.now();
      for (const session of [...this.#sessions.values()]) session.probe(now);
    }, 1_000);
    Deno.unrefTimer(this.#prober);
  }

  /**
   * Connects to the broker.
   *
   * @throws {RpcError} `Unavailable` when it cannot be reached or refuses
   * the credentials; `Invalid Arguments` for a malformed URL.
   */
  static async connect(options: BrokerOptions): Promise<Broker> {
    const nc = await dial(options);
    return new Broker(nc, redactBrokerUrl(options.url), options.onStatus);
  }

  /** The largest message the broker takes, in bytes. */
  get maxPayload(): number {
    return this.#nc.info?.max_payload ?? 1024 * 1024;
  }

  /** Whether the connection to the broker is up now. */
  get connected(): boolean {
    return this.#connected && !this.#nc.isClosed();
  }

  async #watch(): Promise<void> {
    for await (const status of this.#nc.status()) {
      if (status.type === "disconnect") {
        if (!this.#connected) continue;
        this.#connected = false;
        const error = new RpcError(
          ErrorKind.Unavailable,
          `Lost the broker ${this.url}: the connection to it dropped`,
        );
        for (const session of [...this.#sessions.values()]) session.fail(error);
        this.#onStatus?.("disconnected", `lost the broker ${this.url}`);
      } else if (status.type === "reconnect") {
        this.#connected = true;
        this.#onStatus?.("reconnected", `connected again to the broker ${this.url}`);
      }
    }
  }

  /** Publishes bytes as they are (sessions' own messages). */
  publishRaw(subject: string, data: Uint8Array, reply?: string): void {
    if (this.#nc.isClosed()) return;
    try {
      this.#nc.publish(subject, data, reply ? { reply } : undefined);
    } catch {
      // The connection closed meanwhile; the session fails through the status watch.
    }
  }

  #newSession(
    peerInbox: string,
    remote: Address,
    peer: string,
    firstSeq: number,
    inbox = `${this.#prefix}.${this.#nextSession++}`,
  ): NatsSession {
    const session = new NatsSession(
      this,
      inbox,
      peerInbox,
      remote,
      peer,
      firstSeq,
      () => {
        this.#sessions.delete(inbox);
        session.onClosed?.();
      },
    );
    this.#sessions.set(inbox, session);
    return session;
  }

  /**
   * Opens a session with a server by name, or with one provider of a
   * service (the broker picks it), and returns it as a connection to speak
   * the rpc protocol over (`connectOver`). An answer from a server that is
   * not the one named, or not among `providers`, is refused (told to close)
   * and the open is sent again, a few times.
   *
   * @throws {RpcError} `Unavailable` when the broker is down or nobody
   * serves the target; `Timeout` when no server answers in time;
   * `Unauthorized` when only servers that are not the one asked for (or
   * not among `providers`) answered.
   */
  async open(target: BrokerTarget, options: OpenOptions = {}): Promise<NatsSession> {
    const deadline = performance.now() + (options.timeoutMs ?? 10_000);
    const refused: string[] = [];
    // A service's open goes to its queue group; when a server that is not a provider answers
    // there, the providers are asked by name, in order, instead.
    const targets: { server?: string; subject: string; what: string }[] = "server" in target
      ? [{
        server: target.server,
        subject: serverSubject(target.server),
        what: `server ${target.server}`,
      }]
      : [{ subject: serviceSubject(target.service), what: `service ${target.service}` }];
    let lastError: RpcError | undefined;
    for (let index = 0; index < targets.length; index++) {
      const { server: wanted, subject, what } = targets[index];
      if (!this.connected) {
        throw new RpcError(
          ErrorKind.Unavailable,
          `Cannot reach ${what}: not connected to the broker ${this.url}`,
        );
      }
      let answer: { server: string; inbox: string; reply: string };
      try {
        answer = await this.#ask(subject, target, what, deadline, options.signal);
      } catch (error) {
        // A provider asked by name after a refusal may be down: the next one is asked.
        if (index === 0 || !(error instanceof RpcError)) throw error;
        lastError = error;
        continue;
      }
      const { server, inbox, reply } = answer;
      const reason = wanted !== undefined
        ? (server === wanted ? undefined : `it is not ${wanted}`)
        : "service" in target && options.providers && !options.providers.includes(server)
        ? `it is not a provider of ${target.service} (providers: ${
          options.providers.join(", ") || "none"
        })`
        : undefined;
      if (reason === undefined) {
        // The open's reply subject goes on as this end's inbox: the server already sends there.
        return this.#newSession(
          inbox,
          { hostname: "nats", port: 0, path: server },
          server,
          1,
          reply,
        );
      }
      // Tell the stranger its session is over; it gets nothing from us.
      this.publishRaw(inbox, packet(Kind.Close, 0), reply);
      refused.push(`${server || "(unnamed)"}: ${reason}`);
      if (index === 0 && "service" in target && options.providers) {
        for (const provider of options.providers) {
          targets.push({
            server: provider,
            subject: serverSubject(provider),
            what: `server ${provider} for service ${target.service}`,
          });
        }
      }
    }
    throw new RpcError(
      ErrorKind.Unauthorized,
      `Refused the answers of servers that may not serve ${
        "server" in target ? `as ${target.server}` : `service ${target.service}`
      }: ${refused.join("; ")}${lastError ? `; and ${lastError.message}` : ""}`,
    );
  }

  /** Sends one open and waits for the first answer: the server's name and its session inbox. */
  async #ask(
    subject: string,
    target: BrokerTarget,
    what: string,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<{ server: string; inbox: string; reply: string }> {
    const reply = `${this.#prefix}.${this.#nextSession++}`;
    const answer = Promise.withResolvers<Msg>();
    this.#opening.set(reply, answer.resolve);
    const left = Math.max(0, deadline - performance.now());
    const timer = setTimeout(
      () =>
        answer.reject(
          new RpcError(
            ErrorKind.Timeout,
            `Cannot reach ${what} through the broker ${this.url}: no answer within ${
              Math.round(left)
            } ms`,
          ),
        ),
      left,
    );
    const onAbort = () =>
      answer.reject(
        new RpcError(
          ErrorKind.Timeout,
          `Cannot reach ${what} through the broker: no answer in time`,
        ),
      );
    signal?.addEventListener("abort", onAbort, { once: true });
    let msg: Msg;
    try {
      const body = encoder.encode(JSON.stringify({ client: this.id, ...target }));
      this.publishRaw(subject, packet(Kind.Open, 0, body), reply);
      msg = await answer.promise;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      this.#opening.delete(reply);
    }
    if (noResponders(msg)) {
      throw new RpcError(
        ErrorKind.Unavailable,
        `Cannot reach ${what}: no server on the broker ${this.url} serves it`,
      );
    }
    const accept = msg.data.length > HEADER_BYTES && msg.data[0] === Kind.Accept
      ? readJson(msg.data.subarray(HEADER_BYTES))
      : undefined;
    if (typeof accept?.server !== "string" || typeof accept.inbox !== "string") {
      throw new RpcError(
        ErrorKind.Unavailable,
        `Cannot reach ${what}: the answer is not an accept`,
      );
    }
    return { server: accept.server, inbox: accept.inbox, reply };
  }

  /**
   * Takes an open message for the server `server`: a new session whose
   * peer is the open's reply subject, answered with an accept naming this
   * session's inbox. `undefined` for a message that is not an open.
   */
  accept(msg: Msg, server: string): NatsSession | undefined {
    if (!msg.reply || msg.data.length < HEADER_BYTES || msg.data[0] !== Kind.Open) return undefined;
    const open = readJson(msg.data.subarray(HEADER_BYTES));
    const client = typeof open?.client === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(open.client)
      ? open.client
      : "anonymous";
    const session = this.#newSession(
      msg.reply,
      { hostname: "nats", port: 0, path: client },
      client,
      0,
    );
    session.sendAccept(encoder.encode(JSON.stringify({ server, inbox: session.inbox })));
    return session;
  }

  /**
   * Takes sessions for a server: on its own subject, and in the queue group
   * of each service it serves. Publishes its heartbeat and answers
   * discovery.
   */
  listen(options: BrokerListenOptions): BrokerListener {
    return new BrokerListener(this, this.#nc, options);
  }

  /** Publishes JSON (announcements). */
  publishJson(subject: string, value: unknown): void {
    this.publishRaw(subject, encoder.encode(JSON.stringify(value)));
  }

  /** Asks every server on the broker for its announcement, for `waitMs`. */
  async discover(waitMs = 500): Promise<Announcement[]> {
    if (!this.connected) {
      throw new RpcError(ErrorKind.Unavailable, `Not connected to the broker ${this.url}`);
    }
    const inbox = createInbox();
    const found = new Map<string, Announcement>();
    const sub = this.#nc.subscribe(inbox, {
      callback: (_error, msg) => {
        const announcement = readAnnouncement(msg.data);
        if (announcement) found.set(announcement.server, announcement);
      },
    });
    this.publishRaw(DISCOVER_SUBJECT, new Uint8Array(), inbox);
    await new Promise((resolve) => setTimeout(resolve, waitMs));
    sub.unsubscribe();
    return [...found.values()].sort((a, b) => a.server.localeCompare(b.server));
  }

  /** Sessions open through this connection now. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Closes every session and the connection to the broker. */
  async close(): Promise<void> {
    clearInterval(this.#prober);
    for (const session of [...this.#sessions.values()]) session.close();
    this.#mux.unsubscribe();
    try {
      await this.#nc.drain();
    } catch {
      await this.#nc.close().catch(() => {});
    }
  }
}
