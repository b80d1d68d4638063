/**
 * `rpc repl`: an interactive prompt connected to one server as one client.
 * Calls are written `service.rpc ARG...` (see `repl_syntax.ts`) and their
 * arguments are coerced to the signatures the server lists, as `rpc call`
 * does; results print as `rpc call` prints them, failures as `Kind: message`.
 *
 * {@linkcode ReplSession} holds the connection and runs one line at a time,
 * writing through injected sinks; {@linkcode runRepl} drives it from a
 * terminal (raw mode, with the line editor, completion, history and Ctrl-C)
 * or, when stdin is not a terminal, from lines of input for scripts.
 *
 * @module
 */

import { object } from "@optique/core/constructs";
import { message } from "@optique/core/message";
import { optional } from "@optique/core/modifiers";
import { argument, command, constant } from "@optique/core/primitives";
import type { ClientOptions, Endpoint, RpcClient } from "../core/client/client.ts";
import { connect } from "../core/client/connect.ts";
import { formatAddress } from "../core/transport/mod.ts";
import { localSource } from "./settings.ts";
import type { Cluster } from "../core/deploy/cluster.ts";
import { ErrorKind, RpcError } from "../core/errors.ts";
import { exitCodeOf, USAGE_EXIT_CODE } from "./exit_codes.ts";
import type { ServiceDescription } from "../core/wire/message.ts";
import { stringifyJson } from "../core/types/types.ts";
import { describedSignatures } from "../core/types/overload.ts";
import { coerceCommandLine, declaredTypes } from "./arguments.ts";
import {
  asOption,
  configOption,
  examples,
  formatPart,
  formatResults,
  jsonFlag,
  oneLine,
  print,
  printError,
  resolveServer,
  securityOptions,
  serverValue,
  timeoutOption,
  UsageError,
} from "./common.ts";
import { describedJson, describeTarget, formatDescribed } from "./describe.ts";
import { appendHistoryFile, KeyReader, LineEditor, readHistoryFile } from "./line_editor.ts";
import { emptyListNote, formatServices } from "./list.ts";
import { completeLine, type CompletionContext } from "./repl_completion.ts";
import { helpLines, parseLine, ReplSyntaxError, type Token } from "./repl_syntax.ts";
import { AS_HINT, hintFor, REPL_AS_HINT } from "./hints.ts";
import { clientSettings, colorEnabled, historyPath, replServer } from "./settings.ts";
import { brokerDial } from "./broker.ts";

/** The parser of `rpc repl`. */
export const replCommand = command(
  "repl",
  object({
    command: constant("repl" as const),
    ...securityOptions,
    config: configOption,
    as: asOption,
    json: jsonFlag,
    timeout: timeoutOption,
    server: optional(argument(serverValue, {
      description:
        message`Server name from init.yaml, or host:port (default: $RPC_SERVER, else the first server of init.yaml).`,
    })),
  }),
  {
    brief: message`Call procedures interactively, or from a script on stdin.`,
    description:
      message`Opens a prompt connected to one server as one client. Write a call as ${"service.rpc ARG..."}: numbers and true/false as they are, strings as a word, ${'"a JSON string"'} or ${"'literal'"}, lists as JSON (${"[1, 2]"}) or comma-separated; arguments are converted to the types the server lists. Commands: .help, .use SERVER, .as CLIENT, .list, .describe SERVICE.RPC, .timing on|off, .exit. Tab completes commands, servers, services and RPCs; history is kept in $RPC_HISTORY (default ~/.rpc_history); Ctrl-C cancels a running call; Ctrl-D leaves. When stdin is not a terminal, runs its lines without a prompt and exits with the code of the first failure.`,
    footer: examples(
      "rpc repl --config init.yaml --as c1 s1",
      "rpc repl --as c2 127.0.0.1:8282",
      "printf 'service1.rpc1 3 ab\\nservice1.add 2 3\\n' | rpc repl --as c1 s1",
    ),
  },
);

/** Options of {@linkcode runRepl}, as parsed. */
export interface ReplCommandOptions {
  config?: string;
  as?: string;
  json: boolean;
  timeout?: string;
  server?: string;
}

/** Where a session writes. */
export interface ReplSinks {
  /** Results and the output of commands. */
  out(line: string): void;
  /** A failure: its kind (or `Syntax error`, `Usage error`) and message. */
  error(label: string, message: string): void;
  /** Chatter for people (connected, switched, ...); scripts drop it. */
  notice(line: string): void;
  /** A hint after a failure, e.g. to call with `.as CLIENT`. */
  hint?(line: string): void;
}

/** Options of {@linkcode ReplSession}. */
export interface ReplSessionOptions {
  cluster?: Cluster;
  timeoutMs: number;
  json: boolean;
  sinks: ReplSinks;
  /** Opens connections; default {@linkcode connect}. */
  connector?: (endpoint: Endpoint, options: ClientOptions) => Promise<RpcClient>;
  /** Secret and TLS settings for every connection (the client name comes from `.as`). */
  connect?: Pick<ClientOptions, "secret" | "tls" | "dial">;
}

/** The outcome of one line. */
export interface LineOutcome {
  /** Whether it succeeded. */
  ok: boolean;
  /** The exit code its failure maps to (0 on success). */
  exitCode: number;
  /** `.exit` was given. */
  exit?: boolean;
}

interface Connection {
  /** The server as the user named it: init.yaml name or host:port. */
  target: string;
  endpoint: Endpoint;
  client?: string;
  rpc: RpcClient;
  services: ServiceDescription[];
  closed: boolean;
}

/** A connection to one server as one client, running REPL lines. */
export class ReplSession {
  #options: ReplSessionOptions;
  #connection: Connection | undefined;
  /** Whether each call's round-trip time is printed. */
  timing = false;

  constructor(options: ReplSessionOptions) {
    this.#options = options;
  }

  /** The server as the user named it. */
  get target(): string | undefined {
    return this.#connection?.target;
  }

  /** The client the session calls as; `undefined` is anonymous. */
  get client(): string | undefined {
    return this.#connection?.client;
  }

  /** The prompt: server and client, e.g. `s1 c1> `. */
  prompt(): string {
    const parts = [this.#connection?.target ?? "(not connected)"];
    if (this.#connection?.client) parts.push(this.#connection.client);
    return `${parts.join(" ")}> `;
  }

  /** What tab completion draws from. */
  completionContext(): CompletionContext {
    const cluster = this.#options.cluster;
    return {
      servers: cluster ? [...cluster.servers.keys()] : [],
      clients: cluster ? [...cluster.clients.keys()] : [],
      services: this.#connection?.services ?? [],
    };
  }

  /**
   * Connects to `target` as `client` and fetches its services; only then
   * replaces the current connection (which a failure leaves in place).
   */
  async open(target: string, client: string | undefined): Promise<void> {
    const endpoint = resolveServer(
      target,
      this.#options.cluster,
      this.#options.connect?.dial !== undefined,
    );
    const connector = this.#options.connector ?? connect;
    // Under rpc up (--local), each client connects from its own loopback address.
    const localAddress = localSource(this.#options.cluster, client);
    const rpc = await connector(endpoint, {
      ...this.#options.connect,
      ...(client ? { client } : {}),
      ...(localAddress ? { localAddress } : {}),
      connectTimeoutMs: this.#options.timeoutMs,
    });
    let services: ServiceDescription[];
    try {
      services = await rpc.list({ timeoutMs: this.#options.timeoutMs });
    } catch (error) {
      rpc.close();
      throw error;
    }
    const connection: Connection = {
      target,
      endpoint,
      ...(client ? { client } : {}),
      rpc,
      services,
      closed: false,
    };
    rpc.done.finally(() => connection.closed = true).catch(() => {});
    this.#connection?.rpc.close();
    this.#connection = connection;
  }

  /** A note for people on what the session is connected to. */
  describeConnection(): string {
    const connection = this.#connection;
    if (!connection) return "not connected";
    const address = formatAddress(connection.endpoint);
    const where = connection.target === address ? address : `${connection.target} (${address})`;
    const who = connection.client ? `as ${connection.client}` : "as an anonymous client";
    const count = connection.services.length;
    return `connected to ${where} ${who}: ${count} service${count === 1 ? "" : "s"}`;
  }

  /** The live connection, reconnecting once if the server closed it. */
  async #live(): Promise<Connection> {
    const connection = this.#connection;
    if (!connection) throw new RpcError(ErrorKind.Unavailable, "Not connected: use .use SERVER");
    if (connection.closed) {
      await this.open(connection.target, connection.client);
      this.#options.sinks.notice(`reconnected: ${this.describeConnection()}`);
    }
    return this.#connection!;
  }

  /** Asks the server again which services this client may call. */
  async #refresh(): Promise<ServiceDescription[]> {
    const connection = await this.#live();
    connection.services = await connection.rpc.list({ timeoutMs: this.#options.timeoutMs });
    return connection.services;
  }

  /** Runs one line; failures are written to the error sink, never thrown. */
  async run(line: string, signal?: AbortSignal): Promise<LineOutcome> {
    try {
      const parsed = parseLine(line);
      switch (parsed.kind) {
        case "empty":
          return { ok: true, exitCode: 0 };
        case "command":
          return await this.#command(parsed.name, parsed.args);
        case "call":
          await this.#call(parsed.service, parsed.rpc, parsed.args, signal);
          return { ok: true, exitCode: 0 };
      }
    } catch (error) {
      return this.#fail(error);
    }
  }

  #fail(error: unknown): LineOutcome {
    const { error: write } = this.#options.sinks;
    if (error instanceof ReplSyntaxError) {
      write("Syntax error", error.message);
      return { ok: false, exitCode: USAGE_EXIT_CODE };
    }
    if (error instanceof UsageError) {
      write("Usage error", error.message);
      return { ok: false, exitCode: USAGE_EXIT_CODE };
    }
    const rpcError = RpcError.from(error);
    write(rpcError.kind, rpcError.message);
    const hint = hintFor(rpcError.kind, this.client, rpcError.reason);
    if (hint) this.#options.sinks.hint?.(hint);
    return { ok: false, exitCode: exitCodeOf(rpcError.kind) };
  }

  async #call(service: string, rpc: string, args: Token[], signal?: AbortSignal): Promise<void> {
    const connection = await this.#live();
    let overloads = describedSignatures(connection.services, service, rpc);
    if (overloads.length === 0) {
      // Perhaps installed since we asked: ask again before guessing.
      overloads = describedSignatures(await this.#refresh(), service, rpc);
    }
    // A quoted argument is a str by its own type, but "3" still fits an int.
    const { values, signature } = coerceCommandLine(overloads, args, { service, rpc });
    const started = performance.now();
    // Every call is made as a stream: a streaming RPC's parts print as they arrive, as with
    // rpc call; any other RPC simply has none.
    const stream = this.#connection!.rpc.stream(service, rpc, values, {
      timeoutMs: this.#options.timeoutMs,
      ...(signal ? { signal } : {}),
      ...declaredTypes(signature),
    });
    for await (const part of stream) {
      for (const line of formatPart(part, this.#options.json)) this.#options.sinks.out(line);
    }
    const results = await stream.result;
    const elapsed = performance.now() - started;
    for (const line of formatResults(results, this.#options.json)) this.#options.sinks.out(line);
    if (this.timing) this.#options.sinks.out(`(${elapsed.toFixed(2)} ms)`);
  }

  async #command(name: string, args: string[]): Promise<LineOutcome> {
    const { out, notice } = this.#options.sinks;
    const ok = { ok: true, exitCode: 0 };
    const arity = (count: number, usage: string) => {
      if (args.length !== count) throw new UsageError(`Usage: ${usage}`);
    };
    switch (name) {
      case ".help":
        for (const line of helpLines()) out(line);
        return ok;
      case ".exit":
        arity(0, ".exit");
        return { ...ok, exit: true };
      case ".use":
        arity(1, ".use SERVER");
        await this.open(args[0], this.client);
        notice(this.describeConnection());
        return ok;
      case ".as":
        if (args.length === 0) {
          out(this.client ? `calling as ${this.client}` : "calling as an anonymous client");
          return ok;
        }
        arity(1, ".as CLIENT");
        if (!this.target) {
          throw new RpcError(ErrorKind.Unavailable, "Not connected: use .use SERVER");
        }
        await this.open(this.target, args[0]);
        notice(this.describeConnection());
        return ok;
      case ".list": {
        arity(0, ".list");
        const services = await this.#refresh();
        if (this.#options.json) {
          out(stringifyJson({ services }));
        } else {
          if (services.length === 0) notice(emptyListNote(this.target!, this.client));
          for (const line of formatServices(services)) out(line);
        }
        return ok;
      }
      case ".describe": {
        arity(1, ".describe SERVICE[.RPC]");
        const described = describeTarget(await this.#refresh(), args[0]);
        if (this.#options.json) out(stringifyJson(describedJson(described)));
        else for (const line of formatDescribed(described)) out(line);
        return ok;
      }
      case ".timing":
        if (args.length === 0) {
          out(`timing ${this.timing ? "on" : "off"}`);
          return ok;
        }
        arity(1, ".timing on|off");
        if (args[0] !== "on" && args[0] !== "off") throw new UsageError("Usage: .timing on|off");
        this.timing = args[0] === "on";
        notice(`timing ${args[0]}`);
        return ok;
    }
    throw new UsageError(`Unknown command ${name}`);
  }

  /** Closes the connection. */
  close(): void {
    this.#connection?.rpc.close();
  }
}

const RED = "\x1b[31m";
const BOLD = "\x1b[1m";
const RESET = "\x1b[0m";

/** Runs `rpc repl`; returns the exit code. */
export async function runRepl(options: ReplCommandOptions): Promise<number> {
  const settings = await clientSettings(options);
  const target = replServer(options.server, settings.cluster);
  const interactive = Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
  const color = interactive && colorEnabled();
  const sinks: ReplSinks = interactive
    ? {
      out: print,
      error: (label, text) =>
        print(color ? `${RED}${label}${RESET}: ${oneLine(text)}` : `${label}: ${oneLine(text)}`),
      notice: print,
      hint: (text) => print(`hint: ${text === AS_HINT ? REPL_AS_HINT : text}`),
    }
    : {
      out: print,
      error: (label, text) => printError(`error: ${label}: ${oneLine(text)}`),
      notice: () => {},
      hint: (text) => printError(`hint: ${text}`),
    };
  const session = new ReplSession({
    ...(settings.cluster ? { cluster: settings.cluster } : {}),
    timeoutMs: settings.timeoutMs,
    json: options.json,
    sinks,
    connect: {
      ...(settings.secret ? { secret: settings.secret } : {}),
      ...(settings.tls ? { tls: settings.tls } : {}),
      ...(settings.broker ? { dial: brokerDial(settings.broker) } : {}),
    },
  });
  await session.open(target, settings.client);
  try {
    return interactive ? await interactiveLoop(session, color) : await scriptLoop(session);
  } finally {
    session.close();
  }
}

/** Runs lines from stdin; the exit code is that of the first failure, else 0. */
async function scriptLoop(session: ReplSession): Promise<number> {
  let exitCode = 0;
  for await (const line of readLines(Deno.stdin.readable)) {
    const outcome = await session.run(line);
    if (!outcome.ok && exitCode === 0) exitCode = outcome.exitCode;
    if (outcome.exit) break;
  }
  return exitCode;
}

/** The lines of a byte stream, without their line ends. */
export async function* readLines(input: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const text of input.pipeThrough(new TextDecoderStream())) {
    buffered += text;
    let end: number;
    while ((end = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, end).replace(/\r$/, "");
      buffered = buffered.slice(end + 1);
    }
  }
  if (buffered !== "") yield buffered.replace(/\r$/, "");
}

/** The terminal loop: prompt, edit, run; Ctrl-C cancels the running call. */
async function interactiveLoop(session: ReplSession, color: boolean): Promise<number> {
  const historyFile = historyPath();
  let history: string[] = [];
  if (historyFile) {
    try {
      history = await readHistoryFile(historyFile);
    } catch (error) {
      print(`note: cannot read history ${historyFile}: ${(error as Error).message}`);
    }
  }
  print(`${session.describeConnection()}; .help for help, Ctrl-D to leave`);
  Deno.stdin.setRaw(true);
  try {
    const keys = new KeyReader(Deno.stdin.readable);
    const editor = new LineEditor({
      keys,
      history,
      complete: (line, cursor) => completeLine(line, cursor, session.completionContext()),
    });
    for (;;) {
      const prompt = session.prompt();
      const last = editor.history.at(-1);
      const line = await editor.readLine(color ? `${BOLD}${prompt}${RESET}` : prompt);
      if (line === null) return 0;
      if (historyFile && line.trim() !== "" && line !== last) {
        await appendHistoryFile(historyFile, line).catch(() => {});
      }
      const controller = new AbortController();
      keys.onInterrupt(() => controller.abort());
      try {
        const outcome = await session.run(line, controller.signal);
        if (outcome.exit) return 0;
      } finally {
        keys.onInterrupt(undefined);
      }
    }
  } finally {
    Deno.stdin.setRaw(false);
  }
}
