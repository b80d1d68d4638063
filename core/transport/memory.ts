/**
 * In-memory connections: a pair of connected byte streams in one process,
 * and a listener whose `connect()` hands out the client end of a new pair.
 * For tests, and for embedding a server without a socket (an HTTP gateway
 * feeding it calls). Writes are copied (the writer may reuse its buffer)
 * and wait while the reader has {@linkcode MEMORY_HIGH_WATER} bytes unread,
 * so a slow reader slows its writer as a socket would.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import type { Address, Connection, Listener } from "./mod.ts";

/** Unread bytes at which a writer waits for its reader. */
export const MEMORY_HIGH_WATER = 1024 * 1024;

/** One direction of a pair: what one end writes and the other reads. */
class Pipe {
  chunks: Uint8Array[] = [];
  queued = 0;
  ended = false;
  #readWaiter: (() => void) | undefined;
  #writeWaiters: (() => void)[] = [];

  wakeReader(): void {
    const waiter = this.#readWaiter;
    this.#readWaiter = undefined;
    waiter?.();
  }

  wakeWriters(): void {
    const waiters = this.#writeWaiters;
    this.#writeWaiters = [];
    for (const waiter of waiters) waiter();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.chunks.length === 0) {
      if (this.ended) return null;
      await new Promise<void>((resolve) => (this.#readWaiter = resolve));
    }
    const chunk = this.chunks[0];
    const count = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, count));
    if (count === chunk.length) this.chunks.shift();
    else this.chunks[0] = chunk.subarray(count);
    this.queued -= count;
    if (this.queued < MEMORY_HIGH_WATER) this.wakeWriters();
    return count;
  }

  async write(data: Uint8Array): Promise<number> {
    while (this.queued >= MEMORY_HIGH_WATER && !this.ended) {
      await new Promise<void>((resolve) => this.#writeWaiters.push(resolve));
    }
    if (this.ended) throw new RpcError(ErrorKind.Unavailable, "Connection closed");
    this.chunks.push(data.slice());
    this.queued += data.length;
    this.wakeReader();
    return data.length;
  }

  end(): void {
    this.ended = true;
    this.wakeReader();
    this.wakeWriters();
  }

  /** Ends the pipe and drops what was not read (the reader closed). */
  drop(): void {
    this.chunks = [];
    this.queued = 0;
    this.end();
  }
}

class MemoryConnection implements Connection {
  #closed = false;
  constructor(readonly remote: Address, readonly incoming: Pipe, readonly outgoing: Pipe) {}
  read(buffer: Uint8Array): Promise<number | null> {
    return this.#closed ? Promise.resolve(null) : this.incoming.read(buffer);
  }
  write(data: Uint8Array): Promise<number> {
    if (this.#closed) {
      return Promise.reject(new RpcError(ErrorKind.Unavailable, "Connection closed"));
    }
    return this.outgoing.write(data);
  }
  close(): void {
    this.#closed = true;
    this.incoming.drop();
    this.outgoing.end();
  }
  closeWrite(): Promise<void> {
    this.outgoing.end();
    return Promise.resolve();
  }
}

/**
 * Two connected ends: what one writes the other reads. Both see
 * `memory:name` as the peer's address.
 */
export function memoryPair(name = "pair"): [Connection, Connection] {
  const remote: Address = { hostname: "memory", port: 0, path: name };
  const there = new Pipe();
  const back = new Pipe();
  return [new MemoryConnection(remote, back, there), new MemoryConnection(remote, there, back)];
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
