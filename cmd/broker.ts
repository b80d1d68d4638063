/**
 * `--broker` and `--broker-creds` of the client commands: which NATS
 * broker to reach servers through, and opening sessions through it. The
 * NATS client is loaded only when a broker is used.
 *
 * @module
 */

import type { Endpoint } from "../core/client/client.ts";
import type { Cluster } from "../core/deploy/cluster.ts";
import type { Connection } from "../core/transport/mod.ts";
import type { Announcement, Broker } from "../core/transport/nats/mod.ts";
import type { Environment } from "./settings.ts";

/** Where the broker is and how to prove who we are to it. */
export interface BrokerSettings {
  /** `nats://[user:password@]host:port`. */
  url: string;
  /** A NATS `.creds` file or nkey seed file. */
  creds?: string;
}

/**
 * The broker: `--broker`, else `RPC_BROKER`, else init.yaml's
 * `network.broker`; its credentials: `--broker-creds`, else
 * `RPC_BROKER_CREDS`. `undefined`: servers are dialed directly.
 */
export function brokerFrom(
  flags: { broker?: string; brokerCreds?: string },
  cluster: Cluster | undefined,
  env: Environment,
): BrokerSettings | undefined {
  const url = flags.broker ?? env("RPC_BROKER") ?? cluster?.broker;
  if (!url) return undefined;
  const creds = flags.brokerCreds ?? env("RPC_BROKER_CREDS");
  return { url, ...(creds ? { creds } : {}) };
}

/** The one connection to the broker this process shares, once opened. */
let shared: Promise<Broker> | undefined;

/** Connects to the broker once for the whole process. */
export function sharedBroker(settings: BrokerSettings): Promise<Broker> {
  shared ??= (async () => {
    const { Broker } = await import("../core/transport/nats/mod.ts");
    return await Broker.connect({
      url: settings.url,
      ...(settings.creds ? { creds: settings.creds } : {}),
      name: "rpc client",
    });
  })();
  // A failed connect is not kept: the next command in this process (the REPL) may try again.
  shared.catch(() => (shared = undefined));
  return shared;
}

/** The `dial` of client options: a session to the server by its name, through the broker. */
export function brokerDial(
  settings: BrokerSettings,
): (target: Endpoint & { name?: string }, signal: AbortSignal) => Promise<Connection> {
  return async (target, signal) => {
    const broker = await sharedBroker(settings);
    const name = target.name ?? target.hostname;
    return await broker.open({ server: name }, { signal });
  };
}

/** The servers on the broker now, as they announce themselves. */
export async function discoverServers(
  settings: BrokerSettings,
  waitMs: number,
): Promise<Announcement[]> {
  return await (await sharedBroker(settings)).discover(waitMs);
}
