/**
 * In-memory connections: a pair of connected byte streams in one process,
 * and a listener whose `connect()` hands out the client end of a new pair.
 * For tests, and for embedding a server without a socket: the HTTP gateway
 * serves each of its sessions over a pair, so an HTTP call meets the server
 * exactly as a TCP connection does. Writes are copied (the writer may reuse
 * its buffer) and wait while the reader has the high-water mark
 * ({@linkcode MEMORY_HIGH_WATER} by default) unread, so a slow reader slows
 * its writer as a socket would.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import type { Address, Connection, Listener } from "./mod.ts";

/** Unread bytes at which a writer waits for its reader, by default. */
export const MEMORY_HIGH_WATER = 1024 * 1024;

/** Options of {@linkcode memoryPair}. */
export interface MemoryPairOptions {
  /** Names the pair in both ends' default addresses (`memory:NAME`). Default `pair`. */
  name?: string;
  /** What the server end (the second) reports as its peer's address: the real caller's. */
  remote?: Address;
  /** What the client end (the first) reports as its peer's address. */
  local?: Address;
  /**
   * The connection the server end stands for: its `peerName` (a verified
   * client certificate's name) and `handshaking` are reported as they are
   * when asked, since a TLS handshake finishes after the connection is accepted.
   */
  via?: Pick<Connection, "peerName" | "handshaking">;
  /** A writer waits while this many bytes wait to be read. Default {@linkcode MEMORY_HIGH_WATER}. */
  highWaterBytes?: number;
}

/** Bytes flowing one way, from a writer to a reader. */
class Flow {
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #readable: PromiseWithResolvers<void> | undefined;
  #writable: PromiseWithResolvers<void> | undefined;

  constructor(readonly highWater: number) {}

  async write(data: Uint8Array): Promise<number> {
    while (this.#queued >= this.highWater && !this.#ended) {
      this.#writable ??= Promise.withResolvers();
      await this.#writable.promise;
    }
    if (this.#ended) throw new RpcError(ErrorKind.Unavailable, "Cannot write: connection closed");
    // The writer may reuse its buffer as soon as this resolves: keep a copy.
    this.#chunks.push(data.slice());
    this.#queued += data.length;
    this.#wakeReader();
    return data.length;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      this.#readable ??= Promise.withResolvers();
      await this.#readable.promise;
    }
    const chunk = this.#chunks[0];
    const count = Math.min(chunk.length, buffer.length);
    buffer.set(count === chunk.length ? chunk : chunk.subarray(0, count));
    if (count === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(count);
    this.#queued -= count;
    if (this.#queued < this.highWater && this.#writable) {
      this.#writable.resolve();
      this.#writable = undefined;
    }
    return count;
  }

  /** Ends the flow; with `drop`, what is queued is lost too (the reader closed). */
  end(drop: boolean): void {
    this.#ended = true;
    if (drop) {
      this.#chunks = [];
      this.#queued = 0;
    }
    this.#wakeReader();
    this.#writable?.resolve();
    this.#writable = undefined;
  }

  #wakeReader(): void {
    const readable = this.#readable;
    this.#readable = undefined;
    readable?.resolve();
  }
}

/** One end of a {@linkcode memoryPair}. */
export class MemoryConnection implements Connection {
  #in: Flow;
  #out: Flow;
  #closed: PromiseWithResolvers<void>;
  #via: Pick<Connection, "peerName" | "handshaking"> | undefined;
  #open = true;

  constructor(
    readonly remote: Address,
    via: Pick<Connection, "peerName" | "handshaking"> | undefined,
    incoming: Flow,
    outgoing: Flow,
    closed: PromiseWithResolvers<void>,
  ) {
    this.#via = via;
    this.#in = incoming;
    this.#out = outgoing;
    this.#closed = closed;
  }

  get peerName(): string | undefined {
    return this.#via?.peerName;
  }

  get handshaking(): boolean {
    return this.#via?.handshaking ?? false;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    return this.#open ? this.#in.read(buffer) : Promise.resolve(null);
  }

  write(data: Uint8Array): Promise<number> {
    return this.#out.write(data);
  }

  /** Sends the end of the stream; reading goes on. */
  closeWrite(): Promise<void> {
    this.#out.end(false);
    return Promise.resolve();
  }

  /** Closes both ways: the other end reads what was already written, then the end. */
  close(): void {
    this.#open = false;
    this.#out.end(false);
    this.#in.end(true);
    this.#closed.resolve();
  }

  /** Settles once either end has closed. */
  get closed(): Promise<void> {
    return this.#closed.promise;
  }
}

/**
 * Two connected ends, `[client, server]`: what one writes the other reads.
 * A string names the pair (`memory:NAME` is then both ends' peer address).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryPair } from "./memory.ts";
 * const [client, server] = memoryPair({ remote: { hostname: "127.0.0.1", port: 5000 } });
 * await client.write(new Uint8Array([1, 2, 3]));
 * const buffer = new Uint8Array(8);
 * assert.equal(await server.read(buffer), 3);
 * assert.deepEqual([...buffer.subarray(0, 3)], [1, 2, 3]);
 * assert.equal(server.remote.port, 5000);
 * ```
 */
export function memoryPair(
  options: string | MemoryPairOptions = {},
): [MemoryConnection, MemoryConnection] {
  const { name = "pair", remote, local, via, highWaterBytes = MEMORY_HIGH_WATER } =
    typeof options === "string" ? { name: options } : options;
  const named: Address = { hostname: "memory", port: 0, path: name };
  const toServer = new Flow(highWaterBytes);
  const toClient = new Flow(highWaterBytes);
  const closed = Promise.withResolvers<void>();
  return [
    new MemoryConnection(local ?? named, undefined, toClient, toServer, closed),
    new MemoryConnection(remote ?? named, via, toServer, toClient, closed),
  ];
}

/** A listener in memory: {@linkcode MemoryListener.connect} opens a connection it accepts. */
export class MemoryListener implements Listener {
  readonly address: Address;
  #queue: Connection[] = [];
  #waiter: ((conn: Connection | null) => void) | undefined;
  #closed = false;

  constructor(name = "memory") {
    this.address = { hostname: "memory", port: 0, path: name };
  }

  /**
   * Opens a connection to this listener and returns the client's end.
   *
   * @throws {RpcError} `Unavailable` once the listener is closed.
   */
  connect(): Connection {
    if (this.#closed) {
      throw new RpcError(
        ErrorKind.Unavailable,
        `Cannot connect to memory:${this.address.path}: the listener is closed`,
      );
    }
    const [client, server] = memoryPair(this.address.path);
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) waiter(server);
    else this.#queue.push(server);
    return client;
  }

  accept(): Promise<Connection | null> {
    const next = this.#queue.shift();
    if (next) return Promise.resolve(next);
    if (this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => (this.#waiter = resolve));
  }

  close(): void {
    this.#closed = true;
    for (const conn of this.#queue) conn.close();
    this.#queue = [];
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.(null);
  }
}
