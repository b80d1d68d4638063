/**
 * Opening a client: {@linkcode connect} dials a server over the transport its
 * address names (TCP, TLS, a unix socket, or a dialer of the caller's, such as
 * the NATS broker's), and {@linkcode connectOver} runs the handshake over any
 * connection: `HELLO` for the version, then `AUTH` when a secret or the admin
 * token is to be proven. What it returns is an {@linkcode RpcClient}.
 *
 * @module
 */

import { MessageChannel } from "../wire/channel.ts";
import { ErrorKind, ErrorReason, RpcError } from "../errors.ts";
import {
  type AuthReply,
  CONNECTION_SERIAL,
  errorFromException,
  type HelloReply,
  type Message,
  PROTOCOL_VERSIONS,
} from "../wire/message.ts";
import {
  type Connection,
  connectTcp,
  connectTls,
  connectUnix,
  formatAddress,
} from "../transport/mod.ts";
import { VERSION } from "../version.ts";
import { type ClientOptions, type Endpoint, parseEndpoint, RpcClient } from "./client.ts";
import { type Pending, replyError } from "./requests.ts";
import { parseAuthReply, parseHelloReply } from "./replies.ts";

/**
 * Connects to a server and performs the version handshake.
 *
 * @throws {RpcError} `Unavailable` when nobody listens, `Timeout` past
 * `connectTimeoutMs`, or the server's refusal (`Unsupported Version`,
 * `Client Not Registered`).
 */
export async function connect(
  target: string | (Endpoint & { name?: string }),
  options: ClientOptions = {},
): Promise<RpcClient> {
  const endpoint = typeof target === "string" ? parseEndpoint(target) : target;
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  const signal = AbortSignal.timeout(timeoutMs);
  const conn = options.connection ??
    (options.dial
      ? await options.dial(endpoint, signal)
      : endpoint.path !== undefined
      ? await connectUnix(endpoint.path, signal)
      : options.tls
      ? await connectTls(endpoint, options.tls, signal, options.localAddress)
      : await connectTcp(endpoint, signal, options.localAddress));
  return await connectOver(conn, options);
}

/**
 * Performs the version handshake (and the secret's proof) over a connection
 * opened by any transport, such as one end of an in-memory pair, and
 * returns the client. `options.tls` is not used: the connection is what it
 * is. The connection is closed when the handshake fails.
 *
 * @throws {RpcError} `Timeout` past `connectTimeoutMs`, or the server's
 * refusal (`Unsupported Version`, `Client Not Registered`).
 */
export async function connectOver(
  conn: Connection,
  options: ClientOptions = {},
): Promise<RpcClient> {
  const endpoint = conn.remote;
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  const channel = new MessageChannel(conn, {
    maxFrameBytes: options.maxFrameBytes,
    ...(conn.writesAreMessages ? { earlyWriteBytes: Infinity } : {}),
  });
  const pending = new Map<number, Pending>();
  let connectionError: RpcError | undefined;
  const reading = channel.readAll({
    onMessage(message) {
      const waiter = message.serial === CONNECTION_SERIAL ? undefined : pending.get(message.serial);
      if (!waiter) {
        // An error about the connection, not one call (servers before CONNECTION_SERIAL sent
        // these with serial 0, which no call has once the handshake is over): every call
        // waiting fails with it, and the connection is closed.
        if (
          message.type === "RPC-EX" &&
          (message.serial === CONNECTION_SERIAL || message.serial === 0)
        ) {
          connectionError ??= errorFromException(message.value);
          for (const call of pending.values()) {
            call.settle?.();
            call.reject(connectionError);
          }
          pending.clear();
          channel.close();
        }
        return;
      }
      if (message.type === "RPC-PART") {
        waiter.onPart?.(message.value.values);
        return;
      }
      pending.delete(message.serial);
      waiter.settle?.();
      waiter.resolve(message);
    },
    onMalformed(error, serial) {
      // A reply we cannot read, though its envelope names the request it answers: that
      // request fails with why, rather than waiting for a reply that has come and gone.
      const waiter = serial === undefined ? undefined : pending.get(serial);
      if (!waiter) return;
      pending.delete(serial!);
      waiter.settle?.();
      waiter.reject(error);
    },
  });
  let handshakeFailed: ((error: RpcError) => void) | undefined;
  reading.then(
    () =>
      handshakeFailed?.(
        connectionError ??
          new RpcError(ErrorKind.Unavailable, "Connection closed during the handshake"),
      ),
    (error) => handshakeFailed?.(RpcError.from(error)),
  );
  /** Sends one handshake message (serial 0) and waits for its reply. */
  const exchange = (message: Message): Promise<Message> => {
    const reply = Promise.withResolvers<Message>();
    handshakeFailed = reply.reject;
    pending.set(0, { resolve: reply.resolve, reject: reply.reject });
    channel.send(message);
    return reply.promise;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new RpcError(ErrorKind.Timeout, `No handshake reply within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  let reply: Message;
  let hello: HelloReply | undefined;
  let authenticated: AuthReply | undefined;
  try {
    reply = await Promise.race([
      exchange({
        type: "HELLO",
        serial: 0,
        value: {
          versions: [...PROTOCOL_VERSIONS],
          software: `rpc/${VERSION}`,
          ...(options.client ? { client: options.client } : {}),
          ...(options.adminToken ? { admin: true } : {}),
        },
      }),
      expired,
    ]);
    if (reply.type === "HELLO") {
      hello = parseHelloReply(reply.value);
      const auth = await Promise.race([authenticate(exchange, hello, options), expired]);
      if (auth && auth.type !== "AUTH") throw replyError(auth);
      authenticated = auth ? parseAuthReply(auth.value) : undefined;
    }
  } catch (error) {
    channel.close();
    if (error instanceof RpcError && error.reason === ErrorReason.PeerSpeaksTls) {
      throw new RpcError(
        ErrorKind.Unavailable,
        `${formatAddress(endpoint)} serves TLS: connect with TLS`,
        { cause: error, reason: ErrorReason.PeerSpeaksTls },
      );
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
  if (!hello) {
    channel.close();
    throw replyError(reply);
  }
  const closed = reading.then(() => {
    if (connectionError) throw connectionError;
  });
  const client = new RpcClient(channel, hello, closed, pending);
  client.authenticated = authenticated;
  return client;
}

/**
 * Answers the server's `HELLO` with `AUTH` when there is something to prove
 * (the client's secret, the admin token) or the server requires it: HMACs
 * over the server's nonce and a fresh one of ours, never the secrets
 * themselves. Resolves to the server's reply, or `undefined` when no `AUTH`
 * was needed.
 */
async function authenticate(
  exchange: (message: Message) => Promise<Message>,
  hello: HelloReply,
  options: ClientOptions,
): Promise<Message | undefined> {
  const required = hello["auth-required"] === true;
  if (!required && !options.secret && !options.adminToken) return undefined;
  // Loaded only when there is something to prove: node:crypto is slow to load.
  const { authProof, newNonce, proofKey } = await import("../wire/auth.ts");
  if (typeof hello.nonce !== "string") {
    return Promise.reject(
      new RpcError(
        ErrorKind.UnsupportedVersion,
        `Server ${hello.server} sent no nonce: it cannot check a secret without receiving it, and this client does not send secrets`,
      ),
    );
  }
  const context = {
    client: options.client ?? "",
    server: hello.server,
    serverNonce: hello.nonce,
    clientNonce: newNonce(),
  };
  return exchange({
    type: "AUTH",
    serial: 0,
    value: {
      nonce: context.clientNonce,
      ...(options.secret
        ? { proof: authProof(proofKey(options.secret), { ...context, role: "client" }) }
        : {}),
      ...(options.adminToken
        ? {
          "admin-proof": authProof(proofKey(options.adminToken), { ...context, role: "admin" }),
        }
        : {}),
    },
  });
}
