/**
 * Broker URLs (`nats://[user:password@]host:port`, several separated by
 * commas): taken apart for the NATS client, and shown with the password
 * hidden. Imports nothing else of this folder, so that showing one
 * (`rpc server --check`) does not load the NATS client.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../../errors.ts";

/** The URL with any password hidden, for messages and logs. */
export function redactBrokerUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/g, "//$1:***@");
}

/** The pieces of a broker URL the NATS client takes apart: servers, user and password. */
export function parseBrokerUrl(url: string): { servers: string[]; user?: string; pass?: string } {
  const servers: string[] = [];
  let user: string | undefined;
  let pass: string | undefined;
  for (const part of url.split(",").map((text) => text.trim()).filter(Boolean)) {
    let parsed: URL;
    try {
      parsed = new URL(part.includes("://") ? part : `nats://${part}`);
    } catch {
      throw new RpcError(
        ErrorKind.InvalidArguments,
        `Cannot read broker URL "${redactBrokerUrl(part)}": expected nats://HOST:PORT`,
      );
    }
    if (!["nats:", "tls:"].includes(parsed.protocol) || parsed.hostname === "") {
      throw new RpcError(
        ErrorKind.InvalidArguments,
        `Cannot read broker URL "${redactBrokerUrl(part)}": expected nats://HOST:PORT`,
      );
    }
    if (parsed.username) {
      user = decodeURIComponent(parsed.username);
      pass = decodeURIComponent(parsed.password);
    }
    servers.push(`${parsed.protocol}//${parsed.host}`);
  }
  if (servers.length === 0) {
    throw new RpcError(ErrorKind.InvalidArguments, "Cannot read broker URL: it is empty");
  }
  return { servers, ...(user !== undefined ? { user, pass } : {}) };
}
