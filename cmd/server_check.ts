/**
 * `rpc server --check`: everything `rpc server` would do before serving,
 * without binding a port: the files it would write, its TLS material, the
 * installed procedures and those init.yaml would install at start, each
 * loaded with the real runners. Prints what would be served.
 *
 * @module
 */

import type { StateCheck } from "../core/deploy/check.ts";
import { print, printError } from "./common.ts";
import { procedureRunners } from "./runners.ts";
import type { ServerCommandOptions } from "./server_flags.ts";
import type { ServerSettings } from "./server_settings.ts";

/** Problems with a file a flag names for writing: its directory must exist. */
async function writableFileProblems(
  flags: [string, string | undefined][],
): Promise<string[]> {
  const { dirname, resolve } = await import("node:path");
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
export async function checkServer(
  options: ServerCommandOptions,
  settings: ServerSettings,
): Promise<number> {
  const [
    { checkCluster, checkStateDir },
    { checkSources },
    { planInstall, planIsEmpty },
    { checkLines, failureLines },
  ] = await Promise.all([
    import("../core/deploy/check.ts"),
    import("../core/deploy/cluster.ts"),
    import("../core/deploy/plan.ts"),
    import("./check.ts"),
  ]);
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
    !settings.listens
      ? `  listen     no port (only through the broker)`
      : settings.unix
      ? `  listen     unix:${settings.unix.path}, mode ${settings.unix.mode.toString(8)}`
      : `  listen     ${settings.hostname}:${settings.port}, ${transport}`,
  );
  if (settings.broker) {
    const { redactBrokerUrl } = await import("../core/transport/nats/broker_url.ts");
    print(
      `  broker     ${redactBrokerUrl(settings.broker.url)}${
        settings.broker.creds ? `, credentials ${settings.broker.creds}` : ""
      }`,
    );
  }
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
