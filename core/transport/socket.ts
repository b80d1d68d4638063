/**
 * What the socket transports (TCP, TLS, Unix sockets) share: the accept loop
 * every listener runs, where a failed accept (out of file descriptors,
 * EMFILE) pauses and tries again instead of ending the listener; the peer
 * address of a connection; and the error of a failed connect.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import { transportError } from "./errors.ts";
import type { Address, ListenEvents } from "./mod.ts";

/** The longest pause between two failed accepts, in ms. */
export const MAX_ACCEPT_PAUSE_MS = 1000;

/** The peer address of a TCP connection. */
export function addressOf(conn: Deno.Conn): Address {
  const address = conn.remoteAddr as Deno.NetAddr;
  return { hostname: address.hostname, port: address.port };
}

/**
 * Accepts connections and survives failed accepts: after a failure it
 * pauses (5 ms, doubling up to {@linkcode MAX_ACCEPT_PAUSE_MS}) and tries
 * again, so a process out of file descriptors serves again as soon as some
 * are free.
 */
export class Acceptor<C extends Deno.Conn = Deno.TcpConn> {
  #listener: Deno.Listener;
  #events: ListenEvents;
  #failures = 0;
  #failingSince = 0;

  constructor(listener: Deno.Listener, events: ListenEvents) {
    this.#listener = listener;
    this.#events = events;
  }

  get address(): Address {
    const bound = this.#listener.addr;
    if ("path" in bound) return { hostname: "unix", port: 0, path: bound.path };
    const net = bound as Deno.NetAddr;
    return { hostname: net.hostname, port: net.port };
  }

  async next(): Promise<C | null> {
    for (;;) {
      try {
        const conn = await this.#listener.accept() as C;
        if (this.#failures > 0) {
          this.#events.onAcceptRecovered?.(this.#failures, performance.now() - this.#failingSince);
          this.#failures = 0;
        }
        return conn;
      } catch (error) {
        if (
          error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted
        ) return null;
        if (this.#failures++ === 0) this.#failingSince = performance.now();
        const pauseMs = Math.min(MAX_ACCEPT_PAUSE_MS, 5 * 2 ** Math.min(this.#failures - 1, 10));
        this.#events.onAcceptError?.(error as Error, this.#failures, pauseMs);
        await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
    }
  }

  close(): void {
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * The error of a failed connect to `where`: `Timeout` when `signal` ended
 * it, else the kind its error code means (`transportError`), `Unavailable`
 * for one without a known code (a certificate that does not verify, say).
 */
export function connectError(where: string, error: unknown, signal?: AbortSignal): RpcError {
  if (signal?.aborted) {
    return new RpcError(ErrorKind.Timeout, `Cannot connect to ${where}: no answer in time`);
  }
  if (error instanceof RpcError) {
    return new RpcError(error.kind, `Cannot connect to ${where}: ${error.message}`, {
      cause: error,
      ...(error.code !== undefined ? { code: error.code } : {}),
    });
  }
  return transportError(error, {
    fallback: ErrorKind.Unavailable,
    prefix: `Cannot connect to ${where}: `,
  });
}
