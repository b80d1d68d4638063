/**
 * The `rpc` command line: parses arguments, runs one subcommand, and maps
 * every failure to one `error:` line and a stable exit code. This is the only
 * place that exits the process.
 *
 * @module
 */

import { or } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { run } from "@optique/run";
import { callCommand, runCall } from "./cmd/call.ts";
import { printError, UsageError } from "./cmd/common.ts";
import { hashCommand, runHash } from "./cmd/hash.ts";
import { initCommand, runInit } from "./cmd/init.ts";
import { runServer, serverCommand } from "./cmd/server.ts";
import { ConfigError, RpcError, USAGE_EXIT_CODE } from "./core/errors.ts";
import { VERSION } from "./core/version.ts";

/** Exit code for an init.yaml that does not check out. */
export const CONFIG_EXIT_CODE = 6;

const parser = or(serverCommand, callCommand, initCommand, hashCommand);

async function main(args: string[]): Promise<number> {
  const options = run(parser, {
    programName: "rpc",
    args,
    help: "both",
    version: VERSION,
    errorExitCode: USAGE_EXIT_CODE,
    colors: !Deno.noColor && Deno.stdout.isTerminal(),
    brief: message`rpc: remote procedure calls over TCP, deployed from init.yaml.`,
  });
  switch (options.command) {
    case "server":
      return await runServer(options);
    case "call":
      return await runCall(options);
    case "init":
      return await runInit(options);
    case "hash":
      return await runHash(options);
  }
}

/** Maps a failure to its `error:` line and exit code. */
export function reportFailure(error: unknown): number {
  if (error instanceof UsageError) {
    printError(`error: ${error.message}`);
    return USAGE_EXIT_CODE;
  }
  if (error instanceof ConfigError) {
    for (const problem of error.problems) {
      printError(`error: ${problem.file}:${problem.line}:${problem.column}: ${problem.message}`);
    }
    return CONFIG_EXIT_CODE;
  }
  const rpcError = RpcError.from(error);
  printError(`error: ${rpcError.kind}: ${rpcError.message}`);
  return rpcError.exitCode;
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    code = reportFailure(error);
  }
  Deno.exit(code);
}
