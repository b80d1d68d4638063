/**
 * `rpc server`: serve the procedures of one server of the cluster.
 *
 * @module
 */

import type { StateCheck } from "../core/deploy/check.ts";
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
import { Registry, type Runner } from "../core/server/registry.ts";
import { print, printError, UsageError } from "./common.ts";
import type { LogFormat, ServerCommandOptions } from "./server_flags.ts";
import { type ServerSettings, serverSettings } from "./server_settings.ts";

/**
 * What serving and checking need beyond the command line: loaded when `rpc
 * server` runs, not for its help or a Tab of shell completion.
 */
async function servingModules() {
  const [
    { AdminOps },
    { checkCluster, checkStateDir },
    { checkSources },
    { desiredStateFor },
    { Installer },
    { planInstall, planIsEmpty, sourcesToSend },
    { hashSecret },
    { RpcServer },
    { httpGateway },
    { CodeStore },
    { checkLines, failureLines },
    { dirname, resolve },
  ] = await Promise.all([
    import("../core/server/admin.ts"),
    import("../core/deploy/check.ts"),
    import("../core/deploy/cluster.ts"),
    import("../core/deploy/desired.ts"),
    import("../core/deploy/installer.ts"),
    import("../core/deploy/plan.ts"),
    import("../core/hash.ts"),
    import("../core/server/server.ts"),
    import("../core/http/mod.ts"),
    import("../core/deploy/store.ts"),
    import("./check.ts"),
    import("node:path"),
  ]);
  return {
    AdminOps,
    checkCluster,
    checkLines,
    checkSources,
    checkStateDir,
    CodeStore,
    desiredStateFor,
    dirname,
    failureLines,
    hashSecret,
    httpGateway,
    Installer,
    planInstall,
    planIsEmpty,
    resolve,
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

/** The runners procedures load with: TypeScript in sandboxes (or inline when trusted), Python. */
export async function procedureRunners(
  options: Pick<ServerCommandOptions, "sandboxMemory" | "workers"> & { loadTimeoutMs?: number },
  logger?: Logger,
): Promise<Record<string, Runner>> {
  const [{ PythonRunner }, { SandboxRunner }, { TypeScriptRunner }] = await Promise.all([
    import("../core/runners/python.ts"),
    import("../core/runners/sandbox.ts"),
    import("../core/runners/typescript.ts"),
  ]);
  return {
    typescript: new TypeScriptRunner(
      new SandboxRunner({
        memoryMb: options.sandboxMemory,
        ...(options.workers ? { size: options.workers } : {}),
        // A sandbox stuck loading is killed when the load limit is reached.
        ...(options.loadTimeoutMs !== undefined ? { loadTimeoutMs: options.loadTimeoutMs } : {}),
        ...(logger ? { logger } : {}),
      }),
    ),
    python: new PythonRunner({ memoryMb: options.sandboxMemory }),
  };
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
  try {
    await installer.boot();
    if (cluster && entry) await installFromFile(installer, cluster, name, logger);
    if (!token && !options.insecure) {
      logger.warn(
        "admin",
        "no admin token: installs and admin requests over the network are refused (see --admin-token-file)",
      );
    }
    try {
      await server.start();
    } catch (error) {
      throw listenError(error, settings);
    }
    await http?.start();
    const signal = await first.promise;
    logger.info(
      "shutdown",
      `received ${signal}: stopping, calls in flight have ${settings.graceMs} ms to finish (send it again to stop at once)`,
      { signal, graceMs: settings.graceMs },
    );
    http?.stopAccepting();
    const abandoned = await server.drain(settings.graceMs, again.signal);
    logger.info("shutdown", `stopped${abandoned > 0 ? `, ${abandoned} calls cut short` : ""}`);
    return 0;
  } finally {
    for (const { signal, listener } of listeners) Deno.removeSignalListener(signal, listener);
    await http?.close();
    await server.close();
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

/** Problems with a file a flag names for writing: its directory must exist. */
async function writableFileProblems(
  flags: [string, string | undefined][],
): Promise<string[]> {
  const { dirname, resolve } = await servingModules();
  const problems: string[] = [];
  for (const [flag, path] of flags) {
    if (path === undefined) continue;
    const directory = dirname(resolve(path));
    try {
      if (!(await Deno.stat(directory)).isDirectory) throw new Error("not a directory");
    } catch (error) {
      const reason = error instanceof Deno.errors.NotFound
        ? "does not exist"
        : (error as Error).message;
      problems.push(`${flag} ${path}: directory ${directory} ${reason}`);
    }
  }
  return problems;
}

/**
 * `rpc server --check`: validates what {@linkcode serverSettings} did not
 * already (files to write, TLS material), loads every installed procedure,
 * and those init.yaml would install at start, with the real runners, and
 * prints what the server would serve. Binds no port. Returns 0 or 1.
 */
async function checkServer(
  options: ServerCommandOptions,
  settings: ServerSettings,
): Promise<number> {
  const {
    checkCluster,
    checkLines,
    checkSources,
    checkStateDir,
    failureLines,
    planInstall,
    planIsEmpty,
  } = await servingModules();
  const { name, cluster, entry } = settings;
  const problems = await writableFileProblems([
    ["--log-file", options.logFile],
    ["--audit-log", options.auditLog],
    ["--pidfile", options.pidfile],
  ]);
  for (
    const [flag, text] of [["--tls-cert", settings.tls?.cert], ["--tls-key", settings.tls?.key]]
  ) {
    if (text !== undefined && !text.includes("-----BEGIN ")) {
      problems.push(`${flag}: not a PEM file`);
    }
  }
  const transport = settings.tls ? settings.tls.clientCa ? "mutual TLS" : "TLS" : "plain TCP";
  print(`rpc server ${name}: checking; no port is bound`);
  if (cluster) {
    print(
      `  config     ${cluster.file}${entry ? ` (server ${name})` : ` (no server ${name} in it)`}`,
    );
  }
  print(
    settings.unix
      ? `  listen     unix:${settings.unix.path}, mode ${settings.unix.mode.toString(8)}`
      : `  listen     ${settings.hostname}:${settings.port}, ${transport}`,
  );
  if (settings.http) {
    print(
      `  http       ${settings.http.hostname}:${settings.http.port}, ${
        settings.tls ? "HTTPS" : "HTTP"
      }`,
    );
  }
  print(`  admin      ${settings.tokenSource}`);
  print(`  state dir  ${settings.stateDir}`);
  const runners = await procedureRunners({
    ...options,
    workers: options.workers ?? 1,
    loadTimeoutMs: settings.loadTimeoutMs,
  });
  let failed = 0;
  let serving: { services: number; procedures: number } = { services: 0, procedures: 0 };
  try {
    let installed: StateCheck | undefined;
    try {
      installed = await checkStateDir(settings.stateDir, runners);
    } catch (error) {
      problems.push(`state dir ${settings.stateDir}: ${(error as Error).message}`);
    }
    if (installed) {
      const { manifest } = installed;
      print(
        manifest.generation === 0
          ? `installed: nothing yet`
          : `installed: generation ${manifest.generation} (${manifest.installedAt}), ${manifest.services.length} services, ${manifest.procedures.length} procedures`,
      );
      for (const line of checkLines(installed)) print(line);
      for (const line of failureLines(installed)) problems.push(`installed ${line}`);
      serving = { services: manifest.services.length, procedures: manifest.procedures.length };
    }
    if (cluster && entry) {
      const unreadable = await checkSources(cluster, [name]);
      if (unreadable.length > 0) {
        print(
          `${cluster.file}: sources for ${name} are not all readable here (${
            unreadable[0].message
          }); it gives only address, port and clients`,
        );
      } else {
        const fromFile = await checkCluster(cluster, runners, name);
        const same = installed && planIsEmpty(planInstall(installed.manifest, fromFile.manifest));
        print(
          same
            ? `${cluster.file}: the same as installed; nothing to install at start`
            : `${cluster.file}: installed at start (the sources for ${name} are readable here):`,
        );
        if (!same) {
          for (const line of checkLines(fromFile)) print(line);
          for (const line of failureLines(fromFile, cluster.file)) problems.push(line);
          serving = {
            services: fromFile.manifest.services.length,
            procedures: fromFile.manifest.procedures.length,
          };
        }
      }
    }
  } finally {
    await Promise.all(Object.values(runners).map((runner) => runner.close()));
  }
  if (!settings.token && !options.insecure) {
    print("warning: no admin token: rpc init and rpc admin will be refused");
  }
  failed = problems.length;
  for (const problem of problems) printError(`error: ${problem}`);
  print(
    failed === 0
      ? `ok: would serve ${serving.services} services, ${serving.procedures} procedures`
      : `FAILED: ${failed} problem${failed === 1 ? "" : "s"}`,
  );
  return failed === 0 ? 0 : 1;
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
