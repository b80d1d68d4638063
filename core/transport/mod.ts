/**
 * The transport contract: what the server and the client need of a
 * connection, and nothing more. A {@linkcode Connection} is bytes in
 * (`read`), bytes out (`write`), `close` (and `closeWrite`, a half close),
 * the peer's {@linkcode Address} and, over mutual TLS, the client name its
 * verified certificate gives. A {@linkcode Listener} yields connections.
 *
 * Implementations, one file (or folder) each:
 *
 * - `tcp.ts`: plain TCP ({@linkcode listenTcp}, {@linkcode connectTcp});
 * - `tls.ts`: TLS and mutual TLS over accepted TCP connections
 *   ({@linkcode listenTls}, {@linkcode connectTls});
 * - `unix.ts`: unix domain sockets ({@linkcode listenUnix},
 *   {@linkcode connectUnix}); the socket file's mode decides who may connect;
 * - `nats/`: sessions through a NATS broker (`Broker` in `nats/mod.ts`:
 *   `open` a session to a server by name or to a service's provider,
 *   `listen` for a server's); imported from there, not re-exported here,
 *   so that only what uses a broker loads the NATS client;
 *   `nats/broker_url.ts` takes broker URLs apart and shows them with the
 *   password hidden;
 * - `memory.ts`: an in-memory pair ({@linkcode memoryPair}) and listener
 *   ({@linkcode MemoryListener}), for tests and for embedding a server in a
 *   process without a socket.
 *
 * The server counts a connection from the moment a listener returns it
 * (before any TLS handshake), so limits and the handshake timeout hold for
 * every transport alike. Platform errors are mapped to
 * {@linkcode RpcError} kinds by each implementation.
 *
 * @example Bytes over an in-memory listener
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const listener = new MemoryListener("demo");
 * const accepted = listener.accept();
 * const client = listener.connect();
 * const server = (await accepted)!;
 * await client.write(new TextEncoder().encode("hi"));
 * assert.equal(await server.read(new Uint8Array(8)), 2);
 * assert.equal(formatAddress(server.remote), "memory:demo");
 * listener.close();
 * ```
 *
 * @module
 */

import type { ByteStream } from "../wire/channel.ts";

/**
 * A peer's or a listener's address. TCP and TLS give `hostname` (an IP) and
 * `port`; a unix domain socket gives `path` (the socket file), with
 * `hostname` `unix` and `port` 0; an in-memory connection gives the name
 * its listener was made with in `path` and `hostname` `memory`.
 */
export interface Address {
  hostname: string;
  port: number;
  /** The socket file (unix) or the listener's name (memory); absent over TCP and TLS. */
  path?: string;
}

/** One accepted or opened connection. */
export interface Connection extends ByteStream {
  readonly remote: Address;
  /** The client name a verified client certificate gives (mutual TLS), once the handshake is done. */
  readonly peerName?: string;
  /** True while an accepted TLS connection has not finished its handshake. */
  readonly handshaking?: boolean;
  /**
   * True when each write becomes one message of its own on the way (NATS):
   * fewer, larger writes then cost less, so a channel over it writes once per
   * tick rather than starting early (see `core/wire/channel.ts`).
   */
  readonly writesAreMessages?: boolean;
  closeWrite(): Promise<void>;
}

/** Accepts connections. */
export interface Listener {
  readonly address: Address;
  /** The next connection, or `null` once the listener is closed. */
  accept(): Promise<Connection | null>;
  close(): void;
}

/** What a listener reports about connections that never reach the server, and about accepting. */
export interface ListenEvents {
  /** A TLS connection closed by the listener: its handshake or its client certificate failed. */
  onRejected?(remote: Address, reason: string): void;
  /**
   * Accepting failed, for example because the process is out of file
   * descriptors (EMFILE); the listener pauses `pauseMs` and tries again.
   * `failures` counts the failures in a row.
   */
  onAcceptError?(error: Error, failures: number, pauseMs: number): void;
  /** Accepting works again after `failures` failures in a row over `ms`. */
  onAcceptRecovered?(failures: number, ms: number): void;
}

/**
 * Formats an address: `host:port` (IPv6 hosts bracketed), `unix:/path` for
 * a unix socket, `memory:name` for an in-memory one.
 */
export function formatAddress(address: Address): string {
  if (address.path !== undefined) return `${address.hostname}:${address.path}`;
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}

export { connectTcp, listenTcp } from "./tcp.ts";
export { Acceptor, MAX_ACCEPT_PAUSE_MS } from "./socket.ts";
export {
  connectTls,
  listenTls,
  normalizeFingerprint,
  type TlsClientOptions,
  type TlsServerOptions,
} from "./tls.ts";
export { connectUnix, listenUnix, type UnixListenOptions } from "./unix.ts";
export { MemoryListener, memoryPair } from "./memory.ts";
