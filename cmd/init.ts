/**
 * `rpc init`: bring every server of init.yaml to the state the file
 * describes, sending only the code each server lacks.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { optional, withDefault } from "@optique/core/modifiers";
import { argument, command, constant, flag, option } from "@optique/core/primitives";
import { string } from "@optique/core/valueparser";
import type { ClientOptions, RpcClient } from "../core/client/client.ts";
import { connect } from "../core/client/connect.ts";
import { localRunOf } from "../core/client/local.ts";
import { checkCluster, checkPassed } from "../core/deploy/check.ts";
import { checkSources, type Cluster, loadCluster } from "../core/deploy/cluster.ts";
import { deploy } from "../core/deploy/client.ts";
import { desiredStateFor } from "../core/deploy/desired.ts";
import { nameSources, sourcesByHash } from "../core/deploy/source_names.ts";
import type { InstallReport } from "../core/deploy/messages.ts";
import { describeProcedure, type Desired, type Plan, planIsEmpty } from "../core/deploy/plan.ts";
import { ConfigError, ErrorKind, RpcError } from "../core/errors.ts";
import { stringifyJson } from "../core/types/types.ts";
import {
  configPath,
  examples,
  jsonFlag,
  parseDuration,
  print,
  printError,
  securityOptions,
  UsageError,
} from "./common.ts";
import { deployExitCode } from "./exit_codes.ts";
import { checkLines, failureLines } from "./check.ts";
import { procedureRunners } from "./runners.ts";
import type { TlsClientOptions } from "../core/transport/mod.ts";
import {
  adminToken,
  type ClientFlags,
  localCluster,
  localWanted,
  processEnvironment,
  tlsFrom,
} from "./settings.ts";
import { brokerDial, brokerFrom } from "./broker.ts";

/** The parser of `rpc init`. */
export const initCommand = command(
  "init",
  object({
    command: constant("init" as const),
    ...securityOptions,
    file: optional(argument(string({ metavar: "FILE" }), {
      description: message`The cluster file (default: --config, $RPC_CONFIG, else ./init.yaml).`,
    })),
    config: optional(option("-c", "--config", string({ metavar: "FILE" }), {
      description: message`Same as FILE.`,
    })),
    dryRun: withDefault(
      flag("-n", "--dry-run", {
        description: message`Print what would change on each server; change nothing.`,
      }),
      false,
    ),
    check: withDefault(
      flag("--check", {
        description:
          message`Check the file and load every procedure it names with the real runners, from a throwaway state directory; contact no server. Exits 0, or 1 naming each procedure that fails to load.`,
      }),
      false,
    ),
    adminTokenFile: optional(option("--admin-token-file", string({ metavar: "FILE" }), {
      description: message`File holding the servers' admin secret (default: $RPC_ADMIN_TOKEN).`,
    })),
    timeout: withDefault(
      option("--timeout", string({ metavar: "DURATION" }), {
        description:
          message`Time limit of the whole run: connecting, planning and installing, on every server at once (e.g. ${"30s"}).`,
      }),
      "60s",
    ),
    json: jsonFlag,
  }),
  {
    brief: message`Deploy the procedures of init.yaml to its servers.`,
    description:
      message`Checks the whole file first (names, types, overloads, readable sources) and reports every problem with file:line:column, sending nothing; --check also loads every procedure and stops there. Then, over one connection per server, compares SHA-256 hashes with what the server holds, sends only new or changed sources, and installs the exact state the file describes: what the file no longer lists is removed. Servers keep running; calls in flight finish on the old code. When every server failed with the same kind, exits with that kind's code (6 for Config Error); when some failed, or they failed in different ways, exits 1.`,
    footer: examples(
      "rpc init --check init.yaml",
      "rpc init init.yaml --dry-run",
      "RPC_ADMIN_TOKEN=secret rpc init init.yaml",
      "rpc init --admin-token-file ~/.rpc-admin init.yaml --json",
    ),
  },
);

/** Options of {@linkcode runInit}, as parsed. */
export interface InitCommandOptions extends Omit<ClientFlags, "as" | "timeout"> {
  file?: string;
  config?: string;
  dryRun: boolean;
  check: boolean;
  adminTokenFile?: string;
  timeout: string;
  json: boolean;
}

/** The outcome for one server. */
export interface ServerOutcome {
  server: string;
  address: string;
  ok: boolean;
  error?: { kind: string; message: string };
  plan?: {
    added: string[];
    changed: string[];
    removed: string[];
    unchanged: number;
    services: string[];
    clientsChanged: boolean;
    sources: number;
  };
  install?: InstallReport;
  unchanged?: boolean;
}

/** Checks the file and its sources; throws every problem at once. */
export async function checkedCluster(path: string): Promise<Cluster> {
  const cluster = await loadCluster(path);
  const problems = await checkSources(cluster);
  if (problems.length > 0) throw new ConfigError(problems);
  return cluster;
}

function summarize(plan: Plan): NonNullable<ServerOutcome["plan"]> {
  return {
    added: plan.added.map(describeProcedure),
    changed: plan.changed.map(({ to }) => describeProcedure(to)),
    removed: plan.removed.map(describeProcedure),
    unchanged: plan.unchanged.length,
    services: plan.services,
    clientsChanged: plan.clientsChanged,
    sources: plan.missing.length,
  };
}

/**
 * Deploys to one server over one connection and reports what happened.
 * Everything, connecting included, ends by `deadline` (a `performance.now()`
 * time): then the connection is closed and the server's outcome is a
 * `Timeout`.
 */
export async function deployTo(
  cluster: Cluster,
  server: string,
  options: {
    dryRun: boolean;
    token?: string;
    tls?: TlsClientOptions;
    /** Opens the connection through a broker, by the server's name, instead of dialing its address. */
    dial?: ClientOptions["dial"];
    timeoutMs: number;
    deadline: number;
    log: (line: string) => void;
  },
): Promise<ServerOutcome> {
  const entry = cluster.servers.get(server)!;
  const address = options.dial ? `nats:${entry.name}` : `${entry.host}:${entry.port}`;
  const outcome: ServerOutcome = { server, address, ok: false };
  let client: RpcClient | undefined;
  let installSent = false;
  const overdue = new AbortController();
  const timer = setTimeout(() => {
    overdue.abort();
    client?.close();
  }, Math.max(0, options.deadline - performance.now()));
  // The state to send, once known: errors about it are mapped back to init.yaml.
  let desired: Desired | undefined;
  try {
    desired = await desiredStateFor(cluster, server);
    // The admin token is proven in the handshake (AUTH), never sent.
    client = await connect({ hostname: entry.host, port: entry.port, name: entry.name }, {
      connectTimeoutMs: Math.max(1, options.deadline - performance.now()),
      ...(options.tls ? { tls: options.tls } : {}),
      ...(options.dial ? { dial: options.dial } : {}),
      ...(options.token ? { adminToken: options.token } : {}),
    });
    if (overdue.signal.aborted) client.close();
    const report = await deploy(client, desired, {
      dryRun: options.dryRun,
      signal: overdue.signal,
      onPlan: (plan) => {
        outcome.plan = summarize(plan);
        for (const line of planLines(plan)) options.log(`${server}: ${line}`);
      },
      onInstall: (sources) => {
        installSent = true;
        options.log(`${server}: installing, sending ${sources} sources`);
      },
    });
    const { plan } = report;
    outcome.ok = true;
    if (planIsEmpty(plan)) {
      outcome.unchanged = true;
      options.log(`${server}: unchanged (${plan.unchanged.length} procedures), no code sent`);
    } else if (!report.install) {
      options.log(
        `${server}: would send ${plan.missing.length} sources (dry run, nothing changed)`,
      );
    } else {
      outcome.install = report.install;
      options.log(
        `${server}: installed generation ${report.install.generation}, server received ${report.install.received} sources (${report.install.bytes} bytes)`,
      );
    }
  } catch (error) {
    const rpcError = overdue.signal.aborted
      ? new RpcError(
        ErrorKind.Timeout,
        `No result from ${server} within ${options.timeoutMs} ms (--timeout)${
          installSent
            ? "; the install was sent and may still complete there: rpc init --dry-run shows what the server holds"
            : ""
        }`,
      )
      : RpcError.from(error);
    // The server names what it could not load by its stored blob; say which src that was.
    const message = desired
      ? nameSources(rpcError.message, sourcesByHash(cluster, server, desired.state), cluster.file)
      : rpcError.message;
    outcome.error = { kind: rpcError.kind, message };
    options.log(`${server}: FAILED: ${rpcError.kind}: ${message}`);
    if (rpcError.kind === ErrorKind.Conflict) {
      options.log(
        `${server}: another install reached it after this run read its state; run rpc init again to plan against what it holds now`,
      );
    }
  } finally {
    clearTimeout(timer);
    client?.close();
  }
  return outcome;
}

function planLines(plan: Plan): string[] {
  const lines = [
    `${plan.added.length} added, ${plan.changed.length} changed, ${plan.removed.length} removed, ${plan.unchanged.length} unchanged`,
  ];
  for (const procedure of plan.added) lines.push(`  + ${describeProcedure(procedure)}`);
  for (const { from, to } of plan.changed) {
    const what = from.hash !== to.hash
      ? `sha256 ${from.hash.slice(0, 12)} -> ${to.hash.slice(0, 12)}`
      : from.returns.join() !== to.returns.join()
      ? "return types"
      : "doc, timeout or language";
    lines.push(`  ~ ${describeProcedure(to)}  (${what})`);
  }
  for (const procedure of plan.removed) lines.push(`  - ${describeProcedure(procedure)}`);
  for (const service of plan.services) {
    lines.push(`  * service ${service}: added, removed or tenants changed`);
  }
  if (plan.clientsChanged) lines.push(`  * client table changed`);
  return lines;
}

/**
 * `rpc init --check`: loads every procedure the (already checked) file names,
 * as a server would, and reports each that fails with its place in the file.
 */
async function checkProcedures(cluster: Cluster, json: boolean): Promise<number> {
  const runners = await procedureRunners({ sandboxMemory: 256, workers: 1 });
  let check;
  try {
    check = await checkCluster(cluster, runners);
  } finally {
    await Promise.all(Object.values(runners).map((runner) => runner.close()));
  }
  const ok = checkPassed(check);
  if (json) {
    print(stringifyJson({
      file: cluster.file,
      ok,
      procedures: check.procedures.map(({ record, ok, error, entry }) => ({
        procedure: describeProcedure(record),
        sha256: record.hash,
        language: record.language,
        ok,
        ...(error ? { error } : {}),
        ...(entry
          ? {
            src: entry.source,
            line: entry.sourcePosition.line,
            column: entry.sourcePosition.column,
          }
          : {}),
      })),
    }));
  } else {
    print(`${cluster.file}: loading every procedure as a server would`);
    for (const line of checkLines(check)) print(line);
  }
  const failures = failureLines(check, cluster.file);
  for (const line of failures) printError(`error: ${line}`);
  if (!json) {
    const count = check.procedures.length;
    print(
      ok
        ? `ok: ${count} procedures load; ready to deploy`
        : `FAILED: ${failures.length} of ${count} procedures cannot load`,
    );
  }
  return ok ? 0 : 1;
}

/** Runs `rpc init`; returns the exit code. */
export async function runInit(options: InitCommandOptions): Promise<number> {
  const path = options.file ?? configPath(options.config, true)!;
  let cluster = await checkedCluster(path);
  if (options.check) return await checkProcedures(cluster, options.json);
  // Under rpc up (--local): its servers, with its admin secret unless another is given.
  if (localWanted(options)) cluster = await localCluster(cluster);
  const token = options.dryRun
    ? undefined
    : await adminToken(options.adminTokenFile) ?? localRunOf(cluster)?.token;
  const timeoutMs = parseDuration(options.timeout);
  const deadline = performance.now() + timeoutMs;
  const tls = await tlsFrom(options);
  const broker = brokerFrom(options, cluster, processEnvironment);
  const dial = broker ? brokerDial(broker) : undefined;
  if (!dial) {
    const unaddressed = [...cluster.servers.values()].filter((entry) => entry.port === 0);
    if (unaddressed.length > 0) {
      throw new UsageError(
        `${unaddressed.map((entry) => entry.name).join(", ")} ${
          unaddressed.length === 1 ? "has" : "have"
        } no ip and port in ${path}: deploy through the broker (--broker URL, or network.broker in the file)`,
      );
    }
  }
  const log = options.json ? () => {} : (line: string) => print(line);
  const outcomes = await Promise.all(
    [...cluster.servers.keys()].map((server) =>
      deployTo(cluster, server, {
        dryRun: options.dryRun,
        ...(token ? { token } : {}),
        ...(tls ? { tls } : {}),
        ...(dial ? { dial } : {}),
        timeoutMs,
        deadline,
        log,
      })
    ),
  );
  const failed = outcomes.filter((outcome) => !outcome.ok);
  if (options.json) {
    print(stringifyJson({ dryRun: options.dryRun, servers: outcomes }));
  } else if (failed.length > 0) {
    printError(
      `error: ${failed.length} of ${outcomes.length} servers failed: ${
        failed.map((f) => f.server).join(", ")
      }`,
    );
    const conflicts = failed.filter((f) => f.error?.kind === ErrorKind.Conflict);
    if (conflicts.length > 0) {
      printError(
        `hint: ${
          conflicts.map((f) => f.server).join(", ")
        } changed while this run planned (another rpc init?); nothing was installed there: run rpc init again`,
      );
    }
  }
  return deployExitCode(
    failed.map((outcome) => outcome.error?.kind ?? ErrorKind.Internal),
    outcomes.length,
  );
}
