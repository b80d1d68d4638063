/**
 * `rpc up` and `rpc down`: every server of an init.yaml on this machine.
 *
 * `rpc up` maps the file's servers and clients to loopback addresses (see
 * `core/client/local.ts`), starts one `rpc server` per server with a state directory
 * of its own, deploys the file to them as `rpc init` would (with the mapped
 * client addresses, so address checks hold), prints the mapping and every
 * server's log lines with its name in front, and stops them all on Ctrl-C or
 * SIGTERM. `--detach` leaves them running in the background; `rpc down`
 * stops them. The file itself is never changed, and nothing is sent to the
 * addresses it names.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { optional, withDefault } from "@optique/core/modifiers";
import { argument, command, constant, flag, option } from "@optique/core/primitives";
import { choice, string } from "@optique/core/valueparser";
import { join, resolve } from "node:path";
import type { Cluster } from "../core/deploy/cluster.ts";
import { ErrorKind, isErrorKind, RpcError } from "../core/errors.ts";
import {
  localBaseDir,
  localizeCluster,
  type LocalRun,
  planLocal,
  processAlive,
  processMentions,
  readLocalRun,
  removeLocalRun,
  runDirOf,
  writeLocalRun,
} from "../core/client/local.ts";
import { LOG_LEVELS, type LogLevel } from "../core/log.ts";
import { stringifyJson } from "../core/types/types.ts";
import {
  configPath,
  examples,
  jsonFlag,
  parseDuration,
  print,
  printError,
  UsageError,
  writeAll,
} from "./common.ts";
import { processEnvironment } from "./settings.ts";
import { checkedCluster, deployTo } from "./init.ts";
import { childEnvironment, ChildServer, selfCommand } from "./supervisor.ts";

const fileArgument = optional(argument(string({ metavar: "FILE" }), {
  description: message`The cluster file (default: --config, $RPC_CONFIG, else ./init.yaml).`,
}));

const configFlag = optional(option("-c", "--config", string({ metavar: "FILE" }), {
  description: message`Same as FILE.`,
}));

/** The parser of `rpc up`. */
export const upCommand = command(
  "up",
  object({
    command: constant("up" as const),
    file: fileArgument,
    config: configFlag,
    detach: withDefault(
      flag("-d", "--detach", {
        description:
          message`Exit once every server serves the file, leaving them running in the background (their log goes to up.log in the run directory); stop them with rpc down.`,
      }),
      false,
    ),
    log: optional(option("--log", string({ metavar: "FILE" }), {
      description: message`Write the servers' log lines to FILE instead of stdout.`,
    })),
    logLevel: withDefault(
      option("--log-level", choice(LOG_LEVELS, { metavar: "LEVEL" }), {
        description: message`Least severe level the servers log.`,
      }),
      "info" as LogLevel,
    ),
    timeout: withDefault(
      option("--timeout", string({ metavar: "DURATION" }), {
        description: message`How long the servers may take to start and take the file.`,
      }),
      "60s",
    ),
    json: jsonFlag,
  }),
  {
    brief: message`Run every server of init.yaml on this machine, and deploy the file to them.`,
    description:
      message`Without changing the file: server N of the file listens on 127.0.1.N (on the file's port where it is free), client N connects from 127.0.2.N, so a client is refused here where the file would refuse it. Each server gets its own state directory, the file is deployed as rpc init deploys it, and nothing is sent to the addresses the file names. Client commands reach these servers with --local (or RPC_LOCAL=1): rpc call --local --as c1 s1 service1 rpc1 3 ab. Prints the mapping, then each server's log lines after its name; Ctrl-C or SIGTERM stops every server. With --detach it exits once all serve the file (exit 0), and rpc down stops them.`,
    footer: examples(
      "rpc up init.yaml",
      "rpc up --detach init.yaml && rpc call --local --as c1 s1 service1 rpc1 3 ab",
      "rpc down init.yaml",
    ),
  },
);

/** Options of {@linkcode runUp}, as parsed. */
export interface UpCommandOptions {
  file?: string;
  config?: string;
  detach: boolean;
  log?: string;
  logLevel: LogLevel;
  timeout: string;
  json: boolean;
}

/** The parser of `rpc down`. */
export const downCommand = command(
  "down",
  object({
    command: constant("down" as const),
    file: fileArgument,
    config: configFlag,
    timeout: withDefault(
      option("--timeout", string({ metavar: "DURATION" }), {
        description: message`How long the servers may take to stop before they are killed.`,
      }),
      "30s",
    ),
  }),
  {
    brief: message`Stop the servers rpc up runs for init.yaml.`,
    description:
      message`Asks rpc up to stop every server (each lets its calls in flight finish), waits until they have exited, and removes the run file. State directories and logs stay. Exits 0, also when nothing was up.`,
    footer: examples("rpc down init.yaml", "rpc down --config ci/init.yaml --timeout 1m"),
  },
);

/** Options of {@linkcode runDown}, as parsed. */
export interface DownCommandOptions {
  file?: string;
  config?: string;
  timeout: string;
}

/** How long `rpc up` gives a server to stop after SIGTERM (its own grace is 10 s). */
const STOP_GRACE_MS = 15_000;

function positiveDuration(flag: string, text: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (error) {
    throw new UsageError(`${flag}: ${(error as Error).message}`);
  }
  if (ms <= 0) throw new UsageError(`${flag}: duration must be positive, got "${text}"`);
  return ms;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The file `rpc up` and `rpc down` work on, absolute. */
function clusterFile(options: { file?: string; config?: string }): string {
  return resolve(options.file ?? configPath(options.config, true)!);
}

/** Runs `rpc up`; returns the exit code. */
export async function runUp(options: UpCommandOptions): Promise<number> {
  const path = clusterFile(options);
  const cluster = await checkedCluster(path);
  const timeoutMs = positiveDuration("--timeout", options.timeout);
  await refuseIfUp(path);
  checkLoopback(cluster);
  if (options.detach) return await detach(path, options, timeoutMs);
  return await supervise(cluster, path, options, timeoutMs);
}

/** Refuses to start a file that is already up; clears what a crashed `rpc up` left. */
async function refuseIfUp(path: string): Promise<void> {
  const run = await readLocalRun(path, localBaseDir(processEnvironment));
  if (!run) return;
  if (processAlive(run.pid)) {
    throw new UsageError(
      `${path} is already up (rpc up, pid ${run.pid}): stop it with rpc down ${path}`,
    );
  }
  await stopLeftovers(run, STOP_GRACE_MS);
  await removeLocalRun(run);
}

/**
 * Checks that the loopback addresses the mapping uses can be bound: Linux
 * routes all of 127.0.0.0/8 to the loopback interface; macOS needs aliases.
 */
function checkLoopback(cluster: Cluster): void {
  // Only the addresses: ports are chosen later, when the servers are about to start.
  const plan = planLocal(cluster, "", { free: () => true, any: () => 0 });
  const addresses = new Set([
    ...plan.servers.map((server) => server.host),
    ...plan.clients.map((client) => client.ip),
  ]);
  for (const address of addresses) {
    try {
      Deno.listen({ hostname: address, port: 0 }).close();
    } catch (error) {
      throw new RpcError(
        ErrorKind.Unavailable,
        `Cannot use loopback address ${address}: ${
          (error as Error).message
        }; rpc up gives servers 127.0.1.N and clients 127.0.2.N, which Linux routes by itself (elsewhere add each first, e.g. sudo ifconfig lo0 alias ${address} up)`,
      );
    }
  }
}

/** Where `rpc up` writes its lines: stdout, or a file. */
interface Output {
  line(text: string): void;
  error(text: string): void;
  close(): void;
}

async function openOutput(path: string | undefined): Promise<Output> {
  const encoder = new TextEncoder();
  const quietly = (write: () => void) => {
    try {
      write();
    } catch {
      // Nobody reads any more (a closed pipe); the servers go on.
    }
  };
  if (path === undefined) {
    return {
      line: (text) => quietly(() => print(text)),
      error: (text) => quietly(() => printError(`error: ${text}`)),
      close: () => {},
    };
  }
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const line = (text: string) => quietly(() => writeAll(file, encoder.encode(`${text}\n`)));
  return { line, error: (text) => line(`error: ${text}`), close: () => file.close() };
}

/** The mapping as `rpc up` prints it. */
export function mappingLines(run: LocalRun): string[] {
  const width = Math.max(...[...run.servers, ...run.clients].map((entry) => entry.name.length));
  const servers = run.servers.map((server) => {
    const address = `${server.host}:${server.port}`;
    return `  server ${server.name.padEnd(width)}  ${
      address.padEnd(21)
    }  for ${server.fileHost}:${server.filePort}`;
  });
  const clients = run.clients.map((client) =>
    `  client ${client.name.padEnd(width)}  ${client.ip.padEnd(21)}  for ${
      client.fileIp ?? "any address (the file gives none)"
    }`
  );
  return [
    `rpc up: ${run.file} on this machine; nothing is sent to the addresses in the file`,
    ...servers,
    ...clients,
  ];
}

/** The mapping as `--json` prints it. */
export function mappingJson(run: LocalRun): unknown {
  return {
    file: run.file,
    dir: run.dir,
    pid: run.pid,
    ...(run.log ? { log: run.log } : {}),
    servers: run.servers.map((server) => ({
      name: server.name,
      address: `${server.host}:${server.port}`,
      file: `${server.fileHost}:${server.filePort}`,
      stateDir: server.stateDir,
      pid: server.pid,
    })),
    clients: run.clients.map((client) => ({
      name: client.name,
      address: client.ip,
      ...(client.fileIp ? { file: client.fileIp } : {}),
    })),
  };
}

/** What to try once the cluster is up. */
function readyLines(run: LocalRun, cluster: Cluster): string[] {
  const server = run.servers[0]?.name ?? "SERVER";
  const client = [...cluster.clients.keys()][0];
  return [
    `ready: ${servers(run.servers.length)} serve ${run.file} (state in ${run.dir})`,
    `  try: rpc list --local --config ${run.file}${client ? ` --as ${client}` : ""} ${server}`,
  ];
}

/** `1 server`, `2 servers`. */
function servers(count: number): string {
  return `${count} server${count === 1 ? "" : "s"}`;
}

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Runs the cluster in the foreground until a signal, or until every server has exited. */
async function supervise(
  cluster: Cluster,
  path: string,
  options: UpCommandOptions,
  timeoutMs: number,
): Promise<number> {
  const dir = runDirOf(path, localBaseDir(processEnvironment));
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const out = await openOutput(options.log);
  const run: LocalRun = {
    format: 1,
    file: path,
    dir,
    pid: Deno.pid,
    startedAt: new Date().toISOString(),
    ready: false,
    token: randomToken(),
    ...(options.log ? { log: resolve(options.log) } : {}),
    ...planLocal(cluster, dir),
  };
  // Signals are heard from the start: one during startup still stops what has started.
  const stopped = Promise.withResolvers<Deno.Signal>();
  let signals = 0;
  const children: ChildServer[] = [];
  const onSignal = (name: Deno.Signal) => () => {
    if (signals++ === 0) stopped.resolve(name);
    else for (const child of children) child.kill();
  };
  const names: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const listeners = names.map((name) => ({ name, listener: onSignal(name) }));
  for (const { name, listener } of listeners) Deno.addSignalListener(name, listener);
  let stopping = false;
  try {
    await writeLocalRun(run);
    if (!options.json) { for (const line of mappingLines(run)) out.line(line); }
    const width = Math.max(...run.servers.map((server) => server.name.length));
    for (const server of run.servers) {
      await Deno.mkdir(server.stateDir, { recursive: true });
      const child = new ChildServer(
        server.name,
        [
          "server",
          "--name",
          server.name,
          "--host",
          server.host,
          "--port",
          String(server.port),
          "--state-dir",
          server.stateDir,
          "--log-level",
          options.logLevel,
        ],
        childEnvironment({ RPC_ADMIN_TOKEN: run.token, NO_COLOR: "1" }),
        out.line,
        width,
      );
      server.pid = child.pid;
      children.push(child);
      child.status.then((status) => {
        if (!stopping) {
          out.line(`${server.name.padEnd(width)} | exited with code ${status.code}`);
        }
      });
    }
    await writeLocalRun(run);
    const started = await within(
      Promise.all(children.map((child) => child.listening)).catch((error) => {
        throw new RpcError(
          ErrorKind.Unavailable,
          `${(error as Error).message}; its log is above; stopping every server`,
        );
      }),
      stopped.promise,
      timeoutMs,
    );
    if (started === "stopped") return 0; // A signal during startup.
    if (started === "timeout") {
      const late = children.filter((child) => !child.listened).map((child) => child.name);
      throw new RpcError(
        ErrorKind.Timeout,
        `Servers ${late.join(", ")} did not listen within ${timeoutMs} ms; stopping every server`,
      );
    }
    const localized = localizeCluster(cluster, run);
    const deadline = performance.now() + timeoutMs;
    const deploying = Promise.all(
      run.servers.map((server) =>
        deployTo(localized, server.name, {
          dryRun: false,
          token: run.token,
          timeoutMs,
          deadline,
          log: (line) => out.line(line),
        })
      ),
    );
    // deployTo ends each server's deploy by the deadline itself; a signal need not wait for it.
    if (await within(deploying, stopped.promise, timeoutMs * 2) === "stopped") return 0;
    const failed = (await deploying).filter((outcome) => !outcome.ok);
    if (failed.length > 0) {
      const kind = failed[0].error?.kind;
      throw new RpcError(
        isErrorKind(kind) ? kind : ErrorKind.Internal,
        `Cannot deploy ${path} to ${
          failed.map((f) => `${f.server} (${f.error?.kind}: ${f.error?.message})`).join(", ")
        }; stopping every server`,
      );
    }
    run.ready = true;
    await writeLocalRun(run);
    if (options.json) out.line(stringifyJson(mappingJson(run)));
    else for (const line of readyLines(run, cluster)) out.line(line);
    out.line(`stop: Ctrl-C, or rpc down ${path}`);
    const ended = await Promise.race([
      stopped.promise.then(() => "signal" as const),
      Promise.all(children.map((child) => child.status)).then(() => "exited" as const),
    ]);
    if (ended === "exited") throw new RpcError(ErrorKind.Unavailable, `Every server has exited`);
    return 0;
  } catch (error) {
    // Detached, nobody sees stderr: the reason goes to the log, where rpc up --detach reads it.
    if (options.log) out.error(RpcError.from(error).message);
    throw error;
  } finally {
    stopping = true;
    if (children.some((child) => child.running)) {
      out.line(`stopping ${servers(children.filter((child) => child.running).length)}`);
    }
    await Promise.all(children.map((child) => child.stop(STOP_GRACE_MS)));
    await removeLocalRun(run);
    for (const { name, listener } of listeners) Deno.removeSignalListener(name, listener);
    out.close();
  }
}

/** Settles to `"done"` with `work`, `"stopped"` on `stop`, or `"timeout"` after `ms`. */
async function within(
  work: Promise<unknown>,
  stop: Promise<unknown>,
  ms: number,
): Promise<"done" | "stopped" | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      work.then(() => "done" as const),
      stop.then(() => "stopped" as const),
      new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `rpc up --detach`: starts `rpc up` again in the background, writing to
 * up.log in the run directory, and waits until it reports the cluster ready
 * (exit 0) or gives up (its log's last lines, exit 1).
 */
async function detach(path: string, options: UpCommandOptions, timeoutMs: number): Promise<number> {
  const dir = runDirOf(path, localBaseDir(processEnvironment));
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const log = join(dir, "up.log");
  const self = selfCommand();
  const child = new Deno.Command(self.command, {
    args: [
      ...self.args,
      "up",
      path,
      "--log",
      log,
      "--timeout",
      options.timeout,
      "--log-level",
      options.logLevel,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((status) => exited = status);
  // Its own limit covers starting and deploying; a little more covers its own start.
  const deadline = Date.now() + timeoutMs + 10_000;
  for (;;) {
    const run = await readLocalRun(path, localBaseDir(processEnvironment)).catch(() => undefined);
    if (run && run.pid === child.pid && run.ready) {
      if (options.json) {
        print(stringifyJson(mappingJson(run)));
      } else {
        for (const line of mappingLines(run)) print(line);
        print(`ready: running in the background (pid ${run.pid}); log in ${log}`);
        print(`stop: rpc down ${path}`);
      }
      return 0;
    }
    if (exited) {
      const lines = (await Deno.readTextFile(log).catch(() => "")).trimEnd().split("\n");
      for (const line of lines.slice(-20)) printError(line);
      printError(`error: rpc up stopped before the cluster was ready (exit code ${exited.code})`);
      return exited.code === 0 ? 1 : exited.code;
    }
    if (Date.now() > deadline) {
      try {
        Deno.kill(child.pid, "SIGTERM");
      } catch {
        // It has just exited.
      }
      throw new RpcError(
        ErrorKind.Timeout,
        `The cluster of ${path} was not ready within ${timeoutMs} ms; see ${log}`,
      );
    }
    await delay(100);
  }
}

/** Stops servers a crashed `rpc up` left running (only processes that are still those servers). */
async function stopLeftovers(run: LocalRun, graceMs: number): Promise<number> {
  const left = run.servers.filter((server) => processMentions(server.pid, server.stateDir));
  for (const server of left) killQuietly(server.pid!, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (left.some((server) => processAlive(server.pid)) && Date.now() < deadline) {
    await delay(50);
  }
  for (const server of left) if (processAlive(server.pid)) killQuietly(server.pid!, "SIGKILL");
  return left.length;
}

function killQuietly(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // It has exited meanwhile.
  }
}

/** Runs `rpc down`; returns the exit code. */
export async function runDown(options: DownCommandOptions): Promise<number> {
  const path = clusterFile(options);
  const timeoutMs = positiveDuration("--timeout", options.timeout);
  const run = await readLocalRun(path, localBaseDir(processEnvironment));
  if (!run) {
    printError(`note: nothing is up for ${path}`);
    return 0;
  }
  if (processAlive(run.pid)) {
    // rpc up stops its servers (each drains), removes the run file and exits.
    killQuietly(run.pid, "SIGTERM");
    const deadline = Date.now() + timeoutMs;
    while (processAlive(run.pid) && Date.now() < deadline) await delay(50);
    if (processAlive(run.pid)) {
      printError(`note: rpc up (pid ${run.pid}) did not stop within ${timeoutMs} ms; killing it`);
      killQuietly(run.pid, "SIGKILL");
    }
  }
  const leftovers = await stopLeftovers(run, Math.min(timeoutMs, STOP_GRACE_MS));
  await removeLocalRun(run);
  print(
    `stopped ${path}: ${servers(run.servers.length)}${
      leftovers > 0 ? ` (${leftovers} left behind by rpc up, stopped here)` : ""
    }; state${run.log ? " and log" : ""} kept in ${run.dir}`,
  );
  return 0;
}
