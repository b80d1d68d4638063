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
import { adminCommand, runAdmin } from "./cmd/admin.ts";
import { benchCommand, runBenchCommand } from "./cmd/bench.ts";
import { callCommand, runCall } from "./cmd/call.ts";
import { examples, oneLine, print, printError, UsageError } from "./cmd/common.ts";
import { describeCommand, runDescribe } from "./cmd/describe.ts";
import { hashCommand, runHash } from "./cmd/hash.ts";
import { initCommand, runInit } from "./cmd/init.ts";
import { listCommand, runList } from "./cmd/list.ts";
import { pingCommand, runPing } from "./cmd/ping.ts";
import { replCommand, runRepl } from "./cmd/repl.ts";
import { runServer, serverCommand } from "./cmd/server.ts";
import { downCommand, runDown, runUp, upCommand } from "./cmd/up.ts";
import { colorEnabled } from "./cmd/settings.ts";
import { ConfigError, RpcError, USAGE_EXIT_CODE } from "./core/errors.ts";
import { runSandboxProcess, SANDBOX_COMMAND } from "./core/runners/sandbox_entry.ts";
import { VERSION } from "./core/version.ts";

/** Exit code for an init.yaml that does not check out. */
export const CONFIG_EXIT_CODE = 6;

const parser = or(
  serverCommand,
  callCommand,
  listCommand,
  describeCommand,
  replCommand,
  initCommand,
  hashCommand,
  pingCommand,
  adminCommand,
  benchCommand,
  upCommand,
  downCommand,
  // Said when no subcommand is given. Left to itself the parser would list what the
  // subcommands' own first tokens could be ("option, command, or argument").
  { errors: { noMatch: message`No matching command found` } },
);

/** Thrown by the parser's exit hook, so that `main` returns the code instead of exiting there. */
class ParserExit {
  constructor(readonly code: number) {}
}

/** The subcommand a command line names, for the usage hint. */
const SUBCOMMANDS = [
  "server",
  "call",
  "list",
  "describe",
  "repl",
  "init",
  "hash",
  "ping",
  "admin",
  "bench",
  "up",
  "down",
  "completions",
];

/**
 * Turns what the parser wrote to stderr into one `error:` line plus a hint,
 * e.g. `error: Unexpected option or subcommand: --bogus` and
 * `hint: rpc call --help shows usage and examples`.
 */
export function usageErrorLines(written: readonly string[], args: readonly string[]): string[] {
  // The parser writes the error as one text, and may add a help page after it.
  const error = written.find((text) => text.startsWith("Error: ")) ?? written.join("\n");
  const text = error.replace(/^Error: /, "").trim().replace(/\s*\n\s*/g, " ").replace(/\.$/, "");
  const subcommand = args.find((arg) => SUBCOMMANDS.includes(arg));
  return [
    `error: ${oneLine(text)}`,
    `hint: rpc ${subcommand ? `${subcommand} ` : ""}--help shows usage and examples`,
  ];
}

async function main(args: string[]): Promise<number> {
  const written: string[] = [];
  let options;
  try {
    options = run(parser, {
      programName: "rpc",
      args,
      help: "both",
      version: VERSION,
      completion: { command: { names: ["completions", "completion"] } },
      errorExitCode: USAGE_EXIT_CODE,
      aboveError: "none",
      usageLine: [{ type: "argument", metavar: "COMMAND" }, {
        type: "multiple",
        terms: [{ type: "argument", metavar: "ARG" }],
        min: 0,
      }],
      colors: colorEnabled(),
      stdout: (text) => print(text),
      stderr: (text) => written.push(text),
      onExit: (code) => {
        throw new ParserExit(code);
      },
      brief: message`rpc: remote procedure calls over TCP, deployed from init.yaml.`,
      footer: examples(
        "rpc server --config init.yaml --name s1",
        "rpc call --as c1 s1 service1 rpc1 3 ab",
        "rpc list --as c1 s1",
        "rpc repl --as c1 s1",
        "rpc ping s1",
        "source <(rpc completions bash)",
      ),
    });
  } catch (error) {
    if (!(error instanceof ParserExit)) throw error;
    if (error.code !== 0) {
      for (const line of usageErrorLines(written, args)) printError(line);
      return USAGE_EXIT_CODE;
    }
    for (const text of written) printError(text);
    return 0;
  }
  switch (options.command) {
    case "server":
      return await runServer(options);
    case "call":
      return await runCall(options);
    case "list":
      return await runList(options);
    case "describe":
      return await runDescribe(options);
    case "repl":
      return await runRepl(options);
    case "init":
      return await runInit(options);
    case "hash":
      return await runHash(options);
    case "ping":
      return await runPing(options);
    case "admin":
      return await runAdmin(options);
    case "bench":
      return await runBenchCommand(options);
    case "up":
      return await runUp(options);
    case "down":
      return await runDown(options);
  }
}

/** Maps a failure to its `error:` line and exit code. */
export function reportFailure(error: unknown): number {
  if (error instanceof UsageError) {
    printError(`error: ${oneLine(error.message)}`);
    return USAGE_EXIT_CODE;
  }
  if (error instanceof ConfigError) {
    for (const problem of error.problems) {
      printError(
        `error: ${problem.file}:${problem.line}:${problem.column}: ${oneLine(problem.message)}`,
      );
    }
    return CONFIG_EXIT_CODE;
  }
  const rpcError = RpcError.from(error);
  printError(`error: ${rpcError.kind}: ${oneLine(rpcError.message)}`);
  return rpcError.exitCode;
}

if (import.meta.main) {
  let code: number;
  try {
    // A compiled binary runs its procedure sandboxes as itself (see core/runners/sandbox_process.ts).
    code = Deno.args[0] === SANDBOX_COMMAND ? await runSandboxProcess() : await main(Deno.args);
  } catch (error) {
    code = reportFailure(error);
  }
  Deno.exit(code);
}
