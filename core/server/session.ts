/**
 * One connection as the server's stages see it: the {@linkcode Session}
 * record every stage of the call pipeline reads and updates (who the client
 * is, what it proved, its calls in flight, its reply budget), and the few
 * helpers they share to name a peer and to answer it with an `RPC-EX`.
 *
 * @module
 */

import type { ConnectionReplies } from "./backpressure.ts";
import type { ChannelOptions, MessageChannel } from "../wire/channel.ts";
import { RpcError } from "../errors.ts";
import type { ServerLimits } from "./limits.ts";
import { exceptionMessage } from "../wire/message.ts";
import { type Address, type Connection, formatAddress } from "../transport/mod.ts";

/** A client the server knows by name, with the address it must come from. */
export interface KnownClient {
  name: string;
  /** When set, connections claiming this name must come from this IP. */
  ip?: string;
  /** When set, the client must present the secret whose SHA-256 (hex) this is. */
  secretHash?: string;
}

/** What the server knows about one connection. */
export interface SessionInfo {
  id: number;
  remote: string;
  remoteIp: string;
  client: string | undefined;
  connectedAt: Date;
  calls: number;
  /** Whether the connection proved the admin token (`AUTH`). */
  admin: boolean;
}

/** Aborts one call in flight (time limit, `RPC-CANCEL`, the connection closing). */
export interface CallAbort {
  abort(reason?: unknown): void;
}

/** Everything the server's stages keep about one connection. */
export interface Session extends SessionInfo {
  conn: Connection;
  channel: MessageChannel;
  /** Its replies not yet written, and the calls that may start (backpressure). */
  replies: ConnectionReplies;
  identified: boolean;
  /** When the connection was accepted (performance.now()). */
  acceptedAt: number;
  /** Whether a complete message has arrived. */
  greeted: boolean;
  /** The nonce of this server's `HELLO` reply, which `AUTH` proofs sign. */
  nonce: string | undefined;
  /** The client name claimed in `HELLO` (`""` for none), which `AUTH` proofs sign. */
  claimed: string;
  /** Whether `AUTH` was sent (it may be sent once). */
  authenticated: boolean;
  /** A claimed client that must still prove its secret with `AUTH`. */
  awaitingProof: KnownClient | undefined;
  /** Set once the connection was refused: what it sent after that is ignored. */
  refused: boolean;
  /**
   * Set when the connection was admitted past the connection limits into a
   * slot kept for admins: why it would have been refused. Until it proves
   * the admin token it may send only `HELLO` and `AUTH`.
   */
  reserved: string | undefined;
  /** When the last complete message arrived (performance.now()). */
  lastMessageAt: number;
  inflight: Map<number, CallAbort>;
  /** Resolved when the last call in flight finishes, while the session drains. */
  idle: PromiseWithResolvers<void> | undefined;
}

/** Counters a server keeps. */
export interface ServerStats {
  /** Connections accepted since start. */
  connections: number;
  /** Connections refused (limits, failed TLS client checks) since start. */
  refused: number;
  callsServed: number;
  callsFailed: number;
  startedAt: Date;
}

/** How log lines name a connection: `client@address`, or the address alone. */
export function describe(session: SessionInfo): string {
  return session.client ? `${session.client}@${session.remote}` : session.remote;
}

/**
 * Sends an `RPC-EX`. Its message may quote what the client sent (a name, a
 * type, the versions it offered), so it can be too large for a frame: then it
 * goes out cut short instead of throwing out of the handler, which, in a call
 * or an admin request, would be an unhandled rejection that ends the server.
 */
export function sendException(channel: MessageChannel, serial: number, error: RpcError): void {
  try {
    channel.send(exceptionMessage(serial, error));
  } catch {
    const short = `${error.message.slice(0, 200)}… (cut short: too large for a frame)`;
    try {
      channel.send(exceptionMessage(serial, new RpcError(error.kind, short)));
    } catch {
      // Frames too small for even that: the caller cannot be answered, so do not keep it waiting.
      channel.close();
    }
  }
}

/** Normalizes an IP address for comparison (`::ffff:1.2.3.4` is `1.2.3.4`). */
export function normalizeIp(ip: string): string {
  const lower = ip.toLowerCase();
  return lower.startsWith("::ffff:") && lower.includes(".") ? lower.slice(7) : lower;
}

/**
 * What limits per address, refusal logs and IP checks key a peer by: its
 * normalized IP over TCP and TLS; `unix:/path` (or `memory:name`) over a
 * unix socket (or in memory), which no IP in init.yaml can equal, so a
 * client whose entry requires an IP is refused there.
 */
export function peerKey(address: Address): string {
  return address.path === undefined ? normalizeIp(address.hostname) : formatAddress(address);
}

/** What a new {@linkcode Session} starts from. */
export interface SessionStart {
  id: number;
  conn: Connection;
  channel: MessageChannel;
  replies: ConnectionReplies;
  /** Why the connection took a slot kept for admins, if it did. */
  reserved?: string;
  /** The time of accepting it (performance.now()). */
  now?: number;
}

/** A session for a connection just accepted: nobody identified, nothing proved, no calls. */
export function openSession(start: SessionStart): Session {
  const now = start.now ?? performance.now();
  return {
    id: start.id,
    remote: formatAddress(start.conn.remote),
    remoteIp: peerKey(start.conn.remote),
    client: undefined,
    admin: false,
    conn: start.conn,
    connectedAt: new Date(),
    acceptedAt: now,
    greeted: false,
    nonce: undefined,
    claimed: "",
    authenticated: false,
    awaitingProof: undefined,
    refused: false,
    reserved: start.reserved,
    lastMessageAt: now,
    calls: 0,
    channel: start.channel,
    replies: start.replies,
    identified: false,
    inflight: new Map(),
    idle: undefined,
  };
}

/**
 * How a session's channel reads: frames of at most `maxFrameBytes`,
 * integers of at most `maxIntegerDigits` read exactly only once a call's
 * target is authorized, and reading held while the client is not taking its
 * replies (`replies`).
 */
export function sessionChannelOptions(
  limits: ServerLimits,
  replies: ConnectionReplies,
  conn?: Pick<Connection, "writesAreMessages">,
): ChannelOptions {
  return {
    maxFrameBytes: limits.maxFrameBytes,
    // Where each write is a message of its own (NATS), replies leave once per tick.
    ...(conn?.writesAreMessages ? { earlyWriteBytes: Infinity } : {}),
    // maxUnsentBytes holds reading instead (and 0 turns that off).
    writeHighWaterBytes: Infinity,
    decode: { maxIntegerDigits: limits.maxIntegerDigits, deferArguments: true },
    onBacklog: (delta) => replies.changed(delta),
    mayRead: () => replies.mayRead(),
  };
}
