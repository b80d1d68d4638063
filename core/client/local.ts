/**
 * A whole init.yaml cluster on one machine, as `rpc up` runs it: every
 * server and client of the file gets its own loopback address, so the
 * file's per-client address checks mean here what they mean on the real
 * network, and nothing is ever sent to an address written in the file.
 *
 * The mapping is deterministic: the N-th server of the file listens on
 * `127.0.1.N`, on the file's port where that is free; the N-th client
 * address of the file becomes `127.0.2.N` (clients that share an address in
 * the file share one here). `rpc up` writes it, with what it started, to a
 * run file in a directory of its own per cluster file (its servers' state
 * directories live there too, so two files that both name `s1` never share
 * one). Client commands given `--local` read the run file and use
 * {@linkcode localizeCluster}: names resolve to the mapped addresses, and
 * connections are made from the mapped address of the client they claim.
 *
 * @module
 */

import process from "node:process";
import { basename, dirname, join, resolve } from "node:path";
import type { Cluster, ServerEntry } from "../deploy/cluster.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import { sha256Hex } from "../hash.ts";

/** Where the servers of a local cluster listen: `127.0.1.N`. */
export const SERVER_PREFIX = "127.0.1.";

/** Where the clients of a local cluster connect from: `127.0.2.N`. */
export const CLIENT_PREFIX = "127.0.2.";

/** Servers (or clients) a local cluster can map: one per address of a /24. */
export const MAX_LOCAL = 254;

/** A server of the file and where it runs on this machine. */
export interface LocalServer {
  name: string;
  /** The loopback address it listens on. */
  host: string;
  port: number;
  /** Its address and port in the file. */
  fileHost: string;
  filePort: number;
  /** Its state directory (installed code). */
  stateDir: string;
  /** Its process, once started. */
  pid?: number;
}

/** A client of the file and the loopback address it connects from. */
export interface LocalClient {
  name: string;
  ip: string;
  /** Its `ip` in the file, if it has one (only then do servers check the address). */
  fileIp?: string;
}

/** What `rpc up` writes to its run file. */
export interface LocalRun {
  format: 1;
  /** The cluster file, absolute. */
  file: string;
  /** The run directory. */
  dir: string;
  /** The `rpc up` process that supervises the servers. */
  pid: number;
  startedAt: string;
  /** Whether every server is up and the file is deployed to them. */
  ready: boolean;
  /** The admin secret the servers were started with (the run file is readable only by its owner). */
  token: string;
  /** Where a detached `rpc up` writes the servers' logs. */
  log?: string;
  servers: LocalServer[];
  clients: LocalClient[];
}

/** Name of the run file inside the run directory. */
export const RUN_FILE = "run.json";

/**
 * The base directory of local clusters: `$XDG_STATE_HOME/rpc-up`, else
 * `~/.local/state/rpc-up`, with the variables read through `env` (the
 * command line passes the process environment).
 */
export function localBaseDir(env: (name: string) => string | undefined): string {
  const xdg = env("XDG_STATE_HOME");
  const home = env("HOME") ?? env("USERPROFILE") ?? ".";
  return join(xdg || join(home, ".local", "state"), "rpc-up");
}

/**
 * The run directory of a cluster file: named by the file's directory and a
 * hash of its real, absolute path, so each file has its own.
 */
export function runDirOf(file: string, base: string): string {
  let path = resolve(file);
  try {
    path = Deno.realPathSync(path);
  } catch {
    // A file that is gone still names its directory.
  }
  const label = basename(dirname(path)).replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 32) || "root";
  return join(base, `${label}-${sha256Hex(path).slice(0, 16)}`);
}

/** How {@linkcode planLocal} learns which ports are free. */
export interface PortProbe {
  /** Whether `host:port` can be bound now. */
  free(host: string, port: number): boolean;
  /** A port that can be bound on `host` now. */
  any(host: string): number;
}

/** Probes ports by binding them for a moment. */
export const bindProbe: PortProbe = {
  free(host, port) {
    try {
      Deno.listen({ hostname: host, port }).close();
      return true;
    } catch {
      return false;
    }
  },
  any(host) {
    const listener = Deno.listen({ hostname: host, port: 0 });
    const { port } = listener.addr as Deno.NetAddr;
    listener.close();
    return port;
  },
};

/**
 * Maps the servers and clients of a cluster to loopback addresses, in the
 * order the file lists them. A server keeps the file's port when it is free
 * on its address, else gets a free one. Clients that share an address in the
 * file share one here.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { planLocal } from "./local.ts";
 * import { parseCluster } from "../deploy/cluster.ts";
 * const cluster = parseCluster(`
 * network:
 *   servers: [{ s1: { ip: 192.168.0.1, port: 8181 } }]
 *   clients: [{ c1: { ip: 192.168.1.1, port: 6000 } }]
 * service: [{ service1: { providers: [s1], rpcs: [] } }]
 * rpc: []
 * `, "init.yaml");
 * const plan = planLocal(cluster, "/run", { free: () => true, any: () => 40000 });
 * assert.equal(plan.servers[0].host, "127.0.1.1");
 * assert.equal(plan.servers[0].port, 8181);
 * assert.equal(plan.clients[0].ip, "127.0.2.1");
 * ```
 */
export function planLocal(
  cluster: Cluster,
  dir: string,
  probe: PortProbe = bindProbe,
): Pick<LocalRun, "servers" | "clients"> {
  if (cluster.servers.size > MAX_LOCAL || cluster.clients.size > MAX_LOCAL) {
    throw new RpcError(
      ErrorKind.InvalidArguments,
      `Cannot map ${cluster.servers.size} servers and ${cluster.clients.size} clients to loopback addresses: at most ${MAX_LOCAL} of each`,
    );
  }
  const servers = [...cluster.servers.values()].map((entry, index): LocalServer => {
    const host = `${SERVER_PREFIX}${index + 1}`;
    const port = entry.port > 0 && probe.free(host, entry.port) ? entry.port : probe.any(host);
    return {
      name: entry.name,
      host,
      port,
      fileHost: entry.host,
      filePort: entry.port,
      stateDir: join(dir, "servers", entry.name),
    };
  });
  // Clients that share an address in the file share one here, so a claim is accepted from
  // the same places; a client the file gives no address gets one of its own.
  const byFileIp = new Map<string, string>();
  let next = 1;
  const clients = [...cluster.clients.values()].map((entry): LocalClient => {
    const key = entry.ip?.toLowerCase();
    let ip = key === undefined ? undefined : byFileIp.get(key);
    if (ip === undefined) {
      ip = `${CLIENT_PREFIX}${next++}`;
      if (key !== undefined) byFileIp.set(key, ip);
    }
    return { name: entry.name, ip, ...(entry.ip !== undefined ? { fileIp: entry.ip } : {}) };
  });
  return { servers, clients };
}

/** The run each localized cluster came from. */
const runs = new WeakMap<Cluster, LocalRun>();

/**
 * The cluster as it runs on this machine: each server at its mapped address
 * and port, each client that the file gives an `ip` at its mapped address.
 * Everything else (services, procedures, secrets) is the file's.
 */
export function localizeCluster(cluster: Cluster, run: LocalRun): Cluster {
  const servers = new Map<string, ServerEntry>();
  for (const [name, entry] of cluster.servers) {
    const local = run.servers.find((server) => server.name === name);
    if (!local) {
      throw new RpcError(
        ErrorKind.Unavailable,
        `Server ${name} of ${cluster.file} is not in the local cluster: rpc down, then rpc up again`,
      );
    }
    servers.set(name, { ...entry, host: local.host, port: local.port });
  }
  const clients = new Map(cluster.clients);
  for (const [name, entry] of cluster.clients) {
    const local = run.clients.find((client) => client.name === name);
    if (entry.ip !== undefined && local) clients.set(name, { ...entry, ip: local.ip });
  }
  const localized: Cluster = { ...cluster, servers, clients };
  runs.set(localized, run);
  return localized;
}

/** The run of a cluster made by {@linkcode localizeCluster}, else `undefined`. */
export function localRunOf(cluster: Cluster | undefined): LocalRun | undefined {
  return cluster ? runs.get(cluster) : undefined;
}

/**
 * The source address a client connects from in a local cluster: its mapped
 * address. `undefined` outside a local cluster, for an anonymous caller, or
 * for a name the file does not list (those connect from 127.0.0.1).
 */
export function localSource(
  cluster: Cluster | undefined,
  client: string | undefined,
): string | undefined {
  if (client === undefined) return undefined;
  return localRunOf(cluster)?.clients.find((entry) => entry.name === client)?.ip;
}

/**
 * In a local cluster, an address written in the file (`192.168.0.1:8181`)
 * stands for the server mapped from it; other addresses are left alone.
 */
export function localEndpoint<T extends { hostname: string; port: number }>(
  cluster: Cluster | undefined,
  endpoint: T,
): T {
  const server = localRunOf(cluster)?.servers.find((entry) =>
    entry.fileHost === endpoint.hostname && entry.filePort === endpoint.port
  );
  return server ? { ...endpoint, hostname: server.host, port: server.port } : endpoint;
}

/** Reads the run file of a cluster file; `undefined` when there is none. */
export async function readLocalRun(
  file: string,
  base: string,
): Promise<LocalRun | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(runDirOf(file, base), RUN_FILE));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const run = JSON.parse(text) as LocalRun;
  if (run.format !== 1) throw new Error(`Cannot read run file of ${file}: format ${run.format}`);
  return run;
}

/** Writes the run file atomically, readable only by its owner (it holds the admin secret). */
export async function writeLocalRun(run: LocalRun): Promise<void> {
  await Deno.mkdir(run.dir, { recursive: true, mode: 0o700 });
  const path = join(run.dir, RUN_FILE);
  const temporary = `${path}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(temporary, `${JSON.stringify(run, null, 2)}\n`, { mode: 0o600 });
  await Deno.rename(temporary, path);
}

/** Removes the run file (the state directories and logs stay). */
export async function removeLocalRun(run: Pick<LocalRun, "dir">): Promise<void> {
  await Deno.remove(join(run.dir, RUN_FILE)).catch(() => {});
}

/** Whether process `pid` is running (a zombie, exited but not yet reaped, is not). */
export function processAlive(pid: number | undefined): boolean {
  if (pid === undefined || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
  try {
    // Linux: the state is the field after the parenthesized command name.
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return true;
  }
}

/**
 * Whether process `pid` runs a command line that mentions `marker` (a
 * server's state directory): a recorded pid may have been reused by another
 * process since. Where `/proc` cannot tell, a running process counts.
 */
export function processMentions(pid: number | undefined, marker: string): boolean {
  if (!processAlive(pid)) return false;
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").includes(marker);
  } catch {
    return true;
  }
}

/**
 * The cluster as `rpc up` runs it now, for client commands given `--local`.
 *
 * @throws {RpcError} `Unavailable` when nothing is up for the file.
 */
export async function loadLocalCluster(cluster: Cluster, base: string): Promise<Cluster> {
  const run = await readLocalRun(cluster.file, base);
  if (!run || !processAlive(run.pid)) {
    throw new RpcError(
      ErrorKind.Unavailable,
      `Nothing is up for ${cluster.file} on this machine: start it with rpc up ${cluster.file}`,
    );
  }
  if (!run.ready) {
    throw new RpcError(
      ErrorKind.Unavailable,
      `The local cluster of ${cluster.file} is still starting (rpc up, pid ${run.pid})`,
    );
  }
  return localizeCluster(cluster, run);
}
