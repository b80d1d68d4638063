/**
 * Plain TCP: listening, and connecting (from a chosen source address too).
 *
 * @module
 */

import { rethrowTransport } from "./errors.ts";
import type { Address, Connection, Listener, ListenEvents } from "./mod.ts";
import { Acceptor, addressOf, connectError } from "./socket.ts";
import { TlsConnection } from "./tls.ts";

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
