/**
 * One `python3` interpreter running the bridge (`python_bridge.ts`): started,
 * confined as its launch says, fed requests as JSON lines (pipelined: many
 * may wait in it), and ended when its running call is aborted or it dies.
 * `python_pool.ts` keeps them.
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
  /** Set on the answer to a cancel of a call that had not started: it never will. */
  skipped?: boolean;
  /** Set on the report that the call has been running for a while (the bridge's tick). */
  running?: boolean;
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

/**
 * The rejection of a call that its interpreter never started (it died or was
 * ended first): the call has had no effect, so its pool sends it to another.
 */
export class NotStarted extends Error {
  constructor(label: string) {
    super(`Python interpreter ended before starting ${label}`);
    this.name = "NotStarted";
  }
}

/**
 * How long the call an interpreter may be running can be one nobody waits for
 * (cancelled as it started) before the interpreter is ended, in milliseconds.
 * The bridge reports a skipped call before it starts the next, so this only
 * runs out on a call that started before its cancel arrived.
 */
const ABANDONED_MS = 250;

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

/**
 * One interpreter running the bridge. Calls are pipelined: each is written at
 * once, and the bridge runs them one at a time in that order. The first one
 * neither answered nor skipped is the one it may be running; every later one
 * has not started, and when the interpreter ends those are rejected with
 * {@linkcode NotStarted} for their pool to run elsewhere.
 */
export class Interpreter {
  /** Settles once the process has exited and its reply pipe is closed. */
  readonly exited: Promise<void>;
  /** Paths of the modules this interpreter has loaded. */
  readonly known = new Set<string>();
  /** Set while it has no calls and waits in its pool. */
  idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Calls its pool has handed it and not taken back yet (kept by the pool). */
  calls = 0;
  /** When its pool last took a call back from it (kept by the pool). */
  lastUsed = 0;
  #child: Deno.ChildProcess;
  #confined: boolean;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  /** Calls sent and waiting for their reply, in the order they were sent (ids ascending). */
  #pending = new Map<number, PendingCall>();
  /** The id of the last call the bridge answered: it answers in order. */
  #lastDone = 0;
  /** Ids beyond `#lastDone` the bridge said it skipped (cancelled before they started). */
  #skipped = new Set<number>();
  /** Calls asked back by {@linkcode reclaim} and not answered yet. */
  #reclaimed = new Set<number>();
  /** The last call the bridge reported running long. */
  #long = 0;
  #onStalled: (interpreter: Interpreter) => void;
  /** Lines to write, joined into one write while the previous one is under way. */
  #outgoing: string[] = [];
  #writing = false;
  #abandonedTimer: ReturnType<typeof setTimeout> | undefined;
  #alive = true;
  #ready = false;
  /** Set when the runner ended it (a running call's abort, a broken protocol), not the process itself. */
  #stopped = false;
  /** Why it could not start: its own report, else the end of what it wrote to stderr. */
  #startupError: string | undefined;
  #startupOutput = "";
  #stderrDone: Promise<void>;
  #killReason: string | undefined;
  #nextId = 0;

  /** @throws {Deno.errors.NotFound} when the command does not exist. */
  /** `onStalled` hears when the bridge reports its running call as running long. */
  constructor(
    launch: Launch,
    onExit: (interpreter: Interpreter) => void,
    onStalled: (interpreter: Interpreter) => void = () => {},
  ) {
    this.#onStalled = onStalled;
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

  /**
   * Sends one request and resolves to its reply. When `signal` aborts, the call
   * fails at once with its reason: a call still queued in the bridge is skipped
   * there, a running one ends the process (and the calls queued behind it fail
   * with {@linkcode NotStarted}). A call this interpreter ends before starting
   * fails with {@linkcode NotStarted} too.
   */
  call(
    request: Record<string, unknown>,
    label: string,
    signal?: AbortSignal,
    onPart?: (value: unknown) => void,
  ): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      if (!this.#alive) return reject(new NotStarted(label));
      const id = ++this.#nextId;
      const onAbort = () => {
        if (!this.#pending.delete(id)) return;
        reject(signal!.reason);
        if (id === this.#current()) {
          // A running Python call cannot be interrupted safely: end the process.
          this.#stop();
        } else {
          this.#send(`{"id":${id},"op":"cancel"}\n`);
        }
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const settle = () => signal?.removeEventListener("abort", onAbort);
      this.#pending.set(id, {
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
      });
      this.#send(stringifyJson({ id, ...request }) + "\n");
    });
  }

  /** Whether its running call has been running long (the bridge said so): calls queued behind it wait for it. */
  get stalled(): boolean {
    return this.#long !== 0 && this.#long === this.#current();
  }

  /** Calls sent to it that have not started, as far as it has heard. */
  get queued(): number {
    const current = this.#current();
    let queued = 0;
    for (const id of this.#pending.keys()) if (id > current && !this.#reclaimed.has(id)) queued++;
    return queued;
  }

  /**
   * Asks the bridge to give back up to `count` of the calls queued in it, the
   * last sent first. Each it reports skipped fails with {@linkcode NotStarted},
   * for its pool to run elsewhere; one it had already started runs on.
   */
  reclaim(count: number): void {
    const current = this.#current();
    const ids = [...this.#pending.keys()].filter((id) => id > current && !this.#reclaimed.has(id));
    for (const id of ids.slice(-count)) {
      this.#reclaimed.add(id);
      this.#send(`{"id":${id},"op":"cancel"}\n`);
    }
  }

  /** Kills the process; its calls fail with `reason` when given. */
  kill(reason?: string): void {
    if (reason !== undefined) this.#killReason ??= reason;
    this.#alive = false;
    clearTimeout(this.idleTimer);
    clearTimeout(this.#abandonedTimer);
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }

  /** Ends the process for the sake of its calls: the ones that never started go elsewhere. */
  #stop(): void {
    this.#stopped = true;
    this.kill();
  }

  /** The id of the call the bridge may be running: the first neither answered nor skipped. */
  #current(): number {
    let id = this.#lastDone + 1;
    while (this.#skipped.has(id)) id++;
    return id;
  }

  /** Queues a line for the bridge: lines queued while a write is under way leave in the next one. */
  #send(line: string): void {
    this.#outgoing.push(line);
    if (!this.#writing) {
      this.#writing = true;
      queueMicrotask(() => this.#write());
    }
  }

  async #write(): Promise<void> {
    while (this.#outgoing.length > 0) {
      const text = this.#outgoing.length === 1 ? this.#outgoing[0] : this.#outgoing.join("");
      this.#outgoing = [];
      try {
        await this.#stdin.write(encoder.encode(text));
      } catch {
        // The process died; #readReplies reports that.
        this.#outgoing = [];
        break;
      }
    }
    this.#writing = false;
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
      const current = this.#pending.get(this.#current());
      this.#fail(
        current,
        new RpcError(
          ErrorKind.Internal,
          `Python interpreter sent a malformed reply while running ${current?.label ?? "a call"}`,
        ),
      );
      return;
    }
    const id = reply.id;
    if (id === 0) {
      // The bridge reports whether it could confine itself before it reads a request.
      if (reply.ok) this.#ready = true;
      else this.#startupError = reply.error ?? "unknown error";
      return;
    }
    if (id <= this.#lastDone) return;
    if (reply.running) {
      this.#long = id;
      this.#onStalled(this);
      return;
    }
    if (reply.skipped) {
      // Cancelled before it started: its caller has had its answer, or it was reclaimed.
      this.#skipped.add(id);
      this.#reclaimed.delete(id);
      const reclaimed = this.#pending.get(id);
      if (reclaimed) {
        this.#pending.delete(id);
        reclaimed.reject(new NotStarted(reclaimed.label));
      }
      return;
    }
    const pending = this.#pending.get(id);
    if (reply.part) {
      if (!pending) return;
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
        this.#fail(pending, error);
      }
      return;
    }
    this.#lastDone = id;
    if (this.#skipped.size > 0) {
      for (const skipped of this.#skipped) if (skipped <= id) this.#skipped.delete(skipped);
    }
    if (this.#reclaimed.size > 0) {
      for (const reclaimed of this.#reclaimed) {
        if (reclaimed <= id) this.#reclaimed.delete(reclaimed);
      }
    }
    if (!pending) return;
    this.#pending.delete(id);
    pending.resolve(reply);
  }

  /** Fails the call it may be running and ends the process: the bridge cannot be trusted to go on. */
  #fail(pending: PendingCall | undefined, error: unknown): void {
    if (pending) this.#pending.delete(pending.id);
    pending?.reject(error);
    this.#stop();
  }

  /**
   * Watches the call the bridge may be running when nobody waits for it any
   * more: it was cancelled just as it started, and unless the bridge reports it
   * skipped or ended soon, the process is ended like that of any cancelled call.
   */
  #watchAbandoned(): void {
    const current = this.#current();
    if (current > this.#nextId || this.#pending.has(current) || !this.#alive) {
      clearTimeout(this.#abandonedTimer);
      this.#abandonedTimer = undefined;
      return;
    }
    if (this.#abandonedTimer !== undefined) return;
    this.#abandonedTimer = setTimeout(() => {
      this.#abandonedTimer = undefined;
      if (this.#current() === current) this.#stop();
    }, ABANDONED_MS);
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
        this.#watchAbandoned();
      }
      lines.end();
    } catch {
      // A broken pipe ends the interpreter like an end of file.
    }
    // Without its reply channel the process is useless, whatever state it is in.
    this.kill();
    const status = await this.#child.status;
    await this.#stdin.close().catch(() => {});
    if (this.#pending.size === 0) return;
    const calls = [...this.#pending.values()];
    this.#pending.clear();
    const current = this.#current();
    const how = describeStatus(status, this.#confined);
    let startupError: string | undefined;
    if (this.#killReason === undefined && !this.#ready && !this.#stopped) {
      // It died before running any procedure code, so nothing else holds its stderr.
      await this.#stderrDone;
      const detail = this.#startupError ?? this.#startupOutput.trim().split("\n").pop();
      startupError = `(${how})${detail ? `: ${detail}` : ""}`;
    }
    for (const call of calls) {
      if (this.#killReason !== undefined) {
        call.reject(new RpcError(ErrorKind.Unavailable, this.#killReason));
      } else if (startupError !== undefined) {
        // Every call sent to it would meet the same fate elsewhere.
        call.reject(
          new RpcError(
            ErrorKind.ExecutionException,
            `Cannot start a Python interpreter for ${call.label} ${startupError}`,
          ),
        );
      } else if (call.id === current) {
        call.reject(
          new RpcError(
            ErrorKind.ExecutionException,
            `Python interpreter died while running ${call.label} (${how})`,
          ),
        );
      } else {
        call.reject(new NotStarted(call.label));
      }
    }
  }
}
