/**
 * TLS and mutual TLS. Errors of `node:tls` are mapped to
 * {@linkcode RpcError} kinds here.
 *
 * The listener accepts TCP connections with Deno's own listener, so a
 * connection exists for the server from the moment it is accepted (it is
 * counted against the connection limits before any TLS handshake), and a
 * failed accept (out of file descriptors, EMFILE) pauses and tries again
 * instead of ending the listener. TLS runs on `node:tls`, which can ask for a
 * client certificate and show the peer's certificate (for pinning), as
 * `Deno.listenTls` cannot: each accepted connection is handed to a
 * `tls.Server` as a stream. With a client CA the TLS stack verifies the
 * client's chain, signatures and validity; {@linkcode clientNameOf} then
 * applies rpc's policy to the leaf certificate and names the client.
 *
 * @module
 */

import type { X509Certificate } from "node:crypto";
import type net from "node:net";
import type { Duplex } from "node:stream";
import type tls from "node:tls";
import type { clientNameOf } from "./certificate.ts";
import { writeAll } from "../wire/channel.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import type { Address, Connection, Listener, ListenEvents } from "./mod.ts";
import { Acceptor, addressOf, connectError } from "./socket.ts";
import { transportError } from "./errors.ts";

/** What TLS needs beyond Deno: node's TLS, streams and certificates, and the X.509 parser. */
interface TlsModules {
  tls: typeof tls;
  Duplex: typeof Duplex;
  X509Certificate: typeof X509Certificate;
  clientNameOf: typeof clientNameOf;
}

let tlsModules: TlsModules | undefined;

/**
 * Loads what TLS needs, once, on first use: loading it takes several times
 * as long as a whole plain-TCP `rpc call`, which never needs it (every
 * import of the transports loads this module, for {@linkcode TlsConnection}).
 */
async function loadTls(): Promise<TlsModules> {
  if (tlsModules) return tlsModules;
  const [nodeTls, stream, crypto, certificate] = await Promise.all([
    import("node:tls"),
    import("node:stream"),
    import("node:crypto"),
    import("./certificate.ts"),
  ]);
  tlsModules = {
    tls: nodeTls.default,
    Duplex: stream.Duplex,
    X509Certificate: crypto.X509Certificate,
    clientNameOf: certificate.clientNameOf,
  };
  return tlsModules;
}

/** The TLS modules, for code that runs only once {@linkcode loadTls} has. */
function loadedTls(): TlsModules {
  if (!tlsModules) throw new Error("TLS used before its modules were loaded");
  return tlsModules;
}

/** TLS settings of a server. */
export interface TlsServerOptions {
  /** PEM certificate chain. */
  cert: string;
  /** PEM private key. */
  key: string;
  /** PEM CA that signs client certificates; when set, every client must present one. */
  clientCa?: string;
}

/** TLS settings of a client. */
export interface TlsClientOptions {
  /** PEM CA to verify the server with; default: the system's trust store. */
  ca?: string;
  /** SHA-256 fingerprint the server's certificate must have (hex, colons optional). */
  pin?: string;
  /** PEM client certificate and key, for mutual TLS. */
  cert?: string;
  key?: string;
  /** Name to verify the certificate against; default: the host connected to. */
  serverName?: string;
}

// ---------------------------------------------------------------------------
// TLS over node:tls sockets

const HIGH_WATER = 1024 * 1024;

/**
 * Adapts a `node:tls` socket to the pull-style {@linkcode ByteStream} (and a
 * plain `node:net` one, for TCP from a chosen source address). An accepted
 * connection exists before its handshake is done: reads wait for it, writes
 * are held until it, and a failed handshake ends the stream.
 */
export class TlsConnection implements Connection {
  #socket: net.Socket | undefined;
  #peerName: string | undefined;
  #handshaking: boolean;
  #secured = Promise.withResolvers<boolean>();
  #abort: () => void;
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #error: unknown;
  #waiter: (() => void) | undefined;

  /** `socket` when it is already secured (a client's); else {@linkcode attach} or {@linkcode fail} follows. */
  constructor(readonly remote: Address, socket?: net.Socket, abort: () => void = () => {}) {
    this.#abort = abort;
    this.#handshaking = socket === undefined;
    if (socket) this.attach(socket, undefined);
  }

  get peerName(): string | undefined {
    return this.#peerName;
  }

  get handshaking(): boolean {
    return this.#handshaking;
  }

  /** The handshake is done: data flows from now on. */
  attach(socket: net.Socket, peerName: string | undefined): void {
    this.#socket = socket;
    this.#peerName = peerName;
    this.#handshaking = false;
    try {
      socket.setNoDelay(true);
    } catch {
      // A socket over a stream has no descriptor to set; its TCP connection has it set.
    }
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued > HIGH_WATER) socket.pause();
      this.#wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("error", (error: Error) => {
      this.#error ??= error;
      this.#wake();
    });
    this.#secured.resolve(true);
  }

  /** The handshake failed or the peer left before it: the stream ends. */
  fail(): void {
    if (!this.#handshaking) return;
    this.#handshaking = false;
    this.#ended = true;
    this.#secured.resolve(false);
    this.#abort();
    this.#wake();
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw transportError(this.#error);
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
    const chunk = this.#chunks[0];
    const count = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, count));
    if (count === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(count);
    this.#queued -= count;
    if (this.#queued <= HIGH_WATER / 2 && this.#socket?.isPaused()) this.#socket.resume();
    return count;
  }

  async write(data: Uint8Array): Promise<number> {
    if (!this.#socket && !(await this.#secured.promise)) {
      throw new RpcError(ErrorKind.Unavailable, "The connection closed before its TLS handshake");
    }
    if (this.#error) throw transportError(this.#error);
    const socket = this.#socket!;
    return await new Promise((resolve, reject) => {
      socket.write(
        data,
        (error?: Error | null) => (error ? reject(transportError(error)) : resolve(data.length)),
      );
    });
  }

  close(): void {
    if (this.#socket) this.#socket.destroy();
    else this.fail();
  }

  async closeWrite(): Promise<void> {
    if (!this.#socket && !(await this.#secured.promise)) return;
    await new Promise<void>((resolve) => this.#socket!.end(resolve));
  }
}

/** A fatal TLS alert (protocol_version), for a peer whose first bytes are not a TLS handshake. */
const NOT_TLS_ALERT = new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]);

/** The content type of a TLS handshake record, the first byte a TLS client sends. */
const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * A node stream over a Deno TCP connection, for `tls.Server` to run a
 * handshake on. A peer whose first byte cannot start a TLS handshake (a
 * plain-TCP rpc client, say) is answered with a TLS alert, so that it can
 * tell it reached a TLS server, and `notTls` is called; the stream then ends.
 */
function streamOver(conn: Deno.TcpConn, notTls: () => void): Duplex {
  let reading = false;
  let first = true;
  return new (loadedTls().Duplex)({
    read() {
      if (reading) return;
      reading = true;
      const buffer = new Uint8Array(17 * 1024); // one TLS record and its header
      conn.read(buffer).then(
        async (count) => {
          reading = false;
          if (first && count !== null && count > 0 && buffer[0] !== TLS_HANDSHAKE_RECORD) {
            first = false;
            await writeAll(conn, NOT_TLS_ALERT).catch(() => {});
            notTls();
            this.push(null);
            return;
          }
          first = false;
          this.push(count === null ? null : buffer.subarray(0, count));
        },
        (error) => {
          reading = false;
          this.destroy(error);
        },
      );
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writeAll(conn, chunk).then(() => callback(), callback);
    },
    final(callback) {
      conn.closeWrite().then(() => callback(), () => callback());
    },
    destroy(error, callback) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      callback(error);
    },
  });
}

/**
 * Listens with TLS. Connections are returned as soon as they are accepted,
 * before their handshake. With `clientCa`, the TLS stack verifies each
 * client's certificate chain; a connection whose handshake fails, whose
 * chain does not verify, or whose certificate {@linkcode clientNameOf}
 * refuses, is reported to `onRejected` and ends.
 */
export async function listenTls(
  address: Address,
  options: TlsServerOptions,
  events: ListenEvents = {},
): Promise<Listener> {
  const { tls, X509Certificate } = await loadTls();
  const ownCertificate = new Uint8Array(new X509Certificate(options.cert).raw);
  const clientCa = options.clientCa ? new X509Certificate(options.clientCa) : undefined;
  const serverOptions: tls.TlsOptions = {
    cert: options.cert,
    key: options.key,
    ...(options.clientCa ? { ca: options.clientCa, requestCert: true } : {}),
    rejectUnauthorized: false,
    // The server bounds the handshake itself (--handshake-timeout), counting from accept.
    handshakeTimeout: 0,
  };
  const acceptor = new Acceptor(
    Deno.listen({ hostname: address.hostname, port: address.port }),
    events,
  );
  const reject = (remote: Address, reason: string) => events.onRejected?.(remote, reason);

  const secure = (conn: Deno.TcpConn): Connection => {
    try {
      conn.setNoDelay(true);
    } catch {
      // The peer is already gone; the handshake will say so.
    }
    const remote = addressOf(conn);
    const stream = streamOver(conn, () => {
      reject(remote, "not a TLS client: its first bytes are not a TLS handshake");
      connection.fail();
    });
    const connection: TlsConnection = new TlsConnection(remote, undefined, () => stream.destroy());
    // One tls.Server per connection: its events then belong to this connection alone.
    const server = tls.createServer(serverOptions);
    server.once("secureConnection", (socket: tls.TLSSocket) => {
      let peerName: string | undefined;
      if (options.clientCa) {
        try {
          peerName = verifiedClientName(socket, ownCertificate, clientCa!);
        } catch (error) {
          reject(remote, (error as Error).message);
          socket.destroy();
          connection.fail();
          return;
        }
      }
      connection.attach(socket, peerName);
    });
    server.once("tlsClientError", (error: Error) => {
      if (!connection.handshaking) return; // already refused as not TLS
      reject(remote, `TLS handshake failed: ${error.message}`);
      connection.fail();
    });
    // A peer that leaves before the handshake is done frees its connection at once.
    stream.once("end", () => connection.fail());
    stream.once("close", () => connection.fail());
    server.emit("connection", stream);
    return connection;
  };

  return {
    address: acceptor.address,
    async accept() {
      const conn = await acceptor.next();
      return conn ? secure(conn) : null;
    },
    close: () => acceptor.close(),
  };
}

/**
 * The client name of a socket whose handshake is done: the TLS stack must
 * have verified the chain, and the leaf must pass {@linkcode clientNameOf}.
 *
 * @throws {RpcError} `Unauthorized` saying why.
 */
function verifiedClientName(
  socket: tls.TLSSocket,
  ownCertificate: Uint8Array,
  clientCa: X509Certificate,
): string {
  const peer = socket.getPeerCertificate();
  if (!peer?.raw || peer.raw.length === 0) {
    throw new RpcError(ErrorKind.Unauthorized, "No client certificate");
  }
  if (!socket.authorized) {
    const why = explainUnverified(peer.raw, clientCa);
    throw new RpcError(
      ErrorKind.Unauthorized,
      `Client certificate refused by TLS verification: ${
        socket.authorizationError ?? "no reason given"
      }${why ? ` (${why})` : ""}`,
    );
  }
  return loadedTls().clientNameOf(new Uint8Array(peer.raw), { ownCertificate });
}

/**
 * A likely reason, for the log, why the TLS stack refused a client
 * certificate (its own error code is often generic). The decision is the
 * stack's; this only reads the certificate's dates and issuer.
 */
function explainUnverified(der: Uint8Array, clientCa: X509Certificate): string | undefined {
  try {
    const certificate = new (loadedTls().X509Certificate)(der);
    const now = Date.now();
    const from = new Date(certificate.validFrom);
    const to = new Date(certificate.validTo);
    if (now < from.getTime()) return `not valid before ${from.toISOString()}`;
    if (now > to.getTime()) return `expired at ${to.toISOString()}`;
    if (certificate.checkIssued(clientCa) && !certificate.verify(clientCa.publicKey)) {
      return "its signature does not verify with the client CA's key";
    }
    if (!certificate.checkIssued(clientCa)) return "not issued by the client CA";
  } catch {
    // Not readable: the stack's code is all there is.
  }
  return undefined;
}

/** Normalizes a SHA-256 fingerprint to lowercase hex without colons. */
export function normalizeFingerprint(text: string): string {
  return text.replace(/^sha256:/i, "").replaceAll(":", "").toLowerCase();
}

/**
 * Connects with TLS, verifying the server by CA or by pinned fingerprint;
 * from `localAddress` when it is given, as {@linkcode connectTcp}.
 */
export async function connectTls(
  address: Address,
  options: TlsClientOptions,
  signal?: AbortSignal,
  localAddress?: string,
): Promise<Connection> {
  const { tls } = await loadTls();
  const isIp = /^[\d.]+$|:/.test(address.hostname);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: address.hostname,
      port: address.port,
      ...(localAddress !== undefined ? { localAddress } : {}),
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.cert && options.key ? { cert: options.cert, key: options.key } : {}),
      ...(options.serverName
        ? { servername: options.serverName }
        : isIp
        ? {}
        : { servername: address.hostname }),
      // With a pin and no CA, the pin is the trust decision.
      rejectUnauthorized: !(options.pin && !options.ca),
    });
    const fail = (error: unknown) => {
      socket.destroy();
      reject(
        error instanceof RpcError ? error : connectError(
          `${address.hostname}:${address.port}${
            localAddress === undefined ? "" : ` from ${localAddress}`
          }`,
          error,
          signal,
        ),
      );
    };
    const onAbort = () =>
      fail(
        new RpcError(
          ErrorKind.Timeout,
          `Cannot connect to ${address.hostname}:${address.port}: no answer in time`,
        ),
      );
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("error", fail);
    socket.once("secureConnect", () => {
      signal?.removeEventListener("abort", onAbort);
      socket.off("error", fail);
      if (options.pin) {
        const seen = normalizeFingerprint(socket.getPeerCertificate()?.fingerprint256 ?? "");
        if (seen !== normalizeFingerprint(options.pin)) {
          fail(
            new RpcError(
              ErrorKind.Unauthorized,
              `Server certificate of ${address.hostname}:${address.port} has SHA-256 ${seen}, not the pinned ${
                normalizeFingerprint(options.pin)
              }`,
            ),
          );
          return;
        }
      }
      resolve(new TlsConnection(address, socket));
    });
  });
}
