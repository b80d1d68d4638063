/**
 * Transports: plain TCP, TLS, and mutual TLS, behind one small interface so
 * the server and the client never see which is in use. Platform errors are
 * mapped to {@linkcode RpcError} kinds here.
 *
 * TCP uses Deno's own sockets. TLS uses `node:tls`, because it can ask for a
 * client certificate and show the peer's certificate (for pinning), which
 * `Deno.listenTls` cannot. Deno's `node:tls` server does not check a client
 * certificate against a CA, so this module checks it itself: the certificate
 * must be issued and signed by the configured client CA and be in its
 * validity period; its CN then names the client.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import tls from "node:tls";
import type { ByteStream } from "./channel.ts";
import { ErrorKind, RpcError } from "./errors.ts";

/** An address. */
export interface Address {
  hostname: string;
  port: number;
}

/** One accepted or opened connection. */
export interface Connection extends ByteStream {
  readonly remote: Address;
  /** The client name a verified client certificate gives (mutual TLS). */
  readonly peerName?: string;
  closeWrite(): Promise<void>;
}

/** Accepts connections. */
export interface Listener {
  readonly address: Address;
  /** The next connection, or `null` once the listener is closed. */
  accept(): Promise<Connection | null>;
  close(): void;
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
// TCP

class TcpConnection implements Connection {
  readonly remote: Address;
  constructor(readonly conn: Deno.TcpConn) {
    const address = conn.remoteAddr as Deno.NetAddr;
    this.remote = { hostname: address.hostname, port: address.port };
    try {
      conn.setNoDelay(true);
    } catch {
      // The peer is already gone; reads will say so.
    }
  }
  read(buffer: Uint8Array): Promise<number | null> {
    return this.conn.read(buffer);
  }
  write(data: Uint8Array): Promise<number> {
    return this.conn.write(data);
  }
  close(): void {
    this.conn.close();
  }
  closeWrite(): Promise<void> {
    return this.conn.closeWrite();
  }
}

/** Listens on plain TCP. */
export function listenTcp(address: Address): Listener {
  const listener = Deno.listen({ hostname: address.hostname, port: address.port });
  const bound = listener.addr as Deno.NetAddr;
  return {
    address: { hostname: bound.hostname, port: bound.port },
    async accept() {
      for (;;) {
        try {
          return new TcpConnection(await listener.accept() as Deno.TcpConn);
        } catch (error) {
          if (
            error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted
          ) return null;
          // A reset before accept, or out of descriptors: wait a moment and go on.
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    },
    close() {
      try {
        listener.close();
      } catch {
        // Already closed.
      }
    },
  };
}

/** Connects over plain TCP. */
export async function connectTcp(address: Address, signal?: AbortSignal): Promise<Connection> {
  try {
    return new TcpConnection(
      await Deno.connect({ hostname: address.hostname, port: address.port, signal }),
    );
  } catch (error) {
    throw connectError(address, error, signal);
  }
}

function connectError(address: Address, error: unknown, signal?: AbortSignal): RpcError {
  if (signal?.aborted) {
    return new RpcError(
      ErrorKind.Timeout,
      `Cannot connect to ${address.hostname}:${address.port}: no answer in time`,
    );
  }
  const rpcError = RpcError.from(error);
  return new RpcError(
    rpcError.kind === ErrorKind.Internal ? ErrorKind.Unavailable : rpcError.kind,
    `Cannot connect to ${address.hostname}:${address.port}: ${rpcError.message}`,
  );
}

// ---------------------------------------------------------------------------
// TLS over node:tls sockets

const HIGH_WATER = 1024 * 1024;

/** Adapts a `node:tls` socket to the pull-style {@linkcode ByteStream}. */
class TlsConnection implements Connection {
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #error: unknown;
  #waiter: (() => void) | undefined;

  constructor(
    readonly socket: tls.TLSSocket,
    readonly remote: Address,
    readonly peerName?: string,
  ) {
    socket.setNoDelay(true);
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
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw RpcError.from(this.#error);
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
    const chunk = this.#chunks[0];
    const count = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, count));
    if (count === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(count);
    this.#queued -= count;
    if (this.#queued <= HIGH_WATER / 2 && this.socket.isPaused()) this.socket.resume();
    return count;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(RpcError.from(this.#error));
    return new Promise((resolve, reject) => {
      this.socket.write(
        data,
        (error?: Error | null) => (error ? reject(RpcError.from(error)) : resolve(data.length)),
      );
    });
  }

  close(): void {
    this.socket.destroy();
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.socket.end(resolve));
  }
}

/** The CN of a certificate subject such as `CN=c1\nO=Example`. */
export function commonName(subject: string): string | undefined {
  for (const part of subject.split(/\n|,\s*/)) {
    const [key, ...value] = part.split("=");
    if (key.trim() === "CN") return value.join("=").trim();
  }
  return undefined;
}

/**
 * Checks a client certificate against the client CA: issued and signed by
 * it, and valid now. Returns the certificate's CN.
 *
 * @throws {RpcError} `Unauthorized` saying why.
 */
export function verifyClientCertificate(
  raw: Uint8Array | undefined,
  ca: X509Certificate,
  now = new Date(),
): string {
  if (!raw || raw.length === 0) throw new RpcError(ErrorKind.Unauthorized, "No client certificate");
  const certificate = new X509Certificate(raw);
  if (!certificate.checkIssued(ca) || !certificate.verify(ca.publicKey)) {
    throw new RpcError(ErrorKind.Unauthorized, "Client certificate is not signed by the client CA");
  }
  if (now < new Date(certificate.validFrom) || now > new Date(certificate.validTo)) {
    throw new RpcError(ErrorKind.Unauthorized, "Client certificate is expired or not yet valid");
  }
  const name = commonName(certificate.subject);
  if (!name) throw new RpcError(ErrorKind.Unauthorized, "Client certificate has no CN");
  return name;
}

/**
 * Listens with TLS. With `clientCa`, a connection whose client certificate
 * fails {@linkcode verifyClientCertificate} is reported to `onRejected` and
 * closed before it reaches the server.
 */
export function listenTls(
  address: Address,
  options: TlsServerOptions,
  onRejected: (remote: Address, reason: string) => void = () => {},
): Promise<Listener> {
  const ca = options.clientCa ? new X509Certificate(options.clientCa) : undefined;
  const waiting: ((connection: Connection | null) => void)[] = [];
  const ready: Connection[] = [];
  let closed = false;
  const deliver = (connection: Connection) => {
    const waiter = waiting.shift();
    if (waiter) waiter(connection);
    else ready.push(connection);
  };
  const server = tls.createServer({
    cert: options.cert,
    key: options.key,
    requestCert: ca !== undefined,
    rejectUnauthorized: false,
  }, (socket: tls.TLSSocket) => {
    const remote = { hostname: socket.remoteAddress ?? "?", port: socket.remotePort ?? 0 };
    let peerName: string | undefined;
    if (ca) {
      try {
        peerName = verifyClientCertificate(socket.getPeerCertificate(true)?.raw, ca);
      } catch (error) {
        onRejected(remote, (error as Error).message);
        socket.destroy();
        return;
      }
    }
    deliver(new TlsConnection(socket, remote, peerName));
  });
  server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
    onRejected(
      { hostname: socket.remoteAddress ?? "?", port: socket.remotePort ?? 0 },
      error.message,
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(address.port, address.hostname, () => {
      server.off("error", reject);
      const bound = server.address() as { address: string; port: number };
      resolve({
        address: { hostname: bound.address, port: bound.port },
        accept() {
          const connection = ready.shift();
          if (connection) return Promise.resolve(connection);
          if (closed) return Promise.resolve(null);
          return new Promise((resolveAccept) => waiting.push(resolveAccept));
        },
        close() {
          if (closed) return;
          closed = true;
          server.close();
          for (const waiter of waiting.splice(0)) waiter(null);
        },
      });
    });
  });
}

/** Normalizes a SHA-256 fingerprint to lowercase hex without colons. */
export function normalizeFingerprint(text: string): string {
  return text.replace(/^sha256:/i, "").replaceAll(":", "").toLowerCase();
}

/** Connects with TLS, verifying the server by CA or by pinned fingerprint. */
export function connectTls(
  address: Address,
  options: TlsClientOptions,
  signal?: AbortSignal,
): Promise<Connection> {
  const isIp = /^[\d.]+$|:/.test(address.hostname);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: address.hostname,
      port: address.port,
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
      reject(error instanceof RpcError ? error : connectError(address, error, signal));
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
      resolve(new TlsConnection(socket, address));
    });
  });
}
