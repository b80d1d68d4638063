/**
 * One `python3` interpreter running the bridge (`python_bridge.ts`): started,
 * confined as its launch says, fed one request at a time as JSON lines, and
 * ended when its call is aborted or it dies. `python_pool.ts` keeps them.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import { parseJson, stringifyJson } from "../types/types.ts";

/** A reply line from the bridge. */
export interface Reply {
  id: number;
  ok: boolean;
  /** Set on each value a generator yields; the final reply follows. */
  part?: boolean;
  result?: unknown;
  error?: string;
  /** On a reply to a request that carried source: whether the module is now loaded. */
  loaded?: boolean;
}

export function isReply(value: unknown): value is Reply {
  return typeof value === "object" && value !== null &&
    typeof (value as Reply).id === "number" && typeof (value as Reply).ok === "boolean";
}

/**
 * Splits decoded text into non-empty lines without the trailing newline,
 * joining the pieces of a line split across chunks once, when it ends.
 */
export class LineSplitter {
  #parts: string[] = [];

  constructor(readonly onLine: (line: string) => void) {}

  /** Takes the next chunk of text. */
  push(chunk: string): void {
    let start = 0;
    for (;;) {
      const end = chunk.indexOf("\n", start);
      if (end < 0) break;
      let line = chunk.slice(start, end);
      if (this.#parts.length > 0) {
        this.#parts.push(line);
        line = this.#parts.join("");
        this.#parts = [];
      }
      start = end + 1;
      if (line.length > 0) this.onLine(line);
    }
    if (start < chunk.length) this.#parts.push(chunk.slice(start));
  }

  /** The text ended: what remains is the last line. */
  end(): void {
    const line = this.#parts.join("");
    this.#parts = [];
    if (line.length > 0) this.onLine(line);
  }
}

interface PendingCall {
  id: number;
  label: string;
  resolve(reply: Reply): void;
  reject(error: unknown): void;
  /** Receives what a generator yields. */
  onPart?: (value: unknown) => void;
}

/** Linux signal numbers, to read bubblewrap's exit code 128 + N of a killed interpreter. */
const SIGNALS: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  5: "SIGTRAP",
  6: "SIGABRT",
  7: "SIGBUS",
  8: "SIGFPE",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
  24: "SIGXCPU",
  25: "SIGXFSZ",
  31: "SIGSYS",
};

function describeStatus(status: Deno.CommandStatus, confined: boolean): string {
  if (status.signal) return `killed by ${status.signal}`;
  const signal = confined && status.code > 128 ? SIGNALS[status.code - 128] : undefined;
  return signal ? `killed by ${signal}` : `exit code ${status.code}`;
}

const encoder = new TextEncoder();

/** How to start one interpreter. */
export interface Launch {
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Started inside bubblewrap, which reports a killed child as exit code 128 + N. */
  confined: boolean;
}

/** At most this much of what an interpreter wrote to stderr before it was ready is kept for errors. */
const STARTUP_ERROR_CHARS = 1000;

/** One interpreter running the bridge, one call at a time. */
export class Interpreter {
  /** Settles once the process has exited and its reply pipe is closed. */
  readonly exited: Promise<void>;
  /** Paths of the modules this interpreter has loaded. */
  readonly known = new Set<string>();
  /** Set while it waits in its pool's idle list. */
  idleTimer: ReturnType<typeof setTimeout> | undefined;
  #child: Deno.ChildProcess;
  #confined: boolean;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #pending: PendingCall | undefined;
  #alive = true;
  #ready = false;
  /** Why it could not start: its own report, else the end of what it wrote to stderr. */
  #startupError: string | undefined;
  #startupOutput = "";
  #stderrDone: Promise<void>;
  #killReason: string | undefined;
  #nextId = 0;

  /** @throws {Deno.errors.NotFound} when the command does not exist. */
  constructor(launch: Launch, onExit: (interpreter: Interpreter) => void) {
    this.#confined = launch.confined;
    this.#child = new Deno.Command(launch.command, {
      args: launch.args,
      env: launch.env,
      clearEnv: true,
      // A session of its own: no signal meant for the server's process group reaches it.
      detached: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#stderrDone = this.#forwardStderr();
    // Not waiting for stderr to close: a trusted procedure's child may keep it open.
    this.exited = this.#readReplies().then(() => onExit(this));
  }

  /** False once the process has died or is being killed. */
  get alive(): boolean {
    return this.#alive;
  }

  /** Sends one request and resolves to its reply; `signal` kills the process. */
  call(
    request: Record<string, unknown>,
    label: string,
    signal?: AbortSignal,
    onPart?: (value: unknown) => void,
  ): Promise<Reply> {
    const id = ++this.#nextId;
    return new Promise<Reply>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      if (!this.#alive) {
        return reject(
          new RpcError(
            ErrorKind.ExecutionException,
            `Python interpreter died before running ${label}`,
          ),
        );
      }
      const onAbort = () => {
        if (this.#pending?.id !== id) return;
        this.#pending = undefined;
        reject(signal!.reason);
        // A running Python call cannot be interrupted safely: end the process.
        this.kill();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const settle = () => signal?.removeEventListener("abort", onAbort);
      this.#pending = {
        id,
        label,
        ...(onPart ? { onPart } : {}),
        resolve: (reply) => {
          settle();
          resolve(reply);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      };
      const line = stringifyJson({ id, ...request }) + "\n";
      // A failed write means the process died; #readReplies reports that.
      this.#stdin.write(encoder.encode(line)).catch(() => {});
    });
  }

  /** Kills the process; a call in flight fails with `reason` when given. */
  kill(reason?: string): void {
    if (reason !== undefined) this.#killReason ??= reason;
    this.#alive = false;
    clearTimeout(this.idleTimer);
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }

  /** Passes what the interpreter writes to stderr on to the server's, keeping its start for errors. */
  async #forwardStderr(): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of this.#child.stderr) {
        if (!this.#ready) {
          this.#startupOutput = (this.#startupOutput + decoder.decode(chunk, { stream: true }))
            .slice(-STARTUP_ERROR_CHARS);
        }
        await Deno.stderr.write(chunk).catch(() => {});
      }
    } catch {
      // The pipe broke with the process.
    }
  }

  #receive(line: string): void {
    let reply: unknown;
    try {
      reply = parseJson(line);
    } catch {
      reply = undefined;
    }
    if (!isReply(reply)) {
      this.kill();
      const pending = this.#pending;
      this.#pending = undefined;
      pending?.reject(
        new RpcError(
          ErrorKind.Internal,
          `Python interpreter sent a malformed reply while running ${pending.label}`,
        ),
      );
      return;
    }
    if (reply.id === 0) {
      // The bridge reports whether it could confine itself before it reads a request.
      if (reply.ok) this.#ready = true;
      else this.#startupError = reply.error ?? "unknown error";
      return;
    }
    const pending = this.#pending;
    if (pending?.id !== reply.id) return;
    if (reply.part) {
      try {
        if (!pending.onPart) {
          throw new RpcError(
            ErrorKind.ExecutionException,
            `${pending.label} yields results, but its signature declares no yields`,
          );
        }
        pending.onPart(reply.result);
      } catch (error) {
        // The generator cannot be stopped from outside: end the interpreter.
        this.#pending = undefined;
        pending.reject(error);
        this.kill();
      }
      return;
    }
    this.#pending = undefined;
    pending.resolve(reply);
  }

  async #readReplies(): Promise<void> {
    // One read and one decode per chunk: two piped TransformStreams cost several promises each.
    const reader = this.#child.stdout.getReader();
    const decoder = new TextDecoder();
    const lines = new LineSplitter((line) => this.#receive(line));
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        lines.push(decoder.decode(value, { stream: true }));
      }
      lines.end();
    } catch {
      // A broken pipe ends the interpreter like an end of file.
    }
    // Without its reply channel the process is useless, whatever state it is in.
    this.kill();
    const status = await this.#child.status;
    await this.#stdin.close().catch(() => {});
    const pending = this.#pending;
    this.#pending = undefined;
    if (!pending) return;
    if (this.#killReason !== undefined) {
      pending.reject(new RpcError(ErrorKind.Unavailable, this.#killReason));
    } else if (!this.#ready) {
      // It died before running any procedure code, so nothing else holds its stderr.
      await this.#stderrDone;
      const detail = this.#startupError ?? this.#startupOutput.trim().split("\n").pop();
      pending.reject(
        new RpcError(
          ErrorKind.ExecutionException,
          `Cannot start a Python interpreter for ${pending.label} (${
            describeStatus(status, this.#confined)
          })${detail ? `: ${detail}` : ""}`,
        ),
      );
    } else {
      pending.reject(
        new RpcError(
          ErrorKind.ExecutionException,
          `Python interpreter died while running ${pending.label} (${
            describeStatus(status, this.#confined)
          })`,
        ),
      );
    }
  }
}
