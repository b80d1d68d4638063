/**
 * Plain TCP, and the accept loop every socket listener shares: a failed
 * accept (out of file descriptors, EMFILE) pauses and tries again instead of
 * ending the listener.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import { rethrowTransport, transportError } from "./errors.ts";
import type { Address, Connection, Listener, ListenEvents } from "./mod.ts";
// Used only inside functions, so the two modules importing each other is safe.
import { TlsConnection } from "./tls.ts";

/** The longest pause between two failed accepts, in ms. */
export const MAX_ACCEPT_PAUSE_MS = 1000;

class TcpConnection implements Connection {
  readonly remote: Address;
  constructor(readonly conn: Deno.TcpConn) {
    this.remote = addressOf(conn);
    try {
      conn.setNoDelay(true);
    } catch {
      // The peer is already gone; reads will say so.
    }
  }
  read(buffer: Uint8Array): Promise<number | null> {
    return this.conn.read(buffer).catch(rethrowTransport);
  }
  write(data: Uint8Array): Promise<number> {
    return this.conn.write(data).catch(rethrowTransport);
  }
  close(): void {
    this.conn.close();
  }
  closeWrite(): Promise<void> {
    return this.conn.closeWrite().catch(rethrowTransport);
  }
}

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

/** Listens on plain TCP. */
export function listenTcp(address: Address, events: ListenEvents = {}): Listener {
  const acceptor = new Acceptor(
    Deno.listen({ hostname: address.hostname, port: address.port }),
    events,
  );
  return {
    address: acceptor.address,
    async accept() {
      const conn = await acceptor.next();
      return conn ? new TcpConnection(conn) : null;
    },
    close: () => acceptor.close(),
  };
}

/**
 * Connects over plain TCP, from `localAddress` when it is given (the source
 * address the server sees; `rpc up` gives each client of a cluster its own).
 */
export async function connectTcp(
  address: Address,
  signal?: AbortSignal,
  localAddress?: string,
): Promise<Connection> {
  if (localAddress !== undefined) return await connectTcpFrom(address, localAddress, signal);
  try {
    return new TcpConnection(
      await Deno.connect({ hostname: address.hostname, port: address.port, signal }),
    );
  } catch (error) {
    throw connectError(`${address.hostname}:${address.port}`, error, signal);
  }
}

/**
 * Connects over TCP from a given source address. Deno.connect cannot bind
 * one, so this goes through node:net and its `localAddress`.
 */
async function connectTcpFrom(
  address: Address,
  localAddress: string,
  signal?: AbortSignal,
): Promise<Connection> {
  // Loaded here: only a connection from a chosen address (rpc up's --local) needs node:net.
  const { default: net } = await import("node:net");
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address.hostname, port: address.port, localAddress });
    const onAbort = () => fail(undefined);
    const fail = (error: unknown) => {
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(
        connectError(`${address.hostname}:${address.port} from ${localAddress}`, error, signal),
      );
    };
    if (signal?.aborted) return fail(undefined);
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("error", fail);
    socket.once("connect", () => {
      signal?.removeEventListener("abort", onAbort);
      socket.off("error", fail);
      resolve(new TlsConnection(address, socket));
    });
  });
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
