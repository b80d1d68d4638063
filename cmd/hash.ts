/**
 * `rpc hash`: the SHA-256 of procedure sources exactly as `rpc init`
 * computes it, or the hashes a running server holds.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { multiple, optional } from "@optique/core/modifiers";
import { argument, command, constant, option } from "@optique/core/primitives";
import { string } from "@optique/core/valueparser";
import { connect } from "../core/client/connect.ts";
import { stringifyJson } from "../core/types/types.ts";
import {
  configOption,
  examples,
  jsonFlag,
  print,
  resolveServer,
  securityOptions,
  serverValue,
  UsageError,
} from "./common.ts";
import { runHashAll } from "./fanout.ts";
import { checkFanOutFlags, type FanOutFlags, fanOutOptions } from "./fanout_flags.ts";
import { type ClientFlags, clientSettings, connectOptions } from "./settings.ts";

/** The parser of `rpc hash`. */
export const hashCommand = command(
  "hash",
  object({
    command: constant("hash" as const),
    ...securityOptions,
    json: jsonFlag,
    config: configOption,
    server: optional(option("-s", "--server", serverValue, {
      description: message`List what this server holds instead: service, RPC, signature, hash.`,
    })),
    ...fanOutOptions,
    files: multiple(argument(string({ metavar: "FILE" }))),
  }),
  {
    brief: message`Print SHA-256 hashes of procedure sources, or what a server holds.`,
    description:
      message`The hash is taken over the file's text, as rpc init and the servers compute it, and printed like sha256sum. With --server, lists each procedure a running server holds with the hash of its source.`,
    footer: examples(
      "rpc hash services/service1/rpc1.ts",
      "rpc hash --server s1 --config init.yaml",
      "rpc hash --server 127.0.0.1:8181 --json",
      "rpc hash --all --config init.yaml",
    ),
  },
);

/** Options of {@linkcode runHash}. */
export interface HashCommandOptions extends ClientFlags, Partial<FanOutFlags> {
  json: boolean;
  config?: string;
  server?: string;
  files: readonly string[];
}

/** Runs `rpc hash`; returns the exit code. */
export async function runHash(options: HashCommandOptions): Promise<number> {
  const fanOut = { ...options, all: options.all ?? false };
  checkFanOutFlags(fanOut);
  if (fanOut.all) {
    if (options.server !== undefined || options.files.length > 0) {
      throw new UsageError("--all asks every server: give no --server and no FILE with it");
    }
    return await runHashAll(fanOut);
  }
  if (options.server !== undefined) return await serverHashes(options);
  if (options.files.length === 0) {
    throw new UsageError("rpc hash needs FILE arguments or --server SERVER");
  }
  const { sha256Hex } = await import("../core/hash.ts");
  const rows: { file: string; sha256: string }[] = [];
  for (const file of options.files) {
    rows.push({ file, sha256: sha256Hex(await readSource(file)) });
  }
  if (options.json) print(stringifyJson(rows));
  else for (const row of rows) print(`${row.sha256}  ${row.file}`);
  return 0;
}

/**
 * Reads a source file as `rpc init` does, or fails naming the file and what
 * is wrong with it.
 *
 * @throws {UsageError} when the file cannot be read.
 */
export async function readSource(file: string): Promise<string> {
  try {
    return await Deno.readTextFile(file);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : (error as Error).message;
    throw new UsageError(`Cannot hash ${file}: ${reason}`);
  }
}

async function serverHashes(options: HashCommandOptions): Promise<number> {
  const settings = await clientSettings({ ...options, as: undefined });
  const client = await connect(
    resolveServer(options.server!, settings.cluster, settings.broker !== undefined),
    connectOptions(settings),
  );
  try {
    const [{ fetchState }, { describeProcedure }] = await Promise.all([
      import("../core/deploy/client.ts"),
      import("../core/deploy/plan.ts"),
    ]);
    const state = await fetchState(client, { timeoutMs: settings.timeoutMs });
    if (options.json) {
      print(stringifyJson(state));
      return 0;
    }
    print(`# ${state.server} generation ${state.generation}, installed ${state.installedAt}`);
    for (const procedure of state.procedures) {
      print(`${procedure.hash}  ${describeProcedure(procedure)}  [${procedure.language}]`);
    }
    return 0;
  } finally {
    client.close();
  }
}
