/**
 * An in-memory connection pair: what one end writes, the other reads, with
 * no socket in between. The HTTP gateway serves each of its sessions over
 * one, so that an HTTP call meets the server exactly as a TCP connection
 * does: framed messages, `HELLO`, the same identity checks and limits.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import type { Address, Connection } from "./mod.ts";

/** Options of {@linkcode memoryPipe}. */
export interface PipeOptions {
  /** What the server end reports as its peer's address (the real caller's). */
  remote: Address;
  /**
   * The connection the server end stands for: its `peerName` (a verified
   * client certificate's name) and `handshaking` are reported as they are
   * when asked, since a TLS handshake finishes after the connection is accepted.
   */
  via?: Pick<Connection, "peerName" | "handshaking">;
  /** What the client end reports as its peer's address. Default `memory:0`. */
  local?: Address;
  /** A writer waits while this many bytes wait to be read. Default 1 MiB. */
  highWaterBytes?: number;
}

/** Both ends of a pipe. */
export interface Pipe {
  /** The end a server serves. */
  server: PipeEnd;
  /** The end a client speaks over. */
  client: PipeEnd;
}

/** Bytes flowing one way, from a writer to a reader. */
class Flow {
  #chunks: Uint8Array[] = [];
  #queued = 0;
  /** No more writes: the reader gets what is queued, then the end of the stream. */
  ended = false;
  #readable: PromiseWithResolvers<void> | undefined;
  #writable: PromiseWithResolvers<void> | undefined;

  constructor(readonly highWater: number) {}

  async write(data: Uint8Array): Promise<number> {
    while (this.#queued >= this.highWater && !this.ended) {
      this.#writable ??= Promise.withResolvers();
      await this.#writable.promise;
    }
    if (this.ended) throw new RpcError(ErrorKind.Unavailable, "Cannot write: the pipe is closed");
    // The writer may reuse its buffer as soon as this resolves: keep a copy.
    this.#chunks.push(data.slice());
    this.#queued += data.length;
    this.#wakeReader();
    return data.length;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.ended) return null;
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
    this.ended = true;
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

/** One end of a {@linkcode memoryPipe}. */
export class PipeEnd implements Connection {
  #in: Flow;
  #out: Flow;
  #closed: PromiseWithResolvers<void>;
  #via: Pick<Connection, "peerName" | "handshaking"> | undefined;

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
    return this.#in.read(buffer);
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
 * Makes a connected pair of in-memory connections.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryPipe } from "./pipe.ts";
 * const { server, client } = memoryPipe({ remote: { hostname: "127.0.0.1", port: 5000 } });
 * await client.write(new Uint8Array([1, 2, 3]));
 * const buffer = new Uint8Array(8);
 * assert.equal(await server.read(buffer), 3);
 * assert.deepEqual([...buffer.subarray(0, 3)], [1, 2, 3]);
 * assert.equal(server.remote.port, 5000);
 * ```
 */
export function memoryPipe(options: PipeOptions): Pipe {
  const highWater = options.highWaterBytes ?? 1024 * 1024;
  const toServer = new Flow(highWater);
  const toClient = new Flow(highWater);
  const closed = Promise.withResolvers<void>();
  return {
    server: new PipeEnd(options.remote, options.via, toServer, toClient, closed),
    client: new PipeEnd(
      options.local ?? { hostname: "memory", port: 0 },
      undefined,
      toClient,
      toServer,
      closed,
    ),
  };
}
