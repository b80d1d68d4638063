/**
 * One end of a session through the broker ({@linkcode NatsSession}): a
 * virtual {@linkcode Connection} whose bytes travel as messages to the
 * peer's inbox, with flow control ({@linkcode NATS_WINDOW}), sequence
 * checks and liveness probes ({@linkcode PROBE_IDLE_MS}).
 *
 * @module
 */

import { ErrorKind, RpcError } from "../../errors.ts";
import type { Address, Connection } from "../mod.ts";
import { HEADER_BYTES, Kind, packet, PAYLOAD_SLACK } from "./packet.ts";

/** Bytes a side may send that its peer has not read yet. */
export const NATS_WINDOW = 1024 * 1024;

/** Silence after which a side asks its peer whether it is still there, ms. */
export const PROBE_IDLE_MS = 2_000;

/** Silence after a ping after which the peer is taken to be gone, ms. */
export const PROBE_TIMEOUT_MS = 5_000;

/** What a session needs of its connection to the broker (a `Broker`). */
export interface SessionBroker {
  /** The largest message the broker takes, in bytes. */
  readonly maxPayload: number;
  /** Publishes bytes as they are. */
  publishRaw(subject: string, data: Uint8Array, reply?: string): void;
}

/** A session's end as the transport contract sees it: bytes in, bytes out. */
export class NatsSession implements Connection {
  readonly remote: Address;
  /** Each write is published as one message (or more, when it passes the broker's payload limit). */
  readonly writesAreMessages = true;
  /** The name of the server at the other end (client side), or of the client's broker connection (server side). */
  readonly peer: string;
  #broker: SessionBroker;
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
    broker: SessionBroker,
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
