/**
 * `rpc server`: serve the procedures of one server of the cluster.
 *
 * @module
 */

import type { Cluster } from "../core/deploy/cluster.ts";
import type { Installer } from "../core/deploy/installer.ts";
import type { StateDirLock } from "../core/deploy/state_lock.ts";
import { ErrorKind, RpcError } from "../core/errors.ts";
import {
  BufferedSink,
  formatJsonLine,
  formatTextLine,
  Logger,
  type LogLevel,
  type LogSink,
} from "../core/log.ts";
import { LogFile } from "../core/log_file.ts";
import { Registry } from "../core/server/registry.ts";
import { UsageError } from "./common.ts";
import { procedureRunners } from "./runners.ts";
import { checkServer } from "./server_check.ts";
import type { LogFormat, ServerCommandOptions } from "./server_flags.ts";
import { type ServerSettings, serverSettings } from "./server_settings.ts";

/**
 * What serving needs beyond the command line: loaded when `rpc
 * server` runs, not for its help or a Tab of shell completion.
 */
async function servingModules() {
  const [
    { AdminOps },
    { checkSources },
    { desiredStateFor },
    { Installer },
    { planInstall, planIsEmpty, sourcesToSend },
    { hashSecret },
    { RpcServer },
    { httpGateway },
    { CodeStore },
  ] = await Promise.all([
    import("../core/server/admin.ts"),
    import("../core/deploy/cluster.ts"),
    import("../core/deploy/desired.ts"),
    import("../core/deploy/installer.ts"),
    import("../core/deploy/plan.ts"),
    import("../core/hash.ts"),
    import("../core/server/server.ts"),
    import("../core/http/mod.ts"),
    import("../core/deploy/store.ts"),
  ]);
  return {
    AdminOps,
    checkSources,
    CodeStore,
    desiredStateFor,
    hashSecret,
    httpGateway,
    Installer,
    planInstall,
    planIsEmpty,
    RpcServer,
    sourcesToSend,
  };
}

/**
 * Builds the logger: readable text (or JSON lines) on stderr, plus JSON lines
 * to a file on request.
 */
export function serverLogger(
  logFile: LogFile | undefined,
  level: LogLevel,
  format: LogFormat = "text",
): Logger {
  const sinks: LogSink[] = [
    new BufferedSink(Deno.stderr, format === "json" ? formatJsonLine : formatTextLine),
  ];
  if (logFile) sinks.push(new BufferedSink(logFile, formatJsonLine));
  return new Logger(sinks, { level });
}

/** A logger that appends JSON lines to a file (the audit log). */
function jsonLinesLogger(file: LogFile): Logger {
  return new Logger([new BufferedSink(file, formatJsonLine)], { level: "debug" });
}

/** Runs `rpc server` until SIGINT or SIGTERM (or `--check`); returns the exit code. */
export async function runServer(options: ServerCommandOptions): Promise<number> {
  const settings = await serverSettings(options);
  if (options.check) return await checkServer(options, settings);
  const { AdminOps, CodeStore, hashSecret, httpGateway, Installer, RpcServer } =
    await servingModules();
  const lock = await lockStateDir(settings.stateDir);
  const { name, cluster, entry, token } = settings;
  const rotation = { maxBytes: options.logMaxBytes, keep: options.logKeep };
  const logFile = options.logFile ? await LogFile.open(options.logFile, rotation) : undefined;
  const auditFile = options.auditLog ? await LogFile.open(options.auditLog, rotation) : undefined;
  const files = [logFile, auditFile].filter((file) => file !== undefined);
  const logger = serverLogger(logFile, options.logLevel, options.logFormat);
  const audit = auditFile ? jsonLinesLogger(auditFile) : undefined;
  const runners = await procedureRunners(
    { ...options, loadTimeoutMs: settings.loadTimeoutMs },
    logger,
  );
  const auth = {
    ...(token ? { adminTokenHash: hashSecret(token) } : {}),
    insecure: options.insecure,
    tokenSource: "--admin-token-file or RPC_ADMIN_TOKEN",
  };
  const server = new RpcServer({
    name,
    hostname: settings.hostname,
    port: settings.port,
    ...(settings.unix ? { unix: settings.unix } : {}),
    registry: Registry.empty(),
    limits: settings.limits,
    ...(settings.tls ? { tls: settings.tls } : {}),
    ...(audit ? { audit } : {}),
    callTimeoutMs: settings.callTimeoutMs,
    refusalSummaryMs: settings.refusalSummaryMs,
    logger,
    adminAuth: auth,
  });
  const installer = new Installer({
    store: new CodeStore(settings.stateDir),
    server,
    runners,
    logger,
    ...auth,
    ...(audit ? { audit } : {}),
    loadTimeoutMs: settings.loadTimeoutMs,
  });
  server.admin = new AdminOps({
    server,
    logger,
    ...auth,
    ...(audit ? { audit } : {}),
    next: installer.handle,
  }).handle;
  const http = settings.http
    ? httpGateway({
      server,
      address: settings.http,
      ...(settings.tls ? { tls: settings.tls } : {}),
      logger,
      generation: () => installer.manifest.generation,
      runners,
    })
    : undefined;
  // Signals are heard from the start, so that one during boot still stops the server cleanly.
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const first = Promise.withResolvers<Deno.Signal>();
  const again = new AbortController();
  let received = 0;
  const onSignal = (signal: Deno.Signal) => () => {
    if (received++ === 0) first.resolve(signal);
    else again.abort();
  };
  const listeners = signals.map((signal) => ({ signal, listener: onSignal(signal) }));
  if (Deno.build.os !== "windows") {
    // logrotate's postrotate: the files were moved away, start new ones where they were.
    listeners.push({ signal: "SIGHUP", listener: () => void reopenLogs(files, logger) });
  }
  for (const { signal, listener } of listeners) Deno.addSignalListener(signal, listener);
  if (options.pidfile) await Deno.writeTextFile(options.pidfile, `${Deno.pid}\n`);
  let brokered: import("./server_broker.ts").BrokerServing | undefined;
  try {
    await installer.boot();
    if (cluster && entry) await installFromFile(installer, cluster, name, logger);
    if (!token && !options.insecure) {
      logger.warn(
        "admin",
        "no admin token: installs and admin requests over the network are refused (see --admin-token-file)",
      );
    }
    if (settings.listens) {
      try {
        await server.start();
      } catch (error) {
        throw listenError(error, settings);
      }
    }
    if (settings.broker) {
      const { serveThroughBroker } = await import("./server_broker.ts");
      brokered = await serveThroughBroker({ server, logger, ...settings.broker });
    }
    await http?.start();
    const signal = await first.promise;
    logger.info(
      "shutdown",
      `received ${signal}: stopping, calls in flight have ${settings.graceMs} ms to finish (send it again to stop at once)`,
      { signal, graceMs: settings.graceMs },
    );
    http?.stopAccepting();
    brokered?.stopAccepting();
    const abandoned = await server.drain(settings.graceMs, again.signal);
    logger.info("shutdown", `stopped${abandoned > 0 ? `, ${abandoned} calls cut short` : ""}`);
    return 0;
  } finally {
    for (const { signal, listener } of listeners) Deno.removeSignalListener(signal, listener);
    await http?.close();
    await server.close();
    await brokered?.close();
    await Promise.all(Object.values(runners).map((runner) => runner.close()));
    if (options.pidfile) await Deno.remove(options.pidfile).catch(() => {});
    await logger.flush();
    await audit?.flush();
    await Promise.all(files.map((file) => file.close()));
    lock.release();
  }
}

/** Reopens the log files on SIGHUP, and says so in the new ones. */
async function reopenLogs(files: LogFile[], logger: Logger): Promise<void> {
  try {
    await Promise.all(files.map((file) => file.reopen()));
    logger.info(
      "reopen",
      `received SIGHUP: reopened ${files.map((file) => file.path).join(" and ") || "no log files"}`,
    );
  } catch (error) {
    logger.error(
      "reopen",
      `received SIGHUP: cannot reopen the log files: ${(error as Error).message}`,
    );
  }
}

/**
 * Locks the state directory for this server: a second server on it fails at
 * once, naming the pid of the first.
 */
async function lockStateDir(dir: string): Promise<StateDirLock> {
  const { StateDirLock, StateDirLocked } = await import("../core/deploy/state_lock.ts");
  try {
    return await StateDirLock.acquire(dir);
  } catch (error) {
    if (!(error instanceof StateDirLocked)) throw error;
    throw new UsageError(
      `${error.message}: stop it, or give this server a state directory of its own (--state-dir or RPC_STATE_DIR)`,
    );
  }
}

/**
 * Brings the server to what init.yaml declares for it, when the sources are
 * readable here; otherwise the file gives only address, port and clients.
 */
async function installFromFile(
  installer: Installer,
  cluster: Cluster,
  name: string,
  logger: Logger,
): Promise<void> {
  const { checkSources, desiredStateFor, planInstall, planIsEmpty, sourcesToSend } =
    await servingModules();
  const problems = await checkSources(cluster, [name]);
  if (problems.length > 0) {
    logger.warn(
      "install",
      `${cluster.file}: sources for ${name} are not all readable here (${
        problems[0].message
      }); serving the installed state`,
    );
    return;
  }
  const { state, sources } = await desiredStateFor(cluster, name);
  const plan = planInstall(installer.manifest, state);
  if (planIsEmpty(plan)) return;
  const missing = new Map(Object.entries(sourcesToSend(plan, sources)));
  await installer.install(state, missing, {
    by: cluster.file,
    generation: installer.manifest.generation,
  });
}

/** The code of a failed `listen`, from Deno's error classes or node's `code`. */
function listenErrorCode(error: unknown): string | undefined {
  if (error instanceof Deno.errors.AddrNotAvailable) return "EADDRNOTAVAIL";
  if (error instanceof Deno.errors.AddrInUse) return "EADDRINUSE";
  if (error instanceof Deno.errors.PermissionDenied) return "EACCES";
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Explains why the server could not listen, naming the address or port and
 * the setting it came from: `--host` for an address this machine does not
 * have, `--port` for a port in use or reserved. Other errors pass unchanged.
 */
export function listenError(
  error: unknown,
  settings: Pick<ServerSettings, "hostname" | "hostSource" | "port" | "portSource">,
): unknown {
  const { hostname, port, hostSource, portSource } = settings;
  const where = `Cannot listen on ${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  switch (listenErrorCode(error)) {
    case "EADDRNOTAVAIL":
      return new RpcError(
        ErrorKind.Unavailable,
        `${where}: ${hostname} is not an address of this machine (set by ${hostSource}); bind another with --host, e.g. --host 0.0.0.0 for all of them, or try the whole cluster on this machine with rpc up`,
      );
    case "EADDRINUSE":
      return new RpcError(
        ErrorKind.Unavailable,
        `${where}: port ${port} is in use (set by ${portSource}); choose another with --port (0 picks a free one)`,
      );
    case "EACCES":
      return new RpcError(
        ErrorKind.Unavailable,
        `${where}: port ${port} needs privileges (set by ${portSource}); choose one above 1023 with --port`,
      );
    default:
      return error;
  }
}
