/**
 * The REPL's line syntax, without I/O: a call is `service.rpc` followed by
 * its arguments, a command is a word starting with a dot.
 *
 * ```text
 * service1.rpc1 42 "hello world"      call; "..." is a JSON string, '...' is literal
 * service1.rpc2 [1, 2] ["a b", "c"]   JSON lists, spaces allowed inside [...]
 * service1.rpc2 1,2 a,b               comma-separated lists, as for rpc call
 * .use s2                             a command
 * # a comment                         ignored, as are empty lines
 * ```
 *
 * Arguments stay text until the RPC's signature is known; then each is
 * coerced to its declared type as `rpc call` does. A quoted argument is
 * always a string.
 *
 * @module
 */

/** One argument as written. */
export interface Token {
  /** The text to coerce: the contents of a quoted string, else the word as written. */
  text: string;
  /** Written in quotes: its own type is `str`, so a `str` overload is preferred (`overload.ts`). */
  quoted: boolean;
  /** Offset of the token's first character in the line. */
  start: number;
  /** Offset just past the token's last character. */
  end: number;
}

/** A line that cannot be read, with the 1-based column of the problem. */
export class ReplSyntaxError extends SyntaxError {
  override name = "ReplSyntaxError";
  readonly column: number;

  constructor(message: string, column: number) {
    super(`${message} at column ${column}`);
    this.column = column;
  }
}

/** A parsed line. */
export type ReplLine =
  | { kind: "empty" }
  | { kind: "command"; name: DotCommandName; args: string[] }
  | { kind: "call"; service: string; rpc: string; args: Token[] };

/** The REPL's commands, with their argument synopsis and a one-line summary. */
export const DOT_COMMANDS = {
  ".help": { usage: ".help", summary: "show this help" },
  ".use": {
    usage: ".use SERVER",
    summary: "switch to another server (name from init.yaml or host:port)",
  },
  ".as": { usage: ".as CLIENT", summary: "reconnect as another client" },
  ".list": { usage: ".list", summary: "list the services and RPCs this client may call" },
  ".describe": { usage: ".describe SERVICE[.RPC]", summary: "show signatures and docs" },
  ".timing": { usage: ".timing on|off", summary: "print the round-trip time of every call" },
  ".exit": { usage: ".exit", summary: "leave (Ctrl-D does too)" },
} as const;

/** The name of a REPL command, e.g. `.use`. */
export type DotCommandName = keyof typeof DOT_COMMANDS;

/** Every REPL command name, in help order. */
export const DOT_COMMAND_NAMES = Object.keys(DOT_COMMANDS) as DotCommandName[];

function isDotCommand(name: string): name is DotCommandName {
  return Object.hasOwn(DOT_COMMANDS, name);
}

const SPACE = /\s/;

/** Reads a `"..."` JSON string starting at `start`; returns its value and end. */
function readDoubleQuoted(line: string, start: number): { value: string; end: number } {
  let i = start + 1;
  while (i < line.length) {
    const char = line[i];
    if (char === "\\") {
      i += 2;
      continue;
    }
    if (char === '"') {
      const literal = line.slice(start, i + 1);
      try {
        return { value: JSON.parse(literal), end: i + 1 };
      } catch {
        throw new ReplSyntaxError(`Cannot read string ${literal}: bad escape`, start + 1);
      }
    }
    i++;
  }
  throw new ReplSyntaxError("Unterminated string", start + 1);
}

/** Reads a `'...'` literal string (no escapes). */
function readSingleQuoted(line: string, start: number): { value: string; end: number } {
  const close = line.indexOf("'", start + 1);
  if (close < 0) throw new ReplSyntaxError("Unterminated string", start + 1);
  return { value: line.slice(start + 1, close), end: close + 1 };
}

/** Reads a bracketed list up to its matching `]`, skipping brackets inside strings. */
function readBracketed(line: string, start: number): number {
  let depth = 0;
  let i = start;
  while (i < line.length) {
    const char = line[i];
    if (char === '"') {
      i = readDoubleQuoted(line, i).end;
      continue;
    }
    if (char === "[") depth++;
    if (char === "]") {
      depth--;
      if (depth === 0) return i + 1;
    }
    i++;
  }
  throw new ReplSyntaxError("Unclosed [", start + 1);
}

/**
 * Splits a line into tokens: words separated by white space, `"..."` JSON
 * strings, `'...'` literal strings, and `[...]` lists (which may hold spaces).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenize } from "./repl_syntax.ts";
 * const tokens = tokenize(`s.r 42 "a b" [1, 2]`);
 * assert.deepEqual(tokens.map((t) => t.text), ["s.r", "42", "a b", "[1, 2]"]);
 * assert.throws(() => tokenize(`s.r "open`));
 * ```
 * @throws {ReplSyntaxError} for an unterminated string or list.
 */
export function tokenize(line: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < line.length) {
    if (SPACE.test(line[i])) {
      i++;
      continue;
    }
    const start = i;
    const char = line[i];
    if (char === '"' || char === "'") {
      const { value, end } = char === '"' ? readDoubleQuoted(line, i) : readSingleQuoted(line, i);
      if (end < line.length && !SPACE.test(line[end])) {
        throw new ReplSyntaxError("Expected a space after the closing quote", end + 1);
      }
      tokens.push({ text: value, quoted: true, start, end });
      i = end;
      continue;
    }
    if (char === "[") {
      const end = readBracketed(line, i);
      if (end < line.length && !SPACE.test(line[end])) {
        throw new ReplSyntaxError("Expected a space after ]", end + 1);
      }
      tokens.push({ text: line.slice(start, end), quoted: false, start, end });
      i = end;
      continue;
    }
    while (i < line.length && !SPACE.test(line[i])) i++;
    tokens.push({ text: line.slice(start, i), quoted: false, start, end: i });
  }
  return tokens;
}

/**
 * Splits `service.rpc` at its last dot.
 *
 * @returns `undefined` when the word is not of that form.
 */
export function splitCallTarget(word: string): { service: string; rpc: string } | undefined {
  const dot = word.lastIndexOf(".");
  if (dot <= 0 || dot === word.length - 1) return undefined;
  return { service: word.slice(0, dot), rpc: word.slice(dot + 1) };
}

/**
 * Parses one line: empty or a `#` comment, a `.command` with its words, or a
 * call `service.rpc ARG...`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseLine } from "./repl_syntax.ts";
 * const line = parseLine(`service1.rpc1 3 "a b"`);
 * assert(line.kind === "call");
 * assert.equal(line.service, "service1");
 * assert.equal(line.rpc, "rpc1");
 * assert.equal(line.args.length, 2);
 * ```
 * @throws {ReplSyntaxError} for an unreadable line, an unknown command, or a
 * first word that is not `service.rpc`.
 */
export function parseLine(line: string): ReplLine {
  const trimmed = line.trim();
  if (trimmed === "" || trimmed.startsWith("#")) return { kind: "empty" };
  const tokens = tokenize(line);
  const [first, ...rest] = tokens;
  if (!first.quoted && first.text.startsWith(".")) {
    if (!isDotCommand(first.text)) {
      throw new ReplSyntaxError(
        `Unknown command ${first.text} (commands: ${DOT_COMMAND_NAMES.join(" ")})`,
        first.start + 1,
      );
    }
    return { kind: "command", name: first.text, args: rest.map((token) => token.text) };
  }
  const target = first.quoted ? undefined : splitCallTarget(first.text);
  if (!target) {
    throw new ReplSyntaxError(
      `Expected service.rpc or a .command, got ${JSON.stringify(first.text)} (try .help)`,
      first.start + 1,
    );
  }
  return { kind: "call", ...target, args: rest };
}

/** Help text: the syntax and every command. */
export function helpLines(): string[] {
  const width = Math.max(...Object.values(DOT_COMMANDS).map((command) => command.usage.length));
  return [
    'Call an RPC:  service.rpc ARG...   e.g.  service1.rpc1 42 "hello world"',
    "  int, float, bool: as written (42, -1.5, true); str: a word, \"a JSON string\" or 'literal'",
    '  lists: JSON [1, 2] or ["a b", "c"], or comma-separated 1,2',
    "  Tab completes commands, services and RPCs, and shows a complete RPC's signature.",
    "  Ctrl-C cancels a running call or clears the line; Ctrl-D (or .exit) leaves.",
    "Commands:",
    ...Object.values(DOT_COMMANDS).map((command) =>
      `  ${command.usage.padEnd(width)}  ${command.summary}`
    ),
  ];
}
