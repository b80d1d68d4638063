/**
 * One rpc session behind an HTTP connection: an in-memory connection the
 * server serves like any TCP one (counted against its connection limits,
 * closed when idle, listed by `rpc admin clients`), whose peer address is the
 * HTTP caller's and whose certificate name is the one its TLS client
 * certificate gave. The gateway speaks the ordinary protocol over it with
 * the client library: `HELLO` with the caller's credential, then calls.
 *
 * @module
 */

import type { RpcClient } from "../client/client.ts";
import { connect } from "../client/connect.ts";
import { MessageChannel } from "../wire/channel.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import { errorFromException } from "../wire/message.ts";
import { type MemoryConnection, memoryPair } from "../transport/memory.ts";
import type { RpcServer } from "../server/server.ts";
import type { Address, Connection } from "../transport/mod.ts";

/** Who an HTTP request says it is. */
export interface Credential {
  /** The client name claimed; absent for an anonymous caller (or one a certificate names). */
  client?: string;
  secret?: string;
  /** The header value it came from, or "" without one: requests with the same key share a session. */
  key: string;
}

/**
 * Reads `Authorization: Bearer NAME:SECRET` (or `Bearer NAME` for a client
 * without a secret). No header is an anonymous caller.
 *
 * @throws {RpcError} `Unauthorized` for any other form.
 */
export function parseCredential(header: string | undefined): Credential {
  if (header === undefined || header.trim() === "") return { key: "" };
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!match) {
    throw new RpcError(
      ErrorKind.Unauthorized,
      "Cannot read Authorization header: expected Bearer NAME:SECRET (or Bearer NAME)",
    );
  }
  const token = match[1];
  const colon = token.indexOf(":");
  const client = colon < 0 ? token : token.slice(0, colon);
  const secret = colon < 0 ? undefined : token.slice(colon + 1);
  if (client === "") {
    throw new RpcError(ErrorKind.Unauthorized, "Cannot read Authorization header: no client name");
  }
  return { client, ...(secret ? { secret } : {}), key: header.trim() };
}

/** A session on the server for one HTTP connection and one credential. */
export class GatewaySession {
  /** Whether the server took the connection (false: refused by its limits, or stopping). */
  readonly accepted: boolean;
  #pipe: { client: MemoryConnection; server: MemoryConnection };
  #client: Promise<RpcClient> | undefined;
  #credential: Credential | undefined;
  #closed = false;

  /** `via` is the HTTP connection: its client certificate names the caller, once its handshake is done. */
  constructor(
    server: RpcServer,
    remote: Address,
    via: Pick<Connection, "peerName" | "handshaking">,
  ) {
    const [client, serverEnd] = memoryPair({ remote, via });
    this.#pipe = { client, server: serverEnd };
    this.accepted = server.serveConnection(this.#pipe.server);
    this.#pipe.client.closed.then(() => (this.#closed = true));
  }

  /** Settles once the server (or the gateway) has closed the session. */
  get closed(): Promise<void> {
    return this.#pipe.client.closed;
  }

  /** Whether the session has closed. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** The credential the session was opened with, once it has been. */
  get credential(): Credential | undefined {
    return this.#credential;
  }

  /** Why the server refused the connection (when {@linkcode accepted} is false). */
  async refusal(): Promise<RpcError> {
    let error = new RpcError(ErrorKind.Unavailable, "Connection refused: the server is stopping");
    const channel = new MessageChannel(this.#pipe.client);
    await channel.readAll({
      onMessage(message) {
        if (message.type === "RPC-EX") error = errorFromException(message.value);
      },
      onMalformed() {},
    }).catch(() => {});
    channel.close();
    return error;
  }

  /**
   * The client speaking for `credential`, after its handshake. The first call
   * sends `HELLO`; later ones with the same credential reuse it.
   *
   * @throws {RpcError} the server's refusal (`Unauthorized`, `Client Not Registered`, `Unavailable`).
   */
  client(credential: Credential): Promise<RpcClient> {
    if (this.#client) return this.#client;
    this.#credential = credential;
    this.#client = connect({ hostname: "memory", port: 0 }, {
      connection: this.#pipe.client,
      ...(credential.client !== undefined ? { client: credential.client } : {}),
      ...(credential.secret !== undefined ? { secret: credential.secret } : {}),
    });
    this.#client.catch(() => this.close());
    return this.#client;
  }

  /** Closes the session; its calls in flight are cancelled by the server. */
  close(): void {
    this.#closed = true;
    this.#pipe.client.close();
  }
}
