/**
 * What shell completion offers for the words of a command line: server and
 * client names from init.yaml, and the services and RPCs a server lists for
 * the client (asked over the network, with a short time limit), else those
 * init.yaml declares. Every function answers quietly with nothing rather
 * than fail: a Tab must never print an error.
 *
 * Loaded only by the value parsers' `suggest`, so that running a command
 * does not load it.
 *
 * @module
 */

import { connect } from "../core/client/connect.ts";
import type { Cluster, ServiceEntry } from "../core/deploy/cluster.ts";
import type { ServiceDescription } from "../core/wire/message.ts";
import { resolveServer } from "./common.ts";
import { clientSettings, configPath, connectOptions } from "./settings.ts";

/** How long a Tab waits for a server to list its services. */
export const COMPLETION_TIMEOUT_MS = 1_000;

/** The words completed so far that completion depends on. */
export interface CompletionWords {
  /** `--config`, or `""` when not given (then `RPC_CONFIG`, else `./init.yaml`). */
  config: string;
  /** The `SERVER` argument, or `""`. */
  server?: string;
  /** `--as`, or `""` (then `RPC_CLIENT`). */
  as?: string;
  /** The `SERVICE` argument, or `""`. */
  service?: string;
}

const clusters = new Map<string, Promise<Cluster | undefined>>();

/** Reads init.yaml (the flag, `RPC_CONFIG`, else `./init.yaml`); nothing when there is none. */
export function clusterFor(config: string): Promise<Cluster | undefined> {
  let cluster = clusters.get(config);
  if (!cluster) {
    cluster = (async () => {
      try {
        const path = configPath(config || undefined);
        if (!path) return undefined;
        const { parseCluster } = await import("../core/deploy/cluster.ts");
        return parseCluster(await Deno.readTextFile(path), path);
      } catch {
        return undefined;
      }
    })();
    clusters.set(config, cluster);
  }
  return cluster;
}

/** Server names of init.yaml. */
export async function serverNames(words: CompletionWords): Promise<string[]> {
  return [...(await clusterFor(words.config))?.servers.keys() ?? []];
}

/** Client names of init.yaml. */
export async function clientNames(words: CompletionWords): Promise<string[]> {
  return [...(await clusterFor(words.config))?.clients.keys() ?? []];
}

/**
 * `SERVICE` and `SERVICE.RPC` for every service the server lists for the
 * client, else every service init.yaml has it provide. Nothing before a
 * server is given.
 */
export async function targetNames(words: CompletionWords): Promise<string[]> {
  if (!words.server) return [];
  const services = await listing(words) ?? await declaredServices(words);
  const out: string[] = [];
  for (const service of services) {
    out.push(service.name);
    for (const name of new Set(service.rpcs.map((rpc) => rpc.name))) {
      out.push(`${service.name}.${name}`);
    }
  }
  return out;
}

/**
 * What the server lists for this client, or `undefined` when it cannot be
 * asked (no server given, not reachable in time, refused).
 */
async function listing(words: CompletionWords): Promise<ServiceDescription[] | undefined> {
  if (!words.server) return undefined;
  try {
    const settings = await clientSettings({
      ...(words.config ? { config: words.config } : {}),
      ...(words.as ? { as: words.as } : {}),
    });
    const client = await connect(resolveServer(words.server, settings.cluster), {
      ...connectOptions(settings),
      connectTimeoutMs: COMPLETION_TIMEOUT_MS,
    });
    try {
      return await client.list({ timeoutMs: COMPLETION_TIMEOUT_MS });
    } finally {
      client.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * Services this client may call on the server, as the server lists them;
 * when it cannot be asked, those init.yaml has the server provide (see
 * {@linkcode declaredServices}). Nothing before a server is given: the shell
 * is still completing the server.
 */
export async function serviceNames(words: CompletionWords): Promise<string[]> {
  if (!words.server) return [];
  const listed = await listing(words);
  if (listed) return listed.map((service) => service.name);
  return (await declaredServices(words)).map((service) => service.name);
}

/**
 * The services init.yaml has the server provide; all of them when it names
 * no such server or the server provides none.
 */
async function declaredServices(words: CompletionWords): Promise<ServiceEntry[]> {
  const cluster = await clusterFor(words.config);
  if (!cluster) return [];
  const all = [...cluster.services.values()];
  const provided = all.filter((service) => service.providers.includes(words.server ?? ""));
  return provided.length > 0 ? provided : all;
}

/** RPC names of the service, as the server lists them, else as init.yaml declares them. */
export async function rpcNames(words: CompletionWords): Promise<string[]> {
  if (!words.service) return [];
  const listed = await listing(words);
  const rpcs = listed
    ? listed.find((service) => service.name === words.service)?.rpcs
    : (await clusterFor(words.config))?.services.get(words.service)?.rpcs;
  return [...new Set((rpcs ?? []).map((rpc) => rpc.name))];
}
