/**
 * The whole command line through optique's runner: help pages, `--version`,
 * shell completion, and usage errors turned into one `error:` line and a
 * `hint:` line. `main.ts` comes here for everything but a command line that
 * parses at once (see its fast path), and hands over only the subcommands it
 * needs to have loaded.
 *
 * @module
 */

import { or } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { bash, fish, nu, pwsh, type ShellCompletion, zsh } from "@optique/core/completion";
import type { Parser } from "@optique/core/parser";
import { runParser } from "@optique/core/facade";
import { VERSION } from "../core/version.ts";
import { examples } from "./common.ts";
import { oneLine, OutputClosed, print, printError, writeAll } from "./output.ts";
import { colorEnabled } from "./settings.ts";

/** A parser of any mode and value, as the subcommand table holds them. */
// deno-lint-ignore no-explicit-any
export type AnyParser = Parser<"sync" | "async", any, any>;

/** The shells `rpc completions` writes scripts for, by name. */
export const SHELLS: Readonly<Record<string, ShellCompletion>> = { bash, zsh, fish, pwsh, nu };

/** Names of the completion meta command. */
export const COMPLETION_COMMANDS = ["completions", "completion"];

/** Thrown by the runner's exit hook, so that the caller gets the code instead of an exit. */
class RunnerExit {
  constructor(readonly code: number) {}
}

/**
 * Turns what the parser wrote to stderr into one `error:` line plus a hint,
 * e.g. `error: Unexpected option or subcommand: --bogus` and
 * `hint: rpc call --help shows usage and examples`.
 */
export function usageErrorLines(
  written: readonly string[],
  args: readonly string[],
  subcommands: readonly string[],
): string[] {
  // The parser writes the error as one text, and may add a help page after it.
  const error = written.find((text) => text.startsWith("Error: ")) ?? written.join("\n");
  const text = error.replace(/^Error: /, "").trim().replace(/\s*\n\s*/g, " ").replace(/\.$/, "");
  const subcommand = args.find((arg) =>
    subcommands.includes(arg) || COMPLETION_COMMANDS.includes(arg)
  );
  return [
    `error: ${oneLine(text)}`,
    `hint: rpc ${subcommand ? `${subcommand} ` : ""}--help shows usage and examples`,
  ];
}

/**
 * The width help is wrapped to: `COLUMNS` when set, else the terminal's
 * width, else 80 (output to a pipe or a file).
 */
export function helpWidth(
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
  stdout: { isTerminal(): boolean } = Deno.stdout,
  consoleColumns: () => number = () => Deno.consoleSize().columns,
): number {
  const columns = Number(env("COLUMNS"));
  if (Number.isInteger(columns) && columns > 0) return columns;
  if (stdout.isTerminal()) {
    try {
      const width = consoleColumns();
      if (width > 0) return width;
    } catch {
      // No console size to be had: the default below.
    }
  }
  return 80;
}

/** What {@linkcode runCommandLine} decided. */
export type CommandLineOutcome =
  /** The runner printed help, a version or completions, or a usage error: exit with this. */
  | { exit: number }
  /** A subcommand to run, with its parsed options. */
  | { options: { command: string } };

/**
 * Runs the command line through optique's runner with the given subcommand
 * parsers (all of them for `rpc --help`, the one named for `rpc call --help`).
 */
export async function runCommandLine(
  args: readonly string[],
  parsers: readonly AnyParser[],
  subcommands: readonly string[],
): Promise<CommandLineOutcome> {
  const written: string[] = [];
  // A shell asking for completions gets each piece on a line, as the scripts expect.
  const completing = COMPLETION_COMMANDS.includes(args[0]) && args.length > 2;
  const stdout = completing
    ? (text: string) => writeRaw(`${text}\n`)
    : (text: string) => print(text);
  const shell = completing ? SHELLS[args[1]] : undefined;
  if (shell && COMPLETION_COMMANDS.includes(args[2]) && args.length === 4) {
    // `rpc completions <Tab>`: the shells, where optique would offer the subcommands.
    const names = Object.keys(SHELLS).filter((name) => name.startsWith(args[3]));
    for (const chunk of shell.encodeSuggestions(names.map((text) => ({ kind: "literal", text })))) {
      stdout(chunk);
    }
    return { exit: 0 };
  }
  const parser = or(
    ...(parsers as [AnyParser, ...AnyParser[]]),
    // Said when no subcommand is given. Left to itself the parser would list what the
    // subcommands' own first tokens could be ("option, command, or argument").
    { errors: { noMatch: message`No matching command found` } },
  );
  // optique's runner, configured as @optique/run would configure it from these
  // options, without that package's process and terminal probing (slow to load).
  const onShow = (): never => {
    throw new RunnerExit(0);
  };
  try {
    const options = await runParser(parser, "rpc", args, {
      help: { command: true, option: true, onShow },
      version: { value: VERSION, option: true, onShow },
      completion: { command: { names: COMPLETION_COMMANDS as [string, ...string[]] }, onShow },
      aboveError: "none",
      maxWidth: helpWidth(),
      usageLine: [{ type: "argument", metavar: "COMMAND" }, {
        type: "multiple",
        terms: [{ type: "argument", metavar: "ARG" }],
        min: 0,
      }],
      colors: colorEnabled(),
      stdout,
      stderr: (text) => written.push(text),
      onError: () => {
        throw new RunnerExit(2);
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
    return { options: options as { command: string } };
  } catch (error) {
    if (!(error instanceof RunnerExit)) throw error;
    if (error.code !== 0) {
      for (const line of usageErrorLines(written, args, subcommands)) printError(line);
      return { exit: 2 };
    }
    for (const text of written) printError(text);
    return { exit: 0 };
  }
}

/** Writes text to stdout as it is. */
function writeRaw(text: string): void {
  try {
    writeAll(Deno.stdout, new TextEncoder().encode(text));
  } catch (error) {
    if (error instanceof Deno.errors.BrokenPipe) throw new OutputClosed();
    throw error;
  }
}
