/**
 * The `rpc` command line: runs one subcommand, and maps every failure to one
 * `error:` line and a stable exit code. This is the only place that exits the
 * process.
 *
 * It loads only what the chosen subcommand needs: `rpc --version` loads no
 * parser at all, and `rpc call …` loads the argument parser and
 * `cmd/call.ts` with what it imports, never the server, the runners or the
 * other subcommands. A command line that parses at once runs straight away;
 * help, `--version` after a subcommand, shell completion and usage errors go
 * through optique's runner in `cmd/cli.ts`.
 *
 * @module
 */

import { ConfigError, RpcError } from "./core/errors.ts";
import { VERSION } from "./core/version.ts";
import type { Parser } from "@optique/core/parser";
import type { AnyParser } from "./cmd/cli.ts";
import { oneLine, OutputClosed, print, printError } from "./cmd/output.ts";
import { UsageError } from "./cmd/settings.ts";
import { CONFIG_EXIT_CODE, exitCodeOf, USAGE_EXIT_CODE } from "./cmd/exit_codes.ts";

/** A subcommand: its parser, and what runs it with the parsed options. */
interface Subcommand {
  parser: AnyParser;
  run(options: unknown): Promise<number>;
}

function subcommand<T>(
  // deno-lint-ignore no-explicit-any
  parser: Parser<"sync" | "async", T, any>,
  run: (options: T) => Promise<number>,
): Subcommand {
  return { parser, run: run as (options: unknown) => Promise<number> };
}

/** Every subcommand, loaded only when named. */
const SUBCOMMANDS: Readonly<Record<string, () => Promise<Subcommand>>> = {
  server: async () => {
    const [{ serverCommand }, { runServer }] = await Promise.all([
      import("./cmd/server_flags.ts"),
      import("./cmd/server.ts"),
    ]);
    return subcommand(serverCommand, runServer);
  },
  call: async () => {
    const { callCommand, runCall } = await import("./cmd/call.ts");
    return subcommand(callCommand, runCall);
  },
  list: async () => {
    const { listCommand, runList } = await import("./cmd/list.ts");
    return subcommand(listCommand, runList);
  },
  describe: async () => {
    const { describeCommand, runDescribe } = await import("./cmd/describe.ts");
    return subcommand(describeCommand, runDescribe);
  },
  repl: async () => {
    const { replCommand, runRepl } = await import("./cmd/repl.ts");
    return subcommand(replCommand, runRepl);
  },
  init: async () => {
    const { initCommand, runInit } = await import("./cmd/init.ts");
    return subcommand(initCommand, runInit);
  },
  hash: async () => {
    const { hashCommand, runHash } = await import("./cmd/hash.ts");
    return subcommand(hashCommand, runHash);
  },
  ping: async () => {
    const { pingCommand, runPing } = await import("./cmd/ping.ts");
    return subcommand(pingCommand, runPing);
  },
  admin: async () => {
    const { adminCommand, runAdmin } = await import("./cmd/admin.ts");
    return subcommand(adminCommand, runAdmin);
  },
  bench: async () => {
    const { benchCommand, runBenchCommand } = await import("./cmd/bench.ts");
    return subcommand(benchCommand, runBenchCommand);
  },
  up: async () => {
    const { upCommand, runUp } = await import("./cmd/up.ts");
    return subcommand(upCommand, runUp);
  },
  down: async () => {
    const { downCommand, runDown } = await import("./cmd/up.ts");
    return subcommand(downCommand, runDown);
  },
};

const NAMES = Object.keys(SUBCOMMANDS);

/** Words that make the runner, not the subcommand, answer (help, version). */
const META_WORDS = new Set(["--help", "-h", "--version"]);

/**
 * The subcommands a command line needs loaded for the runner: the one it
 * names (`rpc call --help`, `rpc completions bash call --as c1 …`), else all
 * of them (`rpc --help`, `rpc cal`, completing the subcommand's name).
 */
function needed(args: readonly string[]): string[] {
  const completion = args[0] === "completions" || args[0] === "completion";
  const words = completion ? args.slice(2) : args[0] === "help" ? args.slice(1) : args;
  // While completing, the last word is still being typed.
  const named = completion ? words.slice(0, -1)[0] : words[0];
  return named !== undefined && Object.hasOwn(SUBCOMMANDS, named) ? [named] : NAMES;
}

/**
 * With `deno task rpc …`, Deno runs the command in the repository's folder
 * and says where it was run in `INIT_CWD`; the task passes that on as
 * `RPC_CWD`, so that relative paths (init.yaml, `--config`, `rpc hash FILE`)
 * mean what the user meant.
 */
function enterCallersDirectory(): void {
  const cwd = Deno.env.get("RPC_CWD");
  if (!cwd) return;
  Deno.env.delete("RPC_CWD");
  try {
    Deno.chdir(cwd);
  } catch (error) {
    throw new UsageError(`Cannot enter ${cwd} (RPC_CWD): ${(error as Error).message}`);
  }
}

async function main(args: readonly string[]): Promise<number> {
  enterCallersDirectory();
  if (args.length === 1 && args[0] === "--version") {
    print(VERSION);
    return 0;
  }
  const name = args[0];
  const ending = args.indexOf("--");
  const meta = (ending < 0 ? args : args.slice(0, ending)).some((word) => META_WORDS.has(word));
  if (name !== undefined && Object.hasOwn(SUBCOMMANDS, name) && !meta) {
    // The fast path: a command line that parses runs without loading the runner.
    const entry = await SUBCOMMANDS[name]();
    const { parseAsync } = await import("@optique/core/parser");
    const { negativeNumbersAsArguments, valuedOptions } = await import("./cmd/argv.ts");
    const rewritten = negativeNumbersAsArguments(args, valuedOptions(entry.parser.usage));
    const parsed = await parseAsync(entry.parser, rewritten);
    if (parsed.success) return await entry.run(parsed.value);
    return await viaRunner(rewritten, { [name]: entry });
  }
  const wanted = needed(args);
  const loaded = await Promise.all(wanted.map((key) => SUBCOMMANDS[key]()));
  const entries = Object.fromEntries(wanted.map((key, i) => [key, loaded[i]]));
  // Bare `rpc` prints the usage, as `rpc --help` does.
  return await viaRunner(args.length === 0 ? ["--help"] : args, entries);
}

/** Runs the command line through optique's runner (help, completion, usage errors). */
async function viaRunner(
  args: readonly string[],
  entries: Readonly<Record<string, Subcommand>>,
): Promise<number> {
  const { runCommandLine } = await import("./cmd/cli.ts");
  const outcome = await runCommandLine(
    args,
    Object.values(entries).map((entry) => entry.parser),
    NAMES,
  );
  if ("exit" in outcome) return outcome.exit;
  return await entries[outcome.options.command].run(outcome.options);
}

/**
 * A compiled binary runs its procedure sandboxes as itself, with a hidden
 * subcommand (see core/runners/sandbox_process.ts): runs the sandbox and
 * returns its exit code, or `undefined` for any other command line. The
 * sandbox's module is loaded only then.
 */
async function sandbox(args: readonly string[]): Promise<number | undefined> {
  if (!args[0]?.startsWith("__")) return undefined;
  const entry = await import("./core/runners/sandbox_entry.ts");
  return args[0] === entry.SANDBOX_COMMAND ? await entry.runSandboxProcess() : undefined;
}

/** Maps a failure to its `error:` line (and `hint:` line, if any) and exit code. */
export async function reportFailure(error: unknown, args: readonly string[]): Promise<number> {
  if (error instanceof OutputClosed) return 0;
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
  const { clientOfCommandLine, hintFor } = await import("./cmd/hints.ts");
  const hint = hintFor(rpcError.kind, clientOfCommandLine(args), rpcError.reason);
  if (hint) printError(`hint: ${hint}`);
  return exitCodeOf(rpcError.kind);
}

if (import.meta.main) {
  let code: number;
  try {
    code = await sandbox(Deno.args) ?? await main(Deno.args);
  } catch (error) {
    code = await reportFailure(error, Deno.args);
  }
  Deno.exit(code);
}
