/**
 * NATS as a transport: a server connects out to a NATS broker and takes
 * sessions through it, a client opens a session to a server by name or to
 * any provider of a service. A session is a virtual {@linkcode Connection}
 * (a byte stream), so the server serves it exactly like a TCP connection:
 * the same handshake, secret proofs, tenants, limits, streaming, cancel
 * and deadlines. Only the bytes travel differently.
 *
 * **Subjects.** (`NAME` is a server's name, `SERVICE` a service's.)
 *
 * - `rpc.open.server.NAME`: opens a session with that server;
 * - `rpc.open.service.SERVICE`: opens a session with one provider of the
 *   service, in the queue group `rpc.service.SERVICE`, so the broker picks
 *   one of the providers subscribed;
 * - `rpc.discover`: every server answers with its {@linkcode Announcement};
 * - `rpc.heartbeat.NAME`: the server publishes its announcement every few
 *   seconds ({@linkcode HEARTBEAT_MS}).
 *
 * An open message carries a reply subject: the client's inbox for the
 * session. The server answers there with `accept` (its name and services)
 * whose own reply subject is the server's inbox for the session; from then
 * on each side publishes to the other's inbox. Every message starts with a
 * kind byte and a 32-bit sequence number: a gap (the broker dropped a
 * message) closes the session rather than corrupt the stream.
 *
 * **Size.** A write larger than the broker's `max_payload` is cut into
 * chunks that fit: the byte stream does not care where messages end, and
 * the frame limit (`maxFrameBytes`) holds as over TCP.
 *
 * **Flow control.** A side has at most {@linkcode NATS_WINDOW} bytes sent
 * and not yet read by its peer; the reader grants more as it reads
 * (`credit`). A slow reader slows its writer, as a socket would, and holds
 * no more than a window in memory.
 *
 * **Liveness.** A side that hears nothing from its peer for
 * {@linkcode PROBE_IDLE_MS} asks it (`ping`); without an answer within
 * {@linkcode PROBE_TIMEOUT_MS} the peer is taken to be gone (its process
 * died without closing: the broker does not tell) and the session fails
 * with `Unavailable`. A server frees a dead client's session the same way.
 *
 * **Broker lost.** Sessions open over a connection to the broker fail at
 * once (`Unavailable`) when it drops; the NATS client reconnects by itself
 * and resubscribes, so a server serves again once the broker is back.
 *
 * @module
 */

import {
  connect as connectNats,
  createInbox,
  credsAuthenticator,
  type Msg,
  type NatsConnection,
  nkeyAuthenticator,
  type Subscription,
} from "@nats-io/transport-node";
import { ErrorKind, RpcError } from "../errors.ts";
import type { Address, Connection, Listener } from "./mod.ts";
import { parseBrokerUrl, redactBrokerUrl } from "./broker_url.ts";

export { parseBrokerUrl, redactBrokerUrl };

/** Bytes a side may send that its peer has not read yet. */
export const NATS_WINDOW = 1024 * 1024;

/** How often a server publishes its heartbeat, in ms. */
export const HEARTBEAT_MS = 5_000;

/** Bytes of a message's own header: kind (1) and sequence number (4). */
const HEADER_BYTES = 5;

/** Room left in a chunk below `max_payload` for the broker's protocol overhead. */
const PAYLOAD_SLACK = 64;

const enum Kind {
  Open = 1,
  Accept = 2,
  Data = 3,
  /** The sender will write no more (half close). */
  End = 4,
  /** The sender closed the session. */
  Close = 5,
  /** The reader's total bytes read so far (a float64): the writer may send up to a window past it. */
  Credit = 6,
  /** Are you there? (sent after {@linkcode PROBE_IDLE_MS} of silence) */
  Ping = 7,
  /** Yes. */
  Pong = 8,
}

/** Silence after which a side asks its peer whether it is still there, ms. */
export const PROBE_IDLE_MS = 2_000;

/** Silence after a ping after which the peer is taken to be gone, ms. */
export const PROBE_TIMEOUT_MS = 5_000;

/** The subject that opens a session with the server `name`. */
export function serverSubject(name: string): string {
  return `rpc.open.server.${name}`;
}

/** The subject that opens a session with a provider of `service`. */
export function serviceSubject(service: string): string {
  return `rpc.open.service.${service}`;
}

/** The queue group of a service's providers. */
export function serviceQueue(service: string): string {
  return `rpc.service.${service}`;
}

/** Subject every server answers with its announcement. */
export const DISCOVER_SUBJECT = "rpc.discover";

/** The subject of `name`'s heartbeat. */
export function heartbeatSubject(name: string): string {
  return `rpc.heartbeat.${name}`;
}

/** What a server says of itself on the broker. */
export interface Announcement {
  /** Its name. */
  server: string;
  /** The services it serves now. */
  services: string[];
  /** Its rpc version. */
  version: string;
  /** Sessions open through the broker now. */
  sessions: number;
  /** When it started (ISO 8601). */
  startedAt: string;
}

/** Options of {@linkcode Broker.connect}. */
export interface BrokerOptions {
  /** `nats://[user:password@]host:port`; several separated by commas. */
  url: string;
  /**
   * The broker's own credentials, from a file: a NATS `.creds` file (user
   * JWT and nkey seed), or an nkey seed alone (`SU…`).
   */
  creds?: string;
  /** The name the broker shows for this connection. */
  name?: string;
  /** Give up the first connect after this many ms. Default 5 s. */
  connectTimeoutMs?: number;
  /** Told when the connection to the broker drops and comes back. */
  onStatus?: (event: "disconnected" | "reconnected", detail: string) => void;
}

/** Builds a message: kind, sequence number, then `body`. */
function packet(kind: Kind, seq: number, body?: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + (body?.length ?? 0));
  out[0] = kind;
  new DataView(out.buffer).setUint32(1, seq >>> 0);
  if (body) out.set(body, HEADER_BYTES);
  return out;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Whether a message is the broker's "no responders" status (nobody subscribes to the subject). */
function noResponders(msg: Msg): boolean {
  return msg.data.length === 0 && msg.headers?.code === 503;
}

/** A session's end as the transport contract sees it: bytes in, bytes out. */
export class NatsSession implements Connection {
  readonly remote: Address;
  /** The name of the server at the other end (client side), or of the client's broker connection (server side). */
  readonly peer: string;
  #broker: Broker;
  #inbox: string;
  #peerInbox: string;
  #seqOut = 0;
  #seqIn = 0;
  #chunks: Uint8Array[] = [];
  #queued = 0;
  /** Bytes read by our reader (what we grant credit on). */
  #consumed = 0;
  #credited = 0;
  /** Bytes we sent, and the peer's credit. */
  #sent = 0;
  #acked = 0;
  #peerEnded = false;
  #wroteEnd = false;
  #closed = false;
  #failure: RpcError | undefined;
  /** When the peer was last heard from, and when we asked it whether it is there. */
  #heardAt = performance.now();
  #pingedAt: number | undefined;
  #readWaiter: (() => void) | undefined;
  #writeWaiters: (() => void)[] = [];
  #onGone: () => void;
  /** Told once when the session is over. */
  onClosed: (() => void) | undefined;

  constructor(
    broker: Broker,
    inbox: string,
    peerInbox: string,
    remote: Address,
    peer: string,
    firstSeq: number,
    onGone: () => void,
  ) {
    this.#seqIn = firstSeq;
    this.#broker = broker;
    this.#inbox = inbox;
    this.#peerInbox = peerInbox;
    this.remote = remote;
    this.peer = peer;
    this.#onGone = onGone;
  }

  get inbox(): string {
    return this.#inbox;
  }

  /** The subject the peer takes this session's messages on. */
  get peerInbox(): string {
    return this.#peerInbox;
  }

  /** Takes one message addressed to this session. */
  deliver(data: Uint8Array, from: string | undefined): void {
    if (this.#closed || data.length < HEADER_BYTES) return;
    if (from !== this.#peerInbox) {
      // Not from our peer (its messages name its inbox as their reply subject). A second server
      // answering the same open (two servers of one name) is told to close; the rest is dropped.
      if (data[0] === Kind.Accept && from) {
        this.#broker.publishRaw(from, packet(Kind.Close, 0), this.#inbox);
      }
      return;
    }
    const seq = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(1);
    if (seq !== this.#seqIn) {
      this.fail(
        new RpcError(
          ErrorKind.Unavailable,
          `Lost messages on the broker: expected message ${this.#seqIn}, got ${seq}`,
        ),
      );
      return;
    }
    this.#seqIn = (this.#seqIn + 1) >>> 0;
    this.#heardAt = performance.now();
    this.#pingedAt = undefined;
    const body = data.subarray(HEADER_BYTES);
    switch (data[0] as Kind) {
      case Kind.Data:
        if (this.#peerEnded) return;
        if (this.#queued + body.length > NATS_WINDOW * 2) {
          this.fail(
            new RpcError(
              ErrorKind.Unavailable,
              `Peer ${this.peer} sent ${
                this.#queued + body.length
              } bytes unread, over its window of ${NATS_WINDOW}`,
            ),
          );
          return;
        }
        this.#chunks.push(body);
        this.#queued += body.length;
        this.#wakeReader();
        return;
      case Kind.Credit:
        if (body.length >= 8) {
          this.#acked = Math.max(
            this.#acked,
            new DataView(body.buffer, body.byteOffset, 8).getFloat64(0),
          );
          this.#wakeWriters();
        }
        return;
      case Kind.Ping:
        this.#publish(Kind.Pong);
        return;
      case Kind.End:
        this.#peerEnded = true;
        this.#wakeReader();
        this.#maybeGone();
        return;
      case Kind.Close:
        this.#peerEnded = true;
        this.#failure ??= new RpcError(ErrorKind.Unavailable, "Connection closed by the peer");
        this.#closedByPeer();
        return;
      default:
        return;
    }
  }

  /**
   * Called every second or so: after {@linkcode PROBE_IDLE_MS} without a
   * word from the peer, asks it; after {@linkcode PROBE_TIMEOUT_MS} more,
   * takes it to be gone (its process died without closing) and fails.
   */
  probe(now: number): void {
    if (this.#closed) return;
    if (this.#pingedAt !== undefined) {
      if (now - this.#pingedAt < PROBE_TIMEOUT_MS) return;
      this.fail(
        new RpcError(
          ErrorKind.Unavailable,
          `${this.peer} stopped answering through the broker: no word for ${
            Math.round(now - this.#heardAt)
          } ms`,
        ),
      );
      return;
    }
    if (now - this.#heardAt >= PROBE_IDLE_MS) {
      this.#pingedAt = now;
      this.#publish(Kind.Ping);
    }
  }

  /** Ends the session because the broker dropped it or lost a message; reads and writes fail with `error`. */
  fail(error: RpcError): void {
    if (this.#closed) return;
    this.#failure ??= error;
    this.#closed = true;
    this.#chunks = [];
    this.#queued = 0;
    this.#publish(Kind.Close);
    this.#wakeReader();
    this.#wakeWriters();
    this.#onGone();
  }

  #closedByPeer(): void {
    this.#wakeReader();
    this.#wakeWriters();
    // Reads still return what arrived before the close; the session is forgotten at once.
    this.#onGone();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#closed) {
        if (this.#failure && !this.#peerEnded) throw this.#failure;
        return null;
      }
      if (this.#peerEnded) return null;
      await new Promise<void>((resolve) => (this.#readWaiter = resolve));
    }
    const chunk = this.#chunks[0];
    const count = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, count));
    if (count === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(count);
    this.#queued -= count;
    this.#consumed += count;
    if (this.#consumed - this.#credited >= NATS_WINDOW / 4 && !this.#closed) {
      this.#credited = this.#consumed;
      const body = new Uint8Array(8);
      new DataView(body.buffer).setFloat64(0, this.#consumed);
      this.#publish(Kind.Credit, body);
    }
    return count;
  }

  async write(data: Uint8Array): Promise<number> {
    const chunkBytes = Math.min(
      NATS_WINDOW,
      this.#broker.maxPayload - HEADER_BYTES - PAYLOAD_SLACK,
    );
    let offset = 0;
    while (offset < data.length) {
      while (!this.#closed && !this.#wroteEnd && this.#sent - this.#acked >= NATS_WINDOW) {
        await new Promise<void>((resolve) => this.#writeWaiters.push(resolve));
      }
      if (this.#closed || this.#wroteEnd || this.#failure) {
        throw this.#failure ?? new RpcError(ErrorKind.Unavailable, "Connection closed");
      }
      const room = Math.min(chunkBytes, NATS_WINDOW - (this.#sent - this.#acked));
      const chunk = data.subarray(offset, offset + room);
      this.#publish(Kind.Data, chunk);
      this.#sent += chunk.length;
      offset += chunk.length;
    }
    return data.length;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#failure) this.#publish(Kind.Close);
    this.#chunks = [];
    this.#queued = 0;
    this.#wakeReader();
    this.#wakeWriters();
    this.#onGone();
  }

  closeWrite(): Promise<void> {
    if (!this.#wroteEnd && !this.#closed) {
      this.#wroteEnd = true;
      this.#publish(Kind.End);
      this.#wakeWriters();
      this.#maybeGone();
    }
    return Promise.resolve();
  }

  /** Both sides ended their writes: nothing more will come, the inbox can go (reads drain what is queued). */
  #maybeGone(): void {
    if (this.#peerEnded && this.#wroteEnd) this.#onGone();
  }

  /** Server side: the accept, the first message of the session (sequence 0). */
  sendAccept(body: Uint8Array): void {
    this.#publish(Kind.Accept, body);
  }

  #publish(kind: Kind, body?: Uint8Array): void {
    const seq = this.#seqOut;
    this.#seqOut = (this.#seqOut + 1) >>> 0;
    this.#broker.publishRaw(this.#peerInbox, packet(kind, seq, body), this.#inbox);
  }

  #wakeReader(): void {
    const waiter = this.#readWaiter;
    this.#readWaiter = undefined;
    waiter?.();
  }

  #wakeWriters(): void {
    const waiters = this.#writeWaiters;
    this.#writeWaiters = [];
    for (const waiter of waiters) waiter();
  }
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
    const url = redactBrokerUrl(options.url);
    const { servers, user, pass } = parseBrokerUrl(options.url);
    let authenticator;
    if (options.creds !== undefined) {
      let text: string;
      try {
        text = await Deno.readTextFile(options.creds);
      } catch (error) {
        throw new RpcError(
          ErrorKind.InvalidArguments,
          `Cannot read broker credentials ${options.creds}: ${(error as Error).message}`,
        );
      }
      authenticator = text.includes("-----BEGIN NATS USER JWT-----")
        ? credsAuthenticator(encoder.encode(text))
        : nkeyAuthenticator(encoder.encode(text.trim()));
    }
    let nc: NatsConnection;
    try {
      nc = await connectNats({
        servers,
        ...(user !== undefined ? { user, pass: pass ?? "" } : {}),
        ...(authenticator ? { authenticator } : {}),
        ...(options.name ? { name: options.name } : {}),
        timeout: options.connectTimeoutMs ?? 5_000,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        ignoreClusterUpdates: true,
      });
    } catch (error) {
      swallowLateSocketErrors();
      throw new RpcError(
        ErrorKind.Unavailable,
        `Cannot reach the broker ${url}: ${(error as Error).message}`,
      );
    }
    return new Broker(nc, url, options.onStatus);
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

/**
 * After a refused connect (a wrong password: the broker closes at once)
 * the NATS client has removed its socket's listeners, yet the socket may
 * still report the broker's reset a moment later; with no listener that
 * would end the process as an uncaught error, after the refusal was
 * already reported. For a short while such resets are dropped.
 */
function swallowLateSocketErrors(ms = 2_000): void {
  const handler = (event: ErrorEvent) => {
    const code = (event.error as { code?: unknown } | undefined)?.code;
    if (code === "ECONNRESET" || code === "EPIPE") event.preventDefault();
  };
  globalThis.addEventListener("error", handler);
  const timer = setTimeout(() => globalThis.removeEventListener("error", handler), ms);
  Deno.unrefTimer(timer);
}

/** Parses JSON, or `undefined`. */
function readJson(data: Uint8Array): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(decoder.decode(data));
    return typeof value === "object" && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Reads an announcement, or `undefined` when the message is not one. */
export function readAnnouncement(data: Uint8Array): Announcement | undefined {
  try {
    const value = JSON.parse(decoder.decode(data));
    if (typeof value?.server !== "string" || !Array.isArray(value.services)) return undefined;
    return {
      server: value.server,
      services: value.services.filter((name: unknown) => typeof name === "string"),
      version: String(value.version ?? ""),
      sessions: Number(value.sessions ?? 0),
      startedAt: String(value.startedAt ?? ""),
    };
  } catch {
    return undefined;
  }
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
