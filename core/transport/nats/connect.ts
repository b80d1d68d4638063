/**
 * Connecting to a NATS broker ({@linkcode dial}): its URL and credentials
 * in, a NATS connection out that reconnects by itself.
 *
 * @module
 */

import {
  connect as connectNats,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
} from "@nats-io/transport-node";
import { ErrorKind, RpcError } from "../../errors.ts";
import { parseBrokerUrl, redactBrokerUrl } from "./broker_url.ts";

/** Options of `Broker.connect` (and {@linkcode dial}). */
export interface BrokerOptions {
  /** `nats://[user:password@]host:port`; several separated by commas. */
  url: string;
  /**
   * The broker's own credentials, from a file: a NATS `.creds` file (user
   * JWT and nkey seed), or an nkey seed alone (`SU…`).
   */
  creds?: string;
  /** The name the broker shows for this connection. */
  name?: string;
  /** Give up the first connect after this many ms. Default 5 s. */
  connectTimeoutMs?: number;
  /** Told when the connection to the broker drops and comes back. */
  onStatus?: (event: "disconnected" | "reconnected", detail: string) => void;
}

const encoder = new TextEncoder();

/**
 * Connects to the broker, reconnecting by itself once connected.
 *
 * @throws {RpcError} `Unavailable` when it cannot be reached or refuses
 * the credentials; `Invalid Arguments` for a malformed URL.
 */
export async function dial(options: BrokerOptions): Promise<NatsConnection> {
  const url = redactBrokerUrl(options.url);
  const { servers, user, pass } = parseBrokerUrl(options.url);
  let authenticator;
  if (options.creds !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(options.creds);
    } catch (error) {
      throw new RpcError(
        ErrorKind.InvalidArguments,
        `Cannot read broker credentials ${options.creds}: ${(error as Error).message}`,
      );
    }
    authenticator = text.includes("-----BEGIN NATS USER JWT-----")
      ? credsAuthenticator(encoder.encode(text))
      : nkeyAuthenticator(encoder.encode(text.trim()));
  }
  let nc: NatsConnection;
  try {
    nc = await connectNats({
      servers,
      ...(user !== undefined ? { user, pass: pass ?? "" } : {}),
      ...(authenticator ? { authenticator } : {}),
      ...(options.name ? { name: options.name } : {}),
      timeout: options.connectTimeoutMs ?? 5_000,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      ignoreClusterUpdates: true,
    });
  } catch (error) {
    swallowLateSocketErrors();
    throw new RpcError(
      ErrorKind.Unavailable,
      `Cannot reach the broker ${url}: ${(error as Error).message}`,
    );
  }
  return nc;
}

/**
 * After a refused connect (a wrong password: the broker closes at once)
 * the NATS client has removed its socket's listeners, yet the socket may
 * still report the broker's reset a moment later; with no listener that
 * would end the process as an uncaught error, after the refusal was
 * already reported. For a short while such resets are dropped.
 */
function swallowLateSocketErrors(ms = 2_000): void {
  const handler = (event: ErrorEvent) => {
    const code = (event.error as { code?: unknown } | undefined)?.code;
    if (code === "ECONNRESET" || code === "EPIPE") event.preventDefault();
  };
  globalThis.addEventListener("error", handler);
  const timer = setTimeout(() => globalThis.removeEventListener("error", handler), ms);
  Deno.unrefTimer(timer);
}
